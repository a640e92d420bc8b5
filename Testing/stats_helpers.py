"""Expected per-gland statistics computed with numpy only, and uptake images known in closed form.

Shared by test_statistics.py (the statistics of the true labels) and test_cli.py (the
report of a real `glandseg segment --uptake` run against its own label map and the CT).
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS

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
