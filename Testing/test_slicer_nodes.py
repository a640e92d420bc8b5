"""GlandSeg/GlandSegSlicerLib/nodes.py under slicer-core: real MRML nodes, real Slicer readers/writers.

What is checked is physical: a voxel must land at the same place in the patient whichever
representation holds it (SimpleITK LPS image, Slicer volume node in RAS, segmentation
node, .seg.nrrd on disk). Geometries cover LPS and RAS storage and an oblique volume.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import types

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require

slicer = require("slicer", "slicer-core gives Slicer's MRML classes")
vtk = require("vtk", "slicer-core brings it")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "GlandSeg"))

from GlandSegSlicerLib import nodes as N  # noqa: E402
from GlandSegLib.geometry import PhysicalBox, paste  # noqa: E402
from GlandSegLib.glands import BY_LABEL, GLANDS  # noqa: E402
from GlandSegLib.io.segfile import segment_id, terminology_entry, write_seg_nrrd  # noqa: E402
from GlandSegLib.segmentation.stats import gland_statistics  # noqa: E402


# ----------------------------------------------------------------------------- helpers

def rotation(axis: str, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    raise ValueError(axis)


GEOMETRIES = {
    # name: (direction (LPS), spacing, origin (LPS))
    "lps": (np.eye(3), (0.8, 0.9, 2.5), (-120.0, -150.0, -300.0)),
    "ras": (np.diag([-1.0, -1.0, 1.0]), (1.0, 1.25, 3.0), (110.0, 140.0, 20.0)),
    "oblique": (rotation("z", 10.0) @ rotation("x", 10.0), (0.7, 0.7, 2.0), (-80.0, -95.5, 12.25)),
}


def make_image(size=(23, 19, 11), geometry="lps", dtype=np.int16, seed=0) -> sitk.Image:
    direction, spacing, origin = GEOMETRIES[geometry]
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1500, size=tuple(reversed(size))).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def gland_labels(reference: sitk.Image) -> sitk.Image:
    """Six boxes of distinct sizes; right glands at smaller physical x (patient's right in LPS)."""
    sx, sy, sz = reference.GetSize()
    arr = np.zeros((sz, sy, sx), dtype=np.uint8)
    # placed by physical side: the index axis whose direction has the largest |x| component
    d = np.array(reference.GetDirection()).reshape(3, 3)
    for g in GLANDS:
        k = {"lacrimal": 0, "parotid": 1, "submandibular": 2}[g.organ]
        z0 = 1 + 3 * k
        y0 = 2 + 5 * k
        x_low = g.side == "R"
        if d[0, 0] < 0:  # x index grows towards the patient's right
            x_low = not x_low
        x0 = 2 if x_low else sx - 8
        arr[z0:z0 + 2, y0:y0 + 3 + k, x0:x0 + 4 + k] = g.label
    labels = sitk.GetImageFromArray(arr)
    labels.CopyInformation(reference)
    return labels


def ras_of_ijk(node, ijk) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array(m.MultiplyPoint([float(ijk[0]), float(ijk[1]), float(ijk[2]), 1.0])[:3])


def segment_world_points(seg_node, sid) -> set[tuple[float, float, float]]:
    """RAS positions (rounded to 0.01 mm) of a segment's voxels, read through Slicer's own
    oriented image data: independent of the conversion code under test."""
    image = slicer.vtkOrientedImageData()
    seg_node.GetBinaryLabelmapRepresentation(sid, image)
    dims = image.GetDimensions()
    if image.GetPointData().GetScalars() is None or min(dims) <= 0:
        return set()
    ext = image.GetExtent()
    arr = vtk.util.numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(reversed(dims)))
    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    pts = set()
    for k, j, i in np.argwhere(arr != 0):
        ras = m.MultiplyPoint([float(i + ext[0]), float(j + ext[2]), float(k + ext[4]), 1.0])[:3]
        pts.add(tuple(round(v, 2) for v in ras))
    return pts


def label_world_points(labels: sitk.Image, value: int) -> set[tuple[float, float, float]]:
    arr = sitk.GetArrayViewFromImage(labels)
    pts = set()
    for k, j, i in np.argwhere(arr == value):
        lps = labels.TransformIndexToPhysicalPoint([int(i), int(j), int(k)])
        pts.add(tuple(round(v, 2) for v in N.LPS_TO_RAS @ np.array(lps)))
    return pts


@pytest.fixture
def scene():
    s = slicer.vtkMRMLScene()
    N.segmentations_logic(s)
    yield s
    s.Clear(1)


