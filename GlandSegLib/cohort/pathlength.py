"""Added path length (APL): how much outline a user had to draw to correct a segmentation.

Vaassen F. et al., *Evaluation of measures for assessing time-saving of automatic
organ-at-risk segmentation in radiotherapy*, Physics and Imaging in Radiation Oncology
13:1-6 (2020), found that the length of contour a clinician adds or moves while correcting
an automatic outline predicts the correction time better than Dice or Hausdorff distances:
Dice barely notices a small gland redrawn on three slices, a user does.

The definition used here, and why:

* **Slices.** Clinicians draw on axial slices. The slices are those of the comparison grid
  (the original segmentation's grid) along its index axis that points most nearly
  head-to-feet in patient coordinates (`axial_axis`): the third axis for an ordinary CT,
  another one for a CT stored sagittally or coronally, the nearest-to-axial one for an
  oblique grid. Lengths are measured within each slice only.
* **Contours.** On a slice, a mask's contour is its 0.5 iso-line (marching squares,
  4-connected foreground, as GlandSegLib.io.rtstruct outlines masks for an RTSTRUCT): a
  pixel-edge outline with corners cut by half a pixel, so a straight edge is measured at its
  true length and a staircase diagonal is not counted as its two legs. Points are in mm
  along the slice's two axes (anisotropic pixels count at their own size: the direction
  matrix is orthonormal, so index steps times spacing are physical distances).
* **Added path.** The part of the corrected contour that lies farther than the tolerance
  from the original's contour *on the same slice* counts; each contour segment is cut into
  pieces no longer than a quarter of the smaller pixel size, a piece counts when both ends
  are farther than the tolerance, and where the tolerance is crossed within a piece the
  crossing is found by bisection (exact point-to-segment distances, no distance map: the
  result does not depend on how finely it is sampled, nor on the grid's extent). On a slice where the original has no contour, the whole corrected contour counts
  (the user drew it all). Erasing a whole slice adds nothing (no corrected contour is
  left there: one stroke), while trimming a gland counts the new edge it leaves where that
  edge lies beyond the tolerance (the user drew it with the eraser): APL measures drawing,
  as Vaassen et al. do; Dice and the volume change show what was removed.
* **Tolerance.** By default the organ's surface-Dice tolerance (metrics.SURFACE_TOLERANCE_MM:
  lacrimal 2.5, parotid 2.85, submandibular 2.02 mm: how far two experts' outlines of that
  gland normally differ); a stated value may replace it (0: every moved point counts).
* A slice whose two masks are identical adds exactly 0 (not a rounding residue), so an
  untouched gland has APL 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

_EPS_MM = 1e-9  # distances of points on the original's own contour are 0 up to rounding
_CHUNK = 4096  # corrected-contour pieces per distance batch (bounds memory on long contours)
_BISECTIONS = 16  # where a piece crosses the tolerance: located to 1/65536 of the piece


@dataclass(frozen=True)
class AddedPath:
    """APL of one structure, with the contour lengths that put it in proportion."""

    apl_mm: float  # corrected contour farther than the tolerance from the original's, summed over slices
    original_mm: float  # total contour length of the original, all slices
    corrected_mm: float  # total contour length of the corrected structure
    slices_with_added_path: int  # slices on which the user drew something (APL > 0 there)
    tolerance_mm: float
    axis: int  # image index axis (0 = i, 1 = j, 2 = k) whose slices were measured


def axial_axis(reference: sitk.Image) -> int:
    """The image index axis (0, 1, 2) whose direction is closest to the patient's
    head-feet axis (LPS z): slices across it are the (nearest to) axial planes."""
    d = np.abs(np.array(reference.GetDirection(), dtype=float).reshape(3, 3)[2])
    best = float(d.max())
    return max(i for i in range(3) if d[i] >= best - 1e-9)  # ties: the later axis (the usual slice axis)


def slice_contours(mask: np.ndarray, spacing_rc: Sequence[float]) -> list[np.ndarray]:
    """Closed contours of a 2D mask as (n, 2) arrays in mm (row, column), first point repeated last."""
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)  # closes contours that touch the slice's edge
    scale = np.asarray(spacing_rc, dtype=float)
    return [(c - 1.0) * scale for c in find_contours(padded, 0.5, fully_connected="low") if len(c) >= 3]


def contour_length(contours: Sequence[np.ndarray]) -> float:
    """Total length (mm) of closed polylines given with their first point repeated last."""
    return float(sum(np.linalg.norm(np.diff(c, axis=0), axis=1).sum() for c in contours))


def _segments(contours: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    a = np.concatenate([c[:-1] for c in contours])
    b = np.concatenate([c[1:] for c in contours])
    return a, b


def _distance_to_segments(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Exact distance (mm) from each point to the nearest of the segments a[i]-b[i]."""
    ab = b - a
    ab2 = np.maximum((ab * ab).sum(axis=1), 1e-30)
    out = np.empty(len(points))
    for s in range(0, len(points), _CHUNK):
        p = points[s:s + _CHUNK, None, :]  # (m, 1, 2)
        t = np.clip(((p - a) * ab).sum(axis=2) / ab2, 0.0, 1.0)  # (m, n)
        closest = a + t[..., None] * ab
        out[s:s + _CHUNK] = np.sqrt(((p - closest) ** 2).sum(axis=2)).min(axis=1)
    return out


