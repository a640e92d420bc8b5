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

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CT = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"

RAMP = (1000.0, 2.0, -1.5, 0.5)  # uptake = a + bx*x + by*y + bz*z (LPS mm): 600..1500, never negative here


def ramp_value(points_lps: np.ndarray, ramp=RAMP) -> np.ndarray:
    a, bx, by, bz = ramp
    return a + points_lps @ np.array([bx, by, bz])


def physical_points(image: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """LPS mm of every True voxel of a (z, y, x) mask, from the image's own geometry (numpy only)."""
    idx_xyz = np.argwhere(mask)[:, ::-1].astype(float)
    d = np.array(image.GetDirection()).reshape(3, 3)
    return np.array(image.GetOrigin()) + (idx_xyz * np.array(image.GetSpacing())) @ d.T


def uptake_image(reference: sitk.Image, *, spacing=(4.0, 4.0, 4.0), margin_mm=12.0, ramp=RAMP,
                 constant: float | None = None, oblique: bool = False) -> sitk.Image:
    """A PET-like image on its own coarser grid covering `reference` with a margin; its value
    at each of its voxel centres is the ramp (or the constant) there."""
    pts = np.array([reference.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner])
                    for corner in np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in reference.GetSize()], indexing="ij")).reshape(3, -1).T])
    direction = np.eye(3)
    if oblique:  # 7 degrees about z: the uptake grid need not be aligned with the CT's
        a = np.radians(7.0)
        direction = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    local = pts @ direction  # coordinates along the uptake grid's axes
    lo, hi = local.min(0) - margin_mm, local.max(0) + margin_mm
    sp = np.array(spacing, float)
    size = np.ceil((hi - lo) / sp).astype(int) + 1
    origin = direction @ lo
    img = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    img.SetSpacing([float(s) for s in sp])
    img.SetOrigin([float(o) for o in origin])
    img.SetDirection([float(v) for v in direction.ravel()])
    if constant is not None:
        arr = np.full(size[::-1], constant, np.float32)
    else:
        centres = physical_points(img, np.ones(size[::-1], bool)).reshape(*size[::-1], 3)
        arr = ramp_value(centres, ramp).astype(np.float32)
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    return out


def expected_rows(labels: sitk.Image, ct: sitk.Image, ramp=RAMP, constant: float | None = None) -> dict[int, dict]:
    """What the report must say about each gland, computed with numpy from the labels and the CT."""
    lab = sitk.GetArrayViewFromImage(labels)
    hu = sitk.GetArrayViewFromImage(ct)
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    rows = {}
    for g in GLANDS:
        mask = lab == g.label
        n = int(mask.sum())
        row = {"voxels": n, "volume_ml": n * voxel_ml}
        if n:
            v = hu[mask].astype(np.float64)
            pts = physical_points(labels, mask)
            u = np.full(n, constant) if constant is not None else ramp_value(pts, ramp)
            row.update({"hu_mean": v.mean(), "hu_sd": v.std(), "hu_median": float(np.median(v)), "centroid_lps_mm": pts.mean(0),
                        "uptake_mean": u.mean(), "uptake_max": u.max(), "uptake_total": u.sum() * voxel_ml})
        rows[g.label] = row
    return rows


def assert_row_matches(got: dict, want: dict, where: str) -> None:
    """Rounded report values (volume 0.001 ml, HU 0.1, centroid 0.1 mm) against exact ones."""
    assert got["voxels"] == want["voxels"], where
    assert got["volume_ml"] == pytest.approx(want["volume_ml"], abs=0.0006), where
    if not want["voxels"]:
        return
    for key in ("hu_mean", "hu_sd", "hu_median"):
        assert float(got[key]) == pytest.approx(want[key], abs=0.051), f"{where} {key}"
    assert np.allclose([float(c) for c in got["centroid_lps_mm"]], want["centroid_lps_mm"], atol=0.051), where
    for key in ("uptake_mean", "uptake_max", "uptake_total"):
        if key in got and got[key] not in (None, ""):
            assert float(got[key]) == pytest.approx(want[key], rel=2e-5), f"{where} {key}: {got[key]} != {want[key]}"


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
