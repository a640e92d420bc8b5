"""Find the head in a CT, fast and offline, and return a physical box around the glands.

Why this way: the glands sit at fixed distances from the skull base, and the skull is the
one place in the body where a closed bony ring encloses a large, homogeneous soft-tissue
region (the brain) in axial slices. Ribs enclose air, the pelvis encloses a mix of fat,
gas and bowel, long bones enclose a few cm^2. So we look for that ring on a coarse
canonical (LPS, identity-direction) copy of the scan, which makes the storage orientation
(RAS, feet-first, permuted, oblique) irrelevant. Scans whose field of view is cut above the
glands (head-and-neck planning scans, truncated vertex) have no complete ring; there the
top of a single, head-and-neck sized body column anchors the box instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .errors import NoHeadError
from .geometry import PhysicalBox, image_bounds, model_grid, resample_to

COARSE_MM = 3.0
BODY_HU = -400.0
BONE_HU = 250.0
# Box around the glands relative to the inferior end of the enclosed cranium (mm).
BELOW_SKULL_BASE_MM = 175.0
ABOVE_SKULL_BASE_MM = 75.0
HALF_WIDTH_MM = 100.0
DEPTH_MM = 200.0
# Box below the top of a body cut by the field of view.
BELOW_CUT_TOP_MM = 250.0


@dataclass(frozen=True)
class HeadBox(PhysicalBox):
    midline_x: float = 0.0
    method: str = "cranium"
    details: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update({"midline_x_mm": round(self.midline_x, 2), "method": self.method})
        return d


def _canonical(image: sitk.Image) -> tuple[np.ndarray, sitk.Image]:
    """A coarse identity-direction copy: array axes are (S->, P->, L->) = (z, y, x)."""
    ref = model_grid(image_bounds(image), [COARSE_MM] * 3)
    coarse = resample_to(image, ref, is_label=False, default=-1024.0)
    return sitk.GetArrayFromImage(coarse), coarse


def _cranial_slices(arr: np.ndarray, body: np.ndarray) -> tuple[np.ndarray, list]:
    """Per axial slice: is there a brain-like region enclosed by bone? And its mask."""
    px_cm2 = COARSE_MM * COARSE_MM / 100.0
    flags = np.zeros(arr.shape[0], dtype=bool)
    regions: list = [None] * arr.shape[0]
    bone_all = (arr > BONE_HU) & body
    for z in np.nonzero(bone_all.sum(axis=(1, 2)) > 10)[0]:
        bone = bone_all[z]
        enclosed = ndimage.binary_fill_holes(bone) & ~bone
        if enclosed.sum() * px_cm2 < 20:
            continue
        lab, n = ndimage.label(enclosed)
        sizes = ndimage.sum_labels(enclosed, lab, index=np.arange(1, n + 1))
        k = int(np.argmax(sizes)) + 1
        area = sizes[k - 1] * px_cm2
        if not 20 <= area <= 320:
            continue
        region = lab == k
        values = arr[z][region]
        soft = np.mean((values > -15) & (values < 85))
        if 5 <= np.median(values) <= 65 and soft >= 0.6:
            flags[z] = True
            regions[z] = region
    return flags, regions


def _runs(flags: np.ndarray, max_gap: int = 2) -> list[tuple[int, int]]:
    idx = np.nonzero(flags)[0]
    if idx.size == 0:
        return []
    runs, start, prev = [], idx[0], idx[0]
    for i in idx[1:]:
        if i - prev > max_gap + 1:
            runs.append((int(start), int(prev)))
            start = i
        prev = i
    runs.append((int(start), int(prev)))
    return runs


def _physical(coarse: sitk.Image, x: float, y: float, z: float) -> np.ndarray:
    return np.array(coarse.TransformContinuousIndexToPhysicalPoint([float(x), float(y), float(z)]))


def _front_back(body: np.ndarray, z0: int, z1: int) -> tuple[int, int]:
    rows = np.nonzero(body[max(z0, 0) : z1 + 1].any(axis=(0, 2)))[0]
    return int(rows.min()), int(rows.max())


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def locate_head(image: sitk.Image) -> HeadBox:
    """The physical box that holds the six glands, or NoHeadError with a reason."""
    arr, coarse = _canonical(image)
    body = _largest_component(arr > BODY_HU)
    if body.sum() == 0:
        raise NoHeadError("no body found in the image (nothing denser than air)")
    flags, regions = _cranial_slices(arr, body)
    min_len = int(np.ceil(18.0 / COARSE_MM))
    runs = [r for r in _runs(flags) if r[1] - r[0] + 1 >= min_len]
    if runs:
        z0, z1 = max(runs, key=lambda r: r[1])  # the most superior cranium-like run
        low = [regions[z] for z in range(z0, min(z1, z0 + int(40 / COARSE_MM)) + 1) if regions[z] is not None]
        cy, cx = np.argwhere(np.any(low, axis=0)).mean(axis=0)
        base = _physical(coarse, cx, cy, z0)
        front, _ = _front_back(body, z0 - int(BELOW_SKULL_BASE_MM / COARSE_MM), z0 + int(ABOVE_SKULL_BASE_MM / COARSE_MM))
        y_front = _physical(coarse, 0, front, 0)[1] - 8.0
        lower = np.array([base[0] - HALF_WIDTH_MM, y_front, base[2] - BELOW_SKULL_BASE_MM])
        upper = np.array([base[0] + HALF_WIDTH_MM, y_front + DEPTH_MM, base[2] + ABOVE_SKULL_BASE_MM])
        box = HeadBox(lower, upper, midline_x=float(base[0]), method="cranium",
                      details={"skull_base_lps_mm": [round(float(v), 1) for v in base], "cranium_mm": float((z1 - z0 + 1) * COARSE_MM)})
        return _clip(box, image)
    return _clip(_from_cut_top(arr, body, coarse), image)


def _from_cut_top(arr: np.ndarray, body: np.ndarray, coarse: sitk.Image) -> HeadBox:
    """Fallback when no cranium is seen: the top of a single, neck-sized body column.

    Head-and-neck planning scans are often cut (or masked) a few cm above the parotids; the
    glands then lie within BELOW_CUT_TOP_MM of the top of the body. What is refused: a top
    that is torso-sized, holds lung, or is split into several parts (legs, arms).
    """
    px_cm2 = COARSE_MM * COARSE_MM / 100.0
    areas = body.sum(axis=(1, 2)) * px_cm2
    occupied = np.nonzero(areas > 40)[0]  # thin things above the head (masks, rests) do not count
    if occupied.size == 0:
        raise NoHeadError("no head found: the body is too small to hold one")
    top = int(occupied.max())
    window = list(range(max(top - int(40 / COARSE_MM), 0), top + 1))
    top_area = float(np.median(areas[window]))
    big_parts = [int(np.sum(np.bincount(ndimage.label(body[z])[0].ravel())[1:] * px_cm2 > 40)) for z in window]
    lungs = float(np.median([((arr[z] < -500) & ndimage.binary_fill_holes(body[z])).sum() * px_cm2 for z in window]))
    column = slice(max(top - int(120 / COARSE_MM), 0), top + 1)
    bone = float(((arr[column] > BONE_HU) & body[column]).sum() * px_cm2 * COARSE_MM / 10.0)  # cm^3
    reasons = []
    if not 60 <= top_area <= 420:
        reasons.append(f"the top of the body is {top_area:.0f} cm^2 in cross-section, not head or neck sized")
    if np.median(big_parts) != 1:
        reasons.append("the top of the scan holds several separate body parts")
    if lungs > 25:
        reasons.append("the top of the scan contains lung")
    if bone < 5:
        reasons.append("there is no bone near the top of the body")
    if reasons:
        raise NoHeadError("no head found: no skull was seen, and " + "; ".join(reasons))
    cy, cx = np.argwhere(body[window].any(axis=0)).mean(axis=0)
    topp = _physical(coarse, cx, cy, top)
    front, _ = _front_back(body, top - int(BELOW_CUT_TOP_MM / COARSE_MM), top)
    y_front = _physical(coarse, 0, front, 0)[1] - 8.0
    lower = np.array([topp[0] - HALF_WIDTH_MM, y_front, topp[2] - BELOW_CUT_TOP_MM])
    upper = np.array([topp[0] + HALF_WIDTH_MM, y_front + DEPTH_MM, topp[2] + 30.0])
    return HeadBox(lower, upper, midline_x=float(topp[0]), method="top-of-body",
                   details={"top_of_body_lps_mm": [round(float(v), 1) for v in topp], "top_area_cm2": round(top_area, 1)})


def _clip(box: HeadBox, image: sitk.Image) -> HeadBox:
    bounds = image_bounds(image)
    try:
        inter = box.intersect(bounds)
    except ValueError as exc:
        raise NoHeadError("the head box found lies outside the image") from exc
    return HeadBox(inter.lower, inter.upper, midline_x=box.midline_x, method=box.method, details=box.details)
