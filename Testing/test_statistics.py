"""Per-gland statistics (segmentation.stats) against numpy on the sample's TRUE labels.

The numbers a physicist files with a dose calculation: volume, CT HU mean / SD / median,
centroid, and uptake mean / max / total from a PET or SPECT image on its own grid. The
expected values are computed here without the library: voxel counts times the voxel
volume, numpy statistics of the CT values under each true gland, physical voxel positions
from origin + direction x spacing x index, and uptake images whose value at every point
is known in closed form (a constant; a linear ramp, which linear interpolation reproduces
exactly, so its mean over a gland is the ramp at the gland's centroid).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS
from GlandSegLib.segmentation.stats import gland_statistics
from stats_helpers import assert_row_matches, expected_rows, ramp_value, uptake_image

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CT = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"


@pytest.fixture(scope="module")
def sample():
    return sitk.ReadImage(str(SAMPLE_CT)), sitk.ReadImage(str(SAMPLE_LABELS))


@pytest.mark.parametrize("oblique", [False, True])
def test_statistics_of_the_true_glands_with_a_ramp_uptake(sample, oblique):
    ct, labels = sample
    uptake = uptake_image(labels, oblique=oblique)
    stats = gland_statistics(labels, ct, uptake)
    expected = expected_rows(labels, ct)
    for g in GLANDS:
        want = expected[g.label]
        assert want["voxels"] > 0, g.name  # the sample holds all six true glands
        row = stats[g.label]
        assert set(row) >= {"uptake_mean", "uptake_max", "uptake_total"}
        assert_row_matches(row, want, g.name)
        # the ramp's mean over a gland is the ramp at its centroid: a check independent of the voxel sums
        assert row["uptake_mean"] == pytest.approx(float(ramp_value(want["centroid_lps_mm"])), rel=2e-5)


def test_statistics_with_a_constant_uptake_give_the_constant_and_constant_times_volume(sample):
    ct, labels = sample
    c = 12345.5  # e.g. Bq/ml
    stats = gland_statistics(labels, ct, uptake_image(labels, constant=c, spacing=(3.3, 3.3, 5.0)))
    for g in GLANDS:
        row = stats[g.label]
        assert row["uptake_mean"] == pytest.approx(c, rel=1e-6) and row["uptake_max"] == pytest.approx(c, rel=1e-6)
        # total = value x volume: Bq/ml x ml = Bq, on the unrounded volume
        ml = row["voxels"] * float(np.prod(labels.GetSpacing())) / 1000.0
        assert row["uptake_total"] == pytest.approx(c * ml, rel=1e-6), g.name


def test_statistics_do_not_depend_on_how_the_grid_is_stored(sample):
    """RAS storage of the same CT and labels: same numbers (sides from physical points, not indices)."""
    from GlandSegLib.defaultmodel.phantom import reorient

    ct, labels = sample
    uptake = uptake_image(labels)
    lps = gland_statistics(labels, ct, uptake)
    ras = gland_statistics(reorient(labels, "ras", is_label=True), reorient(ct, "ras"), uptake)
    for g in GLANDS:
        assert ras[g.label]["voxels"] == lps[g.label]["voxels"] and ras[g.label]["volume_ml"] == lps[g.label]["volume_ml"]
        for key in ("hu_mean", "hu_sd", "hu_median"):  # the same values summed in another order: equal to rounding
            assert ras[g.label][key] == pytest.approx(lps[g.label][key], abs=0.11), (g.name, key)
        assert np.allclose(ras[g.label]["centroid_lps_mm"], lps[g.label]["centroid_lps_mm"], atol=0.11), g.name
        assert ras[g.label]["uptake_total"] == pytest.approx(lps[g.label]["uptake_total"], rel=1e-5)


def test_a_missing_gland_has_zero_volume_and_no_statistics(sample):
    ct, labels = sample
    arr = sitk.GetArrayFromImage(labels)
    arr[arr == 2] = 0
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(labels)
    stats = gland_statistics(img, ct, uptake_image(labels, constant=1.0))
    assert stats[2]["voxels"] == 0 and stats[2]["volume_ml"] == 0
    assert not {"hu_mean", "uptake_total", "centroid_lps_mm"} & set(stats[2])
    assert stats[1]["voxels"] == int((arr == 1).sum()) > 0
