"""RTSTRUCT reading, rasterization and writing, checked against geometry known by construction.

The rasterizer is checked on hand-made polygons whose voxels are known (also on a grid
stored right-to-left, so indices and physical space disagree), and the writer on phantom
labels stored feet-first as real DICOM: what is written must rasterize back to exactly
the same voxels and reference exactly the CT instances it lies on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_writer import write_ct_series  # noqa: E402

from GlandSegLib.io.dicomref import load_source_series  # noqa: E402
from GlandSegLib.errors import InvalidInputError  # noqa: E402
from GlandSegLib.glands import GLANDS  # noqa: E402
from GlandSegLib.io.images import read_ct  # noqa: E402
from GlandSegLib.defaultmodel.phantom import make_phantom, reorient  # noqa: E402
from GlandSegLib.io.rtstruct import RoiMask, rasterize, read_rtstruct, rois_from_labels, write_rtstruct  # noqa: E402


def grid(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), size=(12, 10, 5), spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.Image(list(size), sitk.sitkUInt8)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def square(x0, x1, y0, y1, z) -> np.ndarray:
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=float)


def physical_voxels(mask: np.ndarray, ref: sitk.Image) -> set[tuple[float, float, float]]:
    return {tuple(round(v, 3) for v in ref.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))) for z, y, x in np.argwhere(mask)}


def test_square_fills_exactly_the_voxel_centres_inside():
    ref = grid()
    mask, stats = rasterize([square(2.5, 6.5, 1.5, 4.5, 4.0)], ref)  # z = 4 mm is slice 2
    expected = np.zeros_like(mask)
    expected[2, 2:5, 3:7] = True  # y 2..4, x 3..6
    assert np.array_equal(mask, expected)
    assert (stats.contours, stats.off_plane, stats.outside) == (1, 0, 0)


def test_rasterizing_is_done_in_physical_space_whatever_the_storage():
    """The same physical square on an x-flipped (RAS-like) grid covers the same physical voxels."""
    lps = grid()
    flipped = grid(direction=(-1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(11.0, 0.0, 0.0))
    contour = square(2.5, 6.5, 1.5, 4.5, 4.0)
    a, _ = rasterize([contour], lps)
    b, _ = rasterize([contour], flipped)
    assert a.sum() == b.sum() == 12
    assert physical_voxels(a, lps) == physical_voxels(b, flipped)


def test_inner_contour_is_a_hole_and_islands_add_up():
    ref = grid()
    outer = square(1.5, 8.5, 0.5, 7.5, 2.0)  # 7 x 7 voxels on slice 1
    inner = square(3.5, 6.5, 2.5, 5.5, 2.0)  # 3 x 3 hole
    island = square(9.5, 10.5, 0.5, 1.5, 2.0)  # one voxel apart
    mask, _ = rasterize([outer, inner, island], ref)
    assert mask[1].sum() == 49 - 9 + 1
    assert not mask[1, 4, 5] and mask[1, 1, 2] and mask[1, 1, 10]


def test_contours_off_the_slice_planes_or_beyond_the_scan_are_skipped_and_counted():
    ref = grid()
    between = square(2.5, 6.5, 1.5, 4.5, 3.0)  # z 3 mm: half-way between slices 1 and 2
    tilted = square(2.5, 6.5, 1.5, 4.5, 4.0)
    tilted[2:, 2] += 3.0  # not in one image plane
    beyond = square(2.5, 6.5, 1.5, 4.5, 20.0)  # slice 10 of a 5-slice scan
    mask, stats = rasterize([between, tilted, beyond], ref)
    assert not mask.any()
    assert (stats.contours, stats.off_plane, stats.outside) == (3, 2, 1)


@pytest.fixture(scope="module")
def feet_first_ct(tmp_path_factory):
    """A phantom stored feet-first (z index runs head to feet) as a DICOM series, and its labels."""
    ph = make_phantom(7, field="head", spacing=(2.0, 2.0, 3.0))
    ct = reorient(ph.ct, "feet_first")
    folder = tmp_path_factory.mktemp("ff") / "CT"
    write_ct_series(ct, folder)
    loaded = read_ct(folder)
    labels = sitk.Resample(ph.labels, loaded.image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    return loaded, labels, folder.parent


def test_written_rtstruct_rasterizes_back_to_the_same_voxels(feet_first_ct):
    loaded, labels, root = feet_first_ct
    source = load_source_series(loaded.series.files, loaded.image)
    path = write_rtstruct(rois_from_labels(labels), source, root / "rs.dcm")
    ss = read_rtstruct(path)
    arr = sitk.GetArrayFromImage(labels)
    assert [r.name for r in ss.rois] == [g.tg263 for g in GLANDS]
    assert [r.number for r in ss.rois] == [g.label for g in GLANDS]
    for roi in ss.rois:
        mask, stats = rasterize(roi.contours, loaded.image)
        assert stats.off_plane == stats.outside == 0
        assert np.array_equal(mask, arr == roi.number), roi.name


def test_written_rtstruct_references_the_instances_it_lies_on(feet_first_ct):
    loaded, labels, root = feet_first_ct
    source = load_source_series(loaded.series.files, loaded.image)
    ds = pydicom.dcmread(write_rtstruct(rois_from_labels(labels), source, root / "rs2.dcm"))
    cts = [pydicom.dcmread(f, stop_before_pixels=True) for f in loaded.series.files]
    by_uid = {c.SOPInstanceUID: c for c in cts}
    normal = np.cross(*np.reshape(np.asarray(cts[0].ImageOrientationPatient, float), (2, 3)))
    assert ds.Modality == "RTSTRUCT" and ds.StudyInstanceUID == cts[0].StudyInstanceUID
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == cts[0].FrameOfReferenceUID
    series = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == cts[0].SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in series.ContourImageSequence} == set(by_uid)
    assert all(r.ReferencedFrameOfReferenceUID == cts[0].FrameOfReferenceUID for r in ds.StructureSetROISequence)
    checked = 0
    for rc in ds.ROIContourSequence:
        for c in rc.ContourSequence:
            ref = by_uid[c.ContourImageSequence[0].ReferencedSOPInstanceUID]
            pts = np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
            # every point lies in the plane of the slice it references
            assert np.allclose(pts @ normal, np.dot(np.asarray(ref.ImagePositionPatient, float), normal), atol=1e-2)
            checked += 1
    assert checked > 20


def test_reading_refuses_what_is_not_an_rtstruct(feet_first_ct):
    loaded, _labels, _root = feet_first_ct
    with pytest.raises(InvalidInputError, match="not an RT Structure Set"):
        read_rtstruct(loaded.series.files[0])


def test_non_gland_structures_are_written_with_their_own_names(feet_first_ct):
    loaded, labels, root = feet_first_ct
    source = load_source_series(loaded.series.files, loaded.image)
    body = sitk.GetArrayFromImage(loaded.image) > -400
    ss = read_rtstruct(write_rtstruct([RoiMask(9, "BODY", body, (0, 255, 0), "EXTERNAL")], source, root / "body.dcm"))
    assert [(r.number, r.name) for r in ss.rois] == [(9, "BODY")]
    mask, _ = rasterize(ss.rois[0].contours, loaded.image)
    assert np.array_equal(mask, body)
