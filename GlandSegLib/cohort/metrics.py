"""Segmentation agreement: Dice, 95% Hausdorff, surface Dice at a tolerance, volume error.

Distances are in mm on the masks' common grid (anisotropic spacing honoured). Surface Dice
(Nikolov et al. 2018) uses organ tolerances measured between human raters; the defaults
here are theirs for the glands.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

SURFACE_TOLERANCE_MM = {"lacrimal": 2.5, "parotid": 2.85, "submandibular": 2.02}


def dice(a: np.ndarray, b: np.ndarray) -> float | None:
    """None when both are empty (agreement on absence is not a score)."""
    sa, sb = int(a.sum()), int(b.sum())
    if sa + sb == 0:
        return None
    return 2.0 * int(np.logical_and(a, b).sum()) / (sa + sb)


def _crop_pair(a: np.ndarray, b: np.ndarray, pad: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to their joint bounding box (plus padding): distance maps stay small."""
    idx = np.argwhere(a | b)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, a.shape)
    sl = tuple(slice(l, h) for l, h in zip(lo, hi))
    return a[sl], b[sl]


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of a to b's surface, and of b to a's."""
    a, b = _crop_pair(a.astype(bool), b.astype(bool))
    sa, sb = _surface(a), _surface(b)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing_zyx)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=spacing_zyx)
    return dist_to_b[sa], dist_to_a[sb]


def hd95(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]) -> float | None:
    if not a.any() or not b.any():
        return None
    da, db = surface_distances(a, b, spacing_zyx)
    return float(max(np.percentile(da, 95), np.percentile(db, 95)))


def surface_dice(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float], tolerance_mm: float) -> float | None:
    if not a.any() and not b.any():
        return None
    if not a.any() or not b.any():
        return 0.0
    da, db = surface_distances(a, b, spacing_zyx)
    return float((np.sum(da <= tolerance_mm) + np.sum(db <= tolerance_mm)) / (len(da) + len(db)))


def volume_error_percent(pred: np.ndarray, ref: np.ndarray) -> float | None:
    r = int(ref.sum())
    return None if r == 0 else 100.0 * (int(pred.sum()) - r) / r
