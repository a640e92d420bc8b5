"""Reviewing a result in Slicer, run for real under slicer-core (GlandSegSlicerLib.review):
the review table in the report's order, segment tags, the kept original, the edit timer on
real segmentation events, and "Measure my corrections" on a real edit of a segment's voxels
(made as the Segment Editor makes it: the segment's labelmap changed in place, then Modified).
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "GlandSeg"))

slicer = require("slicer", "slicer-core gives Slicer's MRML classes")

from vtk.util import numpy_support  # noqa: E402

from GlandSegSlicerLib import nodes as N  # noqa: E402
from GlandSegSlicerLib import review  # noqa: E402
from GlandSegLib.glands import BY_LABEL, GLANDS  # noqa: E402


@pytest.fixture
def scene():
    s = slicer.vtkMRMLScene()
    N.segmentations_logic(s)
    yield s
    s.Clear(1)


def _labels() -> sitk.Image:
    """Six box glands on an oblique, anisotropic grid (so the original's geometry must travel)."""
    arr = np.zeros((16, 30, 40), np.uint8)
    for g in GLANDS:
        x0 = 4 if g.side == "R" else 24
        arr[2 + 4 * ((g.label - 1) // 2):5 + 4 * ((g.label - 1) // 2), 8:20, x0:x0 + 10] = g.label
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.9, 1.1, 2.5))
    img.SetOrigin((-20.0, 30.0, -80.0))
    c, s_ = math.cos(0.2), math.sin(0.2)
    img.SetDirection((c, -s_, 0.0, s_, c, 0.0, 0.0, 0.0, 1.0))
    return img


def _result(scene):
    labels = _labels()
    ct = N.add_volume_from_sitk(scene, sitk.Cast(labels, sitk.sitkInt16) * 10, "ct")
    seg = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ct glands")
    N.labelmap_to_segmentation(labels, seg, ct)
    return ct, seg, labels


def _erase_slices(seg, key: str, z_slices, x_from: int = 0) -> None:
    """What a Segment Editor erase stroke does: the segment's labelmap changed in place, then
    Modified(). Erases the segment in the given slices from storage column x_from on."""
    segment = seg.GetSegmentation().GetSegment(key)
    rep = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    ext = rep.GetExtent()
    dims = (ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1)
    a = numpy_support.vtk_to_numpy(rep.GetPointData().GetScalars()).reshape(dims[::-1])
    for z in z_slices:
        plane = a[z - ext[4], :, max(x_from - ext[0], 0):]
        plane[plane == segment.GetLabelValue()] = 0
    rep.Modified()


REPORT = {"glands": [
    {"label": g.label, "name": g.name, "voxels": 0 if g.label == 2 else 100, "volume_ml": 0.0 if g.label == 2 else 1.5,
     "status": "not found" if g.label == 2 else "found", "status_reason": "its expected place is in the scan" if g.label == 2 else "",
     "status_notes": ["volume 1.50 ml far below the experts' 5-95% range"] if g.label == 5 else [],
     "confidence": None if g.label == 2 else 0.1 * g.label, "expert_volume_ml": {"p5": 1.0, "p95": 2.0, "median": 1.4, "n": 70}}
    for g in GLANDS], "review_order": [5, 1, 3, 4, 6]}


def test_review_rows_follow_the_review_order_then_the_glands_without_a_segment():
    rows = review.review_rows(REPORT)
    assert [r["label"] for r in rows] == [5, 1, 3, 4, 6, 2]
    assert rows[0]["reason"] == "volume 1.50 ml far below the experts' 5-95% range"
    assert rows[-1]["status"] == "not found" and rows[-1]["volume_ml"] is None and rows[-1]["confidence"] is None
    old = {"glands": [{"label": 3, "name": "right parotid gland", "voxels": 0, "volume_ml": 0.0}]}  # before statuses
    assert review.review_rows(old)[0]["status"] == "not found"


def test_show_review_fills_a_table_and_tags_the_segments(scene):
    _ct, seg, _labels_ = _result(scene)
    table = review.show_review(seg, REPORT)
    rows = N.table_rows(table)
    assert [r["Gland"] for r in rows] == [BY_LABEL[v].name for v in (5, 1, 3, 4, 6, 2)]
    assert rows[0]["Confidence"] == pytest.approx(0.5) and math.isnan(rows[-1]["Confidence"])
    assert rows[-1]["Status"] == "not found" and rows[0]["Experts 95%"] == 2.0
    assert review.show_review(seg, REPORT) is table  # a new run updates the same table
    value = __import__("vtk").reference("")
    assert seg.GetSegmentation().GetSegment("parotid_l").GetTag("GlandSeg.confidence", value) and str(value) == "0.40"


def test_edit_timer_counts_edits_and_time_between_them_on_real_events(scene):
    ct, seg, _labels_ = _result(scene)
    review.keep_original(seg, ct)
    now = [100.0]
    timer = review.EditTimer(seg, clock=lambda: now[0], idle_gap_s=120)
    _erase_slices(seg, "parotid_r", [6])
    now[0] += 30
    _erase_slices(seg, "parotid_r", [7])
    now[0] += 600  # the user went away: not counted
    _erase_slices(seg, "submandibular_l", [10])
    assert timer.edits == 3 and timer.seconds == pytest.approx(30.0)
    timer.stop()
    _erase_slices(seg, "submandibular_l", [11])
    assert timer.edits == 3, "a stopped timer no longer counts"


def test_measure_corrections_zero_for_untouched_glands_positive_for_edited(scene, tmp_path):
    ct, seg, labels = _result(scene)
    original = review.keep_original(seg, ct)
    assert original.GetHideFromEditors()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(N.volume_to_sitk(original)), sitk.GetArrayFromImage(labels))
    _erase_slices(seg, "parotid_r", [7], x_from=9)  # half of its middle slice: a new edge, 4.5 mm from the old one
    _erase_slices(seg, "submandibular_r", [10])  # a whole slice removed: nothing to draw
    table, rows = review.measure_corrections(seg, ct, tmp_path / "corrections.csv")
    by = {r["gland"]: r for r in rows}
    for key in ("lacrimal_r", "lacrimal_l", "parotid_l", "submandibular_l"):
        assert by[key]["apl_mm"] == 0 and by[key]["dice"] == 1.0 and by[key]["volume_change_ml"] == 0, by[key]
    edited = by["parotid_r"]
    assert edited["dice"] == pytest.approx(2 * 300 / 660, abs=1e-4)  # 360 voxels, 60 erased
    assert edited["volume_change_ml"] == pytest.approx(-60 * 0.9 * 1.1 * 2.5 / 1000, abs=1e-3)
    # the new edge (12 voxels of 1.1 mm along y), less its ends within the tolerance of the old top and bottom edges
    tol = edited["tolerance_mm"]
    assert edited["apl_mm"] == pytest.approx(12 * 1.1 - 2 * tol, abs=1.2), edited
    removed = by["submandibular_r"]
    assert removed["apl_mm"] == 0 and removed["dice"] < 1, removed  # deleting draws no contour (Vaassen 2020)
    assert [r["Gland"] for r in N.table_rows(table)] == [g.name for g in GLANDS]
    with open(tmp_path / "corrections.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert float(next(r for r in csv_rows if r["gland"] == "parotid_r")["apl_mm"]) == edited["apl_mm"]


def test_measure_corrections_needs_glandseg_s_original(scene):
    _ct, seg, _labels_ = _result(scene)
    with pytest.raises(ValueError, match="no GlandSeg original"):
        review.measure_corrections(seg)