def added_on_slice(original: Sequence[np.ndarray], corrected: Sequence[np.ndarray], tolerance_mm: float,
                   piece_mm: float) -> float:
    """Length (mm) of the `corrected` contours farther than `tolerance_mm` from the `original` ones."""
    if not corrected:
        return 0.0
    if not original:
        return contour_length(corrected)
    a, b = _segments(original)
    start, end = _segments(corrected)
    length = np.linalg.norm(end - start, axis=1)
    # the margin keeps a pixel-long segment in the same number of pieces whatever rounding its
    # coordinates carry (on a crop or on the full grid): same outlines, same APL
    pieces = np.maximum(np.ceil(length / piece_mm - 1e-6).astype(int), 1)
    seg = np.repeat(np.arange(len(start)), pieces)
    q = np.arange(len(seg)) - np.repeat(np.cumsum(pieces) - pieces, pieces)  # piece q of segment seg
    n = pieces[seg]
    base, direction = start[seg], end[seg] - start[seg]

    def beyond(fraction: np.ndarray, which: np.ndarray | slice = slice(None)) -> np.ndarray:
        points = base[which] + fraction[:, None] * direction[which]
        return _distance_to_segments(points, a, b) > tolerance_mm + _EPS_MM

    f0, f1 = q / n, (q + 1) / n
    out0, out1 = beyond(f0), beyond(f1)
    share = (out0 & out1).astype(float)  # whole pieces beyond the tolerance
    mixed = np.nonzero(out0 != out1)[0]
    if mixed.size:  # the outline crosses the tolerance inside these pieces: find where, by bisection
        lo, hi = f0[mixed].copy(), f1[mixed].copy()
        inside_at_lo = ~out0[mixed]
        for _ in range(_BISECTIONS):
            mid = (lo + hi) / 2
            same = beyond(mid, mixed) == ~inside_at_lo  # mid is on lo's side of the crossing
            lo, hi = np.where(same, mid, lo), np.where(same, hi, mid)
        crossing = (lo + hi) / 2
        share[mixed] = np.where(inside_at_lo, f1[mixed] - crossing, crossing - f0[mixed]) * n[mixed]
    return float((length[seg] / n * share).sum())


def added_path_length(original: np.ndarray, corrected: np.ndarray, reference: sitk.Image,
                      tolerance_mm: float) -> AddedPath:
    """APL (see module doc) of boolean (z, y, x) masks on `reference`'s grid."""
    if original.shape != corrected.shape or original.shape != sitk.GetArrayViewFromImage(reference).shape:
        raise ValueError("original, corrected and reference must share one grid")
    if tolerance_mm < 0:
        raise ValueError("the tolerance is a distance: 0 mm or more")
    axis = axial_axis(reference)
    np_axis = 2 - axis  # numpy holds (z, y, x) = index axes (2, 1, 0)
    spacing_zyx = list(reversed(reference.GetSpacing()))
    in_plane = [spacing_zyx[i] for i in range(3) if i != np_axis]
    piece = min(in_plane) / 4.0
    o = np.moveaxis(np.asarray(original, dtype=bool), np_axis, 0)
    c = np.moveaxis(np.asarray(corrected, dtype=bool), np_axis, 0)
    either = o | c
    if not either.any():
        return AddedPath(0.0, 0.0, 0.0, 0, tolerance_mm, axis)
    idx = np.argwhere(either)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    o = o[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    c = c[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    apl = orig_len = corr_len = 0.0
    touched = 0
    for k in range(o.shape[0]):
        ok, ck = o[k], c[k]
        co = slice_contours(ok, in_plane) if ok.any() else []
        cc = co if np.array_equal(ok, ck) else (slice_contours(ck, in_plane) if ck.any() else [])
        orig_len += contour_length(co)
        corr_len += contour_length(cc)
        if cc is co:
            continue  # identical slice: nothing drawn
        added = added_on_slice(co, cc, tolerance_mm, piece)
        if added > 0:
            apl += added
            touched += 1
    return AddedPath(apl, orig_len, corr_len, touched, tolerance_mm, axis)