# ----------------------------------------------------------------------------- Segmentations logic

def test_segmentations_logic_in_the_application_is_the_modules_own(monkeypatch):
    """Inside Slicer: slicer.modules.segmentations.logic(), never a new one (a new logic given
    the scene re-registers node classes and adds converter rules on every load)."""
    app_logic = slicer.vtkSlicerSegmentationsModuleLogic()
    modules = types.SimpleNamespace(segmentations=types.SimpleNamespace(logic=lambda: app_logic))
    monkeypatch.setattr(slicer, "modules", modules, raising=False)
    created = []
    real = slicer.vtkSlicerSegmentationsModuleLogic
    monkeypatch.setattr(slicer, "vtkSlicerSegmentationsModuleLogic", lambda: created.append(1) or real())
    assert N.segmentations_logic(slicer.vtkMRMLScene()) is app_logic
    assert created == []


def test_segmentations_logic_under_slicer_core_is_one_per_process(monkeypatch):
    """slicer-core (no application): one stand-alone logic; loading into many scenes adds no
    converter rules after the first and binds none of the callers' scenes."""
    monkeypatch.delattr(slicer, "modules", raising=False)
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    first = N.segmentations_logic(slicer.vtkMRMLScene())
    rules = len(factory.GetConverterRules())
    assert rules >= 4
    for _ in range(3):
        scene = slicer.vtkMRMLScene()
        assert N.segmentations_logic(scene) is first
        seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        ct = make_image(size=(12, 10, 6))
        N.labelmap_to_segmentation(gland_labels(ct), seg, N.add_volume_from_sitk(scene, ct, "ct"))
        assert seg.GetSegmentation().GetNumberOfSegments() == 6
        assert first.GetMRMLScene() is not scene
    assert len(factory.GetConverterRules()) == rules


# ----------------------------------------------------------------------------- (a) volumes

@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_volume_node_sitk_round_trip(scene, geometry):
    img = make_image(geometry=geometry)
    node = N.add_volume_from_sitk(scene, img, "ct")
    # every corner and a middle voxel sit at the same physical place in both worlds
    size = img.GetSize()
    probes = [(i, j, k) for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)] + [(7, 5, 3)]
    for ijk in probes:
        lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
        np.testing.assert_allclose(ras_of_ijk(node, ijk), N.LPS_TO_RAS @ lps, atol=1e-6)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), sitk.GetArrayViewFromImage(img))

    back = N.volume_to_sitk(node)
    assert back.GetSize() == img.GetSize()
    assert back.GetPixelID() == img.GetPixelID()
    np.testing.assert_allclose(back.GetOrigin(), img.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), img.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), img.GetDirection(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(img))
    np.testing.assert_allclose(N.physical_points_lps(back, probes), N.physical_points_lps(img, probes), atol=1e-6)


