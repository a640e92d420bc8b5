"""The left/right check (segmentation.postprocess.laterality_warnings) on real anatomy.

Mirrored predictions were the original failure of this project's predecessor. The labels
here are the sample's true glands (real expert outlines of a held-out TCIA scan), stored
LPS, RAS (array x runs the other way: a check on array indices gets it backwards) and 10
degrees oblique. A correct result must give no warning; a result mirrored across the
patient's midline (each gland keeps its label but lies on the other side), or with left and
right labels exchanged, must warn for every gland, against the midline and against the
partner gland. The path from this check into report.json, report.csv and the terminal is
tested in test_segment_paths.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.geometry import centroid_lps
from GlandSegLib.glands import GLANDS, partner
from GlandSegLib.segmentation.postprocess import laterality_warnings

REPO = Path(__file__).resolve().parents[1]
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"
GRIDS = ("lps", "ras", "oblique10")
SWAP = "possible left/right swap"


@pytest.fixture(scope="module")
def truth():
    labels = sitk.ReadImage(str(SAMPLE_LABELS))
    arr = sitk.GetArrayFromImage(labels)
    xs = [centroid_lps(arr == g.label, labels)[0] for g in GLANDS if g.organ == "parotid"]
    return labels, float(np.mean(xs))  # the patient's midline: halfway between the true parotids


_GRIDS: dict[str, sitk.Image] = {}


def on_grid(labels: sitk.Image, grid: str) -> sitk.Image:
    """The true labels stored another way (cached: the oblique one is a resampling)."""
    from GlandSegLib.defaultmodel.phantom import reorient

    if grid not in _GRIDS:
        _GRIDS[grid] = reorient(labels, grid, is_label=True)
    return _GRIDS[grid]


def mirrored(labels: sitk.Image, midline_x: float) -> sitk.Image:
    """Every voxel moved to its mirror image across the plane x = midline_x (LPS), labels kept,
    on the same grid: what a model trained with mirroring can produce."""
    t = sitk.AffineTransform(3)
    t.SetMatrix((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    t.SetTranslation((2 * midline_x, 0, 0))  # output point p takes the label at (2m - x, y, z)
    return sitk.Resample(labels, labels, t, sitk.sitkNearestNeighbor, 0, labels.GetPixelID())


def relabelled(labels: sitk.Image, pairs: dict[int, int]) -> sitk.Image:
    arr = sitk.GetArrayFromImage(labels)
    out = arr.copy()
    for a, b in pairs.items():
        out[arr == a] = b
    img = sitk.GetImageFromArray(out)
    img.CopyInformation(labels)
    return img


LEFT_RIGHT = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5}


@pytest.mark.parametrize("grid", GRIDS)
def test_a_correct_result_gives_no_warning(truth, grid):
    labels, midline = truth
    img = on_grid(labels, grid)
    arr = sitk.GetArrayViewFromImage(img)
    assert all((arr == g.label).any() for g in GLANDS)  # every gland survives the storage change
    warnings = laterality_warnings(img, midline)
    assert warnings == {g.label: [] for g in GLANDS}


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("kind", ["mirrored", "labels exchanged"])
def test_a_swapped_result_warns_for_every_gland_against_midline_and_partner(truth, grid, kind):
    labels, midline = truth
    img = on_grid(labels, grid)
    swapped = mirrored(img, midline) if kind == "mirrored" else relabelled(img, LEFT_RIGHT)
    arr = sitk.GetArrayViewFromImage(swapped)
    warnings = laterality_warnings(swapped, midline)
    for g in GLANDS:
        c = centroid_lps(arr == g.label, swapped)
        assert c is not None and (c[0] < midline) == (g.side == "L"), f"{g.name} is not on the wrong side: the setup is wrong"
        w = warnings[g.label]
        assert len(w) == 2 and all(SWAP in m for m in w), (g.name, w)
        other = "left" if g.side == "R" else "right"
        assert w[0].startswith(f"{g.name} lies on the patient's {other} of the midline"), w[0]
        assert partner(g).name in w[1], w[1]


@pytest.mark.parametrize("grid", GRIDS)
def test_only_the_swapped_pair_is_flagged(truth, grid):
    labels, midline = truth
    swapped = relabelled(on_grid(labels, grid), {3: 4, 4: 3})
    warnings = laterality_warnings(swapped, midline)
    assert {label for label, w in warnings.items() if w} == {3, 4}
    assert all(SWAP in m for label in (3, 4) for m in warnings[label])


def test_without_a_midline_the_partner_check_still_fires(truth):
    labels, _ = truth
    warnings = laterality_warnings(relabelled(labels, LEFT_RIGHT), None)
    for g in GLANDS:
        assert len(warnings[g.label]) == 1 and partner(g).name in warnings[g.label][0], warnings[g.label]
    assert laterality_warnings(labels, None) == {g.label: [] for g in GLANDS}


def test_a_lone_gland_on_the_wrong_side_is_flagged_by_the_midline(truth):
    """No partner to compare with (the left parotid was not found): the midline alone must catch it."""
    labels, midline = truth
    arr = sitk.GetArrayFromImage(labels)
    lone = np.where(arr == 3, 4, 0).astype(arr.dtype)  # the right parotid's voxels, called left, alone
    img = sitk.GetImageFromArray(lone)
    img.CopyInformation(labels)
    warnings = laterality_warnings(img, midline)
    assert len(warnings[4]) == 1 and "right of the midline" in warnings[4][0] and SWAP in warnings[4][0]
    assert all(not w for label, w in warnings.items() if label != 4)
    # a midline placed beyond the gland turns the same gland into a correct one
    assert laterality_warnings(img, float(centroid_lps(lone == 4, img)[0]) - 1.0)[4] == []
