"""glands.seg.nrrd opens in Slicer's MRML (slicer-core) as six named, coloured, coded segments."""

import numpy as np
import SimpleITK as sitk
from conftest import require

from GlandSegLib.glands import GLANDS
from GlandSegLib.io.segfile import write_seg_nrrd


def _labels():
    a = np.zeros((10, 20, 30), np.uint8)
    a[2:4, 3:6, 4:9] = 1
    a[5:7, 10:12, 20:25] = 4
    img = sitk.GetImageFromArray(a)
    img.SetSpacing((1.0, 1.0, 2.0))
    img.SetOrigin((-10.0, 5.0, 100.0))
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # stored RAS-wise on purpose
    return img


def test_seg_nrrd_reads_back_in_slicer_mrml(tmp_path):
    slicer = require("slicer", "slicer-core (Slicer's MRML for Python)")
    import vtk

    path = tmp_path / "glands.seg.nrrd"
    write_seg_nrrd(_labels(), path)
    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    seg = node.GetSegmentation()
    assert seg.GetNumberOfSegments() == 6
    for g in GLANDS:
        s = seg.GetSegment(g.key)
        assert s is not None and s.GetName() == g.name
        assert np.allclose(s.GetColor(), g.color, atol=1e-3)
        entry = vtk.reference("")
        assert s.GetTag("TerminologyEntry", entry)
        parts = str(entry).split("~")
        assert parts[1] == "SCT^123037004^Anatomical Structure"
        assert parts[2].split("^")[1] == g.structure[1]
        assert parts[3].split("^")[1] == g.laterality[1]


def test_seg_nrrd_voxels_and_geometry_read_back_with_slicerio(tmp_path):
    slicerio = require("slicerio")
    img = _labels()
    path = tmp_path / "glands.seg.nrrd"
    write_seg_nrrd(img, path)
    seg = slicerio.read_segmentation(str(path))
    names = {s["name"]: s["labelValue"] for s in seg["segments"]}
    assert names == {g.name: g.label for g in GLANDS}
    voxels = seg["voxels"]  # I, J, K order
    ijk_to_lps = np.asarray(seg["ijkToLPS"])
    # a voxel of the left parotid: index (x=20, y=10, z=5) -> same physical point as in SimpleITK
    assert voxels[20, 10, 5] == 4
    expected = img.TransformIndexToPhysicalPoint((20, 10, 5))
    assert np.allclose((ijk_to_lps @ np.array([20, 10, 5, 1.0]))[:3], expected)