def test_slicer_native_ras_volume_reads_as_expected_lps(scene):
    """A volume set up the way Slicer's readers do it (RAS directions, RAS origin)."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "native")
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(4, 5, 6)
    image_data.AllocateScalars(vtk.VTK_SHORT, 1)
    node.SetAndObserveImageData(image_data)
    node.SetOrigin(10.0, 20.0, 30.0)  # RAS
    node.SetSpacing(1.0, 2.0, 3.0)
    node.SetIJKToRASDirections(1, 0, 0, 0, 1, 0, 0, 0, 1)  # i -> R, j -> A, k -> S
    img = N.volume_to_sitk(node)
    np.testing.assert_allclose(img.GetOrigin(), (-10.0, -20.0, 30.0))
    np.testing.assert_allclose(img.GetSpacing(), (1.0, 2.0, 3.0))
    np.testing.assert_allclose(np.array(img.GetDirection()).reshape(3, 3), np.diag([-1.0, -1.0, 1.0]), atol=1e-12)
    # voxel (1, 1, 1) is 1 mm right... in RAS: (11, 22, 33); in LPS: (-11, -22, 33)
    np.testing.assert_allclose(img.TransformIndexToPhysicalPoint((1, 1, 1)), (-11.0, -22.0, 33.0))


def test_transformed_volume_is_refused(scene):
    node = N.add_volume_from_sitk(scene, make_image(), "ct")
    t = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    node.SetAndObserveTransformNodeID(t.GetID())
    with pytest.raises(N.GeometryError, match="harden"):
        N.volume_to_sitk(node)


# ----------------------------------------------------------------------------- (b) segments

@pytest.mark.parametrize("geometry", ["lps", "oblique"])
def test_labelmap_to_segmentation_has_six_gland_segments(scene, geometry):
    ct = make_image(size=(30, 24, 12), geometry=geometry)
    labels = gland_labels(ct)
    ct_node = N.add_volume_from_sitk(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "glands")
    N.labelmap_to_segmentation(labels, seg_node, ct_node)

    segmentation = seg_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 6
    assert [segmentation.GetNthSegmentID(i) for i in range(6)] == [segment_id(g) for g in GLANDS]
    for g in GLANDS:
        seg = segmentation.GetSegment(segment_id(g))
        assert seg.GetName() == g.name
        np.testing.assert_allclose(seg.GetColor(), g.color, atol=1e-6)
        assert not seg.GetNameAutoGenerated() and not seg.GetColorAutoGenerated()
        assert N.segment_terminology(seg) == terminology_entry(g)
        # voxels at the right places, read through Slicer's own oriented image data
        expected = label_world_points(labels, g.label)
        assert expected, "test labelmap must hold every gland"
        assert segment_world_points(seg_node, segment_id(g)) == expected
    # the CT is the reference geometry
    ref = seg_node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert ref is ct_node
    # no helper nodes left behind
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0


def test_right_gland_segment_is_on_patients_right(scene):
    """Side is physical: the right parotid's RAS x is larger (R = +x in RAS)."""
    ct = make_image(size=(30, 24, 12), geometry="ras")
    labels = gland_labels(ct)
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    N.labelmap_to_segmentation(labels, seg_node, N.add_volume_from_sitk(scene, ct, "ct"))
    right = np.mean([p[0] for p in segment_world_points(seg_node, "parotid_r")])
    left = np.mean([p[0] for p in segment_world_points(seg_node, "parotid_l")])
    assert right > left


def test_empty_gland_still_gets_a_segment(scene):
    ct = make_image()
    labels = gland_labels(ct)
    arr = sitk.GetArrayFromImage(labels)
    arr[arr == 2] = 0
    arr[0, 0, 0] = 9  # not a gland value: ignored
    lab2 = sitk.GetImageFromArray(arr)
    lab2.CopyInformation(ct)
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    N.labelmap_to_segmentation(lab2, seg_node, N.add_volume_from_sitk(scene, ct, "ct"))
    assert seg_node.GetSegmentation().GetNumberOfSegments() == 6
    assert segment_world_points(seg_node, segment_id(BY_LABEL[2])) == set()
    back = N.segmentation_to_labelmap(seg_node, scene.GetFirstNodeByName("ct"))
    assert set(np.unique(sitk.GetArrayViewFromImage(back))) == {0, 1, 3, 4, 5, 6}


# ----------------------------------------------------------------------------- (c) back to labels

@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_segmentation_to_labelmap_round_trip(scene, geometry):
    ct = make_image(size=(30, 24, 12), geometry=geometry)
    labels = gland_labels(ct)
    ct_node = N.add_volume_from_sitk(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    N.labelmap_to_segmentation(labels, seg_node, ct_node)
    back = N.segmentation_to_labelmap(seg_node, ct_node)
    assert back.GetSize() == ct.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), ct.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), ct.GetDirection(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(labels))


def test_segments_are_recognised_by_terminology_or_name(scene):
    """After manual work a gland may have another ID or name; it still counts."""
    ct = make_image()
    ct_node = N.add_volume_from_sitk(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    seg_node.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    segmentation = seg_node.GetSegmentation()
    segmentation.AddEmptySegment("Segment_7", "my parotid", [1, 0, 0])
    segmentation.GetSegment("Segment_7").SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology_entry(BY_LABEL[4]))
    segmentation.AddEmptySegment("Segment_8", "Glnd_Submand_R", [0, 1, 0])
    segmentation.AddEmptySegment("Segment_9", "tumour", [0, 0, 1])
    assert N.gland_segments(seg_node) == {4: "Segment_7", 5: "Segment_8"}


# ----------------------------------------------------------------------------- .seg.nrrd

def test_seg_nrrd_write_and_read_back(scene, tmp_path):
    ct = make_image(size=(30, 24, 12), geometry="oblique")
    labels = gland_labels(ct)
    ct_node = N.add_volume_from_sitk(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "glands")
    N.labelmap_to_segmentation(labels, seg_node, ct_node)

    path = tmp_path / "glands.seg.nrrd"
    writer = slicer.vtkMRMLSegmentationStorageNode()
    writer.SetFileName(str(path))
    assert writer.WriteData(seg_node)
    assert path.stat().st_size > 0

    read = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "read")
    reader = slicer.vtkMRMLSegmentationStorageNode()
    reader.SetFileName(str(path))
    assert reader.ReadData(read)
    segmentation = read.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 6
    for g in GLANDS:
        seg = segmentation.GetSegment(segment_id(g))
        assert seg is not None and seg.GetName() == g.name
        np.testing.assert_allclose(seg.GetColor(), g.color, atol=1e-4)
        assert not seg.GetNameAutoGenerated() and not seg.GetColorAutoGenerated()
        assert N.segment_terminology(seg) == terminology_entry(g)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(N.segmentation_to_labelmap(read, ct_node)),
                                  sitk.GetArrayViewFromImage(labels))


@pytest.mark.parametrize("missing", [(), (1, 5)], ids=["all-found", "two-not-found"])
@pytest.mark.parametrize("geometry", ["ras", "oblique"])
def test_load_pipeline_seg_nrrd_on_crop_into_existing_node(scene, tmp_path, geometry, missing):
    """The CLI writes glands.seg.nrrd on the head crop (GlandSegLib.io.segfile); loaded into the
    panel's node and exported on the full CT grid it must equal the pasted labelmap, also
    when some glands were not found (their segments exist but are empty)."""
    ct = make_image(size=(30, 24, 12), geometry=geometry)
    labels = gland_labels(ct)
    arr = sitk.GetArrayFromImage(labels)
    arr[np.isin(arr, missing)] = 0
    found = sitk.GetImageFromArray(arr)
    found.CopyInformation(labels)
    labels = found
    crop = sitk.RegionOfInterest(labels, [26, 22, 10], [1, 1, 1])
    path = tmp_path / "glands.seg.nrrd"
    write_seg_nrrd(crop, path)

    ct_node = N.add_volume_from_sitk(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "previous")
    seg_node.GetSegmentation().AddEmptySegment("old", "old segment", [1, 1, 1])
    N.load_seg_nrrd(path, seg_node, ct_node)

    segmentation = seg_node.GetSegmentation()
    assert [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())] == [segment_id(g) for g in GLANDS]
    for g in GLANDS:
        assert N.segment_terminology(segmentation.GetSegment(segment_id(g))) == terminology_entry(g)
    expected = paste(crop, labels)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(N.segmentation_to_labelmap(seg_node, ct_node)),
                                  sitk.GetArrayFromImage(expected))
    assert scene.GetFirstNodeByName("__GlandSeg_read__") is None


# ----------------------------------------------------------------------------- (d) statistics

def uptake_image() -> sitk.Image:
    """A PET-like image on its own coarser, shifted grid whose value grows with physical x and z."""
    img = sitk.Image([30, 25, 12], sitk.sitkFloat32)
    img.SetSpacing((2.0, 2.0, 4.0))
    img.SetOrigin((-100.0, -115.0, 0.0))  # covers the oblique test CT, on another grid
    arr = np.zeros((12, 25, 30), np.float32)
    for k in range(12):
        for j in range(25):
            for i in range(30):
                x, _y, z = img.TransformIndexToPhysicalPoint((i, j, k))
                arr[k, j, i] = 1000.0 + 10.0 * x + 3.0 * z
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


@pytest.mark.parametrize("with_uptake", [False, True])
def test_statistics_table_equals_glandseglib_stats(scene, with_uptake):
    ct = make_image(size=(30, 24, 12), geometry="oblique", seed=3)
    labels = gland_labels(ct)
    ct_node = N.add_volume_from_sitk(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "glands")
    N.labelmap_to_segmentation(labels, seg_node, ct_node)
    uptake = uptake_image() if with_uptake else None
    uptake_node = N.add_volume_from_sitk(scene, uptake, "pet") if uptake is not None else None

    table_node = N.compute_statistics(seg_node, ct_node, uptake_node)
    expected = gland_statistics(labels, ct, uptake)
    rows = N.table_rows(table_node)
    assert [r["Gland"] for r in rows] == [g.name for g in GLANDS]
    columns = N.BASE_COLUMNS + (N.UPTAKE_COLUMNS if with_uptake else ())
    assert list(rows[0]) == ["Gland"] + [c[1] for c in columns]
    for g, row in zip(GLANDS, rows, strict=True):
        exp = expected[g.label]
        assert exp["voxels"] > 0
        for key, title, _unit, _desc in columns:
            assert row[title] == pytest.approx(exp[key], rel=1e-6, abs=1e-6), (g.name, key)
    if with_uptake:  # the uptake image really was resampled: values vary with side
        assert all(r["Uptake mean"] > 100 for r in rows), "uptake grid must cover every gland"
        up = {r["Gland"]: r["Uptake mean"] for r in rows}
        assert up["right parotid gland"] != pytest.approx(up["left parotid gland"])
    assert table_node.GetColumnUnitLabel("Volume") == "ml"


def test_statistics_of_empty_gland_are_nan(scene):
    ct = make_image()
    labels = gland_labels(ct)
    arr = sitk.GetArrayFromImage(labels)
    arr[arr == 1] = 0
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(ct)
    ct_node = N.add_volume_from_sitk(scene, ct, "ct")
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    N.labelmap_to_segmentation(lab, seg_node, ct_node)
    rows = N.table_rows(N.compute_statistics(seg_node, ct_node))
    assert rows[0]["Volume"] == 0.0 and math.isnan(rows[0]["HU mean"])
    assert rows[1]["Volume"] > 0


# ----------------------------------------------------------------------------- (e) ROI

def test_roi_box_round_trip_and_signs(scene):
    box = PhysicalBox(np.array([-90.0, -120.0, -250.0]), np.array([110.0, 80.0, 0.0]))
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "head box")
    N.box_to_roi(box, roi)
    np.testing.assert_allclose(roi.GetCenter(), (-10.0, 20.0, -125.0))  # RAS: x, y negated
    np.testing.assert_allclose(roi.GetSize(), (200.0, 200.0, 250.0))
    back = N.roi_to_box(roi)
    np.testing.assert_allclose(back.lower, box.lower, atol=1e-9)
    np.testing.assert_allclose(back.upper, box.upper, atol=1e-9)
    assert N.box_arguments(back) == [-90.0, -120.0, -250.0, 110.0, 80.0, 0.0]


def test_rotated_roi_gives_enclosing_box(scene):
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    N.box_to_roi(PhysicalBox(np.array([-10.0, -10.0, -10.0]), np.array([10.0, 10.0, 10.0])), roi)
    m = vtk.vtkMatrix4x4()
    m.DeepCopy(roi.GetObjectToNodeMatrix())
    rot = vtk.vtkTransform()
    rot.RotateZ(45)
    r = rot.GetMatrix()
    for i in range(3):
        for j in range(3):
            m.SetElement(i, j, r.GetElement(i, j))
    roi.SetAndObserveObjectToNodeMatrix(m)
    box = N.roi_to_box(roi)
    np.testing.assert_allclose(box.size, (20 * math.sqrt(2), 20 * math.sqrt(2), 20.0), atol=1e-6)
    # and showing a box again resets the rotation
    N.box_to_roi(box, roi)
    np.testing.assert_allclose(N.roi_to_box(roi).size, box.size, atol=1e-6)


def test_head_box_from_volume_node_matches_locator_on_the_file(scene):
    """"Show head box": the locator run on a Slicer volume (stored RAS here) gives, through the
    ROI and back, the box it gives on the image file the CLI would read."""
    from GlandSegLib.segmentation.headbox import locate_head
    from GlandSegLib.defaultmodel.phantom import make_phantom, reorient

    ct = reorient(make_phantom(2, spacing=(2.0, 2.0, 3.0)).ct, "ras")
    expected = locate_head(ct)
    assert expected.contains(expected.center)
    node = N.add_volume_from_sitk(scene, ct, "ct")
    box = locate_head(N.volume_to_sitk(node))
    roi = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "GlandSeg head box")
    N.box_to_roi(box, roi)
    back = N.roi_to_box(roi)
    np.testing.assert_allclose(back.lower, expected.lower, atol=1e-6)
    np.testing.assert_allclose(back.upper, expected.upper, atol=1e-6)


def test_show_segmentation_makes_2d_and_3d_visible(scene):
    ct = make_image(size=(30, 24, 12))
    seg_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    N.labelmap_to_segmentation(gland_labels(ct), seg_node, N.add_volume_from_sitk(scene, ct, "ct"))
    N.show_segmentation(seg_node)
    display = seg_node.GetDisplayNode()
    assert display.GetVisibility() and display.GetVisibility2DFill() and display.GetVisibility3D()
    closed = slicer.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName()
    assert seg_node.GetSegmentation().ContainsRepresentation(closed)
