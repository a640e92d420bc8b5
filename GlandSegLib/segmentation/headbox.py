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

from GlandSegLib.errors import NoHeadError
from GlandSegLib.geometry import PhysicalBox, image_bounds, model_grid, resample_to
from GlandSegLib.segmentation.postprocess import largest_component

COARSE_MM = 3.0
BODY_HU = -400.0
BONE_HU = 250.0
# Box around the glands relative to the inferior end of the enclosed cranium (mm).
BELOW_SKULL_BASE_MM = 175.0
ABOVE_SKULL_BASE_MM = 110.0  # lacrimal tops reach ~102 mm above it in the TCIA outlines
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


@dataclass
class _Coarse:
    """A coarse copy with identity direction: array axes (z, y, x) grow to S, P, L."""

    arr: np.ndarray
    image: sitk.Image

    @property
    def px_cm2(self) -> float:
        sx, sy, _ = self.image.GetSpacing()
        return sx * sy / 100.0

    @property
    def dz(self) -> float:
        return self.image.GetSpacing()[2]

    def slices(self, mm: float) -> int:
        return max(int(round(mm / self.dz)), 1)

    def physical(self, x: float, y: float, z: float) -> np.ndarray:
        return np.array(self.image.TransformContinuousIndexToPhysicalPoint([float(x), float(y), float(z)]))


def _signed_permutation(direction: tuple[float, ...]) -> tuple[list[int], list[int]] | None:
    """For axis-aligned storage: physical axis and sign of each index axis, else None."""
    d = np.array(direction).reshape(3, 3)
    axes = [int(np.argmax(np.abs(d[:, a]))) for a in range(3)]
    if sorted(axes) != [0, 1, 2] or not np.allclose(np.abs(d[axes, [0, 1, 2]]), 1.0, atol=1e-4):
        return None
    return axes, [int(np.sign(d[axes[a], a])) for a in range(3)]


def _canonical(image: sitk.Image) -> _Coarse:
    """Axis-aligned scans (nearly all) are subsampled and transposed as numpy views, which
    costs milliseconds on a whole-body CT; oblique ones are resampled."""
    perm = _signed_permutation(image.GetDirection())
    if perm is None:
        ref = model_grid(image_bounds(image), [COARSE_MM] * 3)
        coarse = resample_to(image, ref, is_label=False, default=-1024.0)
        return _Coarse(sitk.GetArrayFromImage(coarse), coarse)
    axes, signs = perm
    size = image.GetSize()
    steps = [max(1, int(round(COARSE_MM / sp))) for sp in image.GetSpacing()]
    # start flipped axes at (size-1) % step: the same physical voxels are sampled whichever
    # end of the axis the storage starts from, so LPS, RAS and feet-first give one box
    starts = [0 if signs[a] > 0 else (size[a] - 1) % steps[a] for a in range(3)]
    view = sitk.GetArrayViewFromImage(image)[starts[2] :: steps[2], starts[1] :: steps[1], starts[0] :: steps[0]]  # numpy axis n = index axis 2-n
    order = [2 - axes.index(2 - m) for m in range(3)]  # output axis m = physical axis 2-m
    arr = view.transpose(order)
    first = [0 if signs[a] > 0 else starts[a] + ((size[a] - 1 - starts[a]) // steps[a]) * steps[a] for a in range(3)]
    flips = tuple(m for m in range(3) if signs[axes.index(2 - m)] < 0)
    arr = np.ascontiguousarray(np.flip(arr, axis=flips) if flips else arr)
    coarse = sitk.Image([int(v) for v in arr.shape[::-1]], sitk.sitkUInt8)
    coarse.SetOrigin(image.TransformIndexToPhysicalPoint(first))
    coarse.SetSpacing([image.GetSpacing()[axes.index(p)] * steps[axes.index(p)] for p in range(3)])
    return _Coarse(arr, coarse)


def _cranial_slices(c: _Coarse, body: np.ndarray, body_area: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per axial slice: is there a brain-like region enclosed by bone? And its mask.

    Only slices of head or neck size are examined: the torso cannot hold a cranium, and
    skipping it keeps whole-body scans fast.
    """
    arr = c.arr
    flags = np.zeros(arr.shape[0], dtype=bool)
    regions: dict[int, np.ndarray] = {}
    bone_all = (arr > BONE_HU) & body
    candidates = np.nonzero((bone_all.sum(axis=(1, 2)) > 10) & (body_area < 450))[0]
    for z in candidates:
        bone = bone_all[z]
        ys, xs = np.nonzero(bone)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        sub = bone[y0:y1, x0:x1]
        enclosed = ndimage.binary_fill_holes(sub) & ~sub
        if enclosed.sum() * c.px_cm2 < 20:
            continue
        lab, n = ndimage.label(enclosed)
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        k = int(np.argmax(sizes))
        area = sizes[k] * c.px_cm2
        if not 20 <= area <= 320:
            continue
        region = np.zeros_like(bone)
        region[y0:y1, x0:x1] = lab == k
        values = arr[z][region]
        soft = np.mean((values > -15) & (values < 85))
        if 5 <= np.median(values) <= 65 and soft >= 0.6:
            flags[z] = True
            regions[int(z)] = region
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


def _front(c: _Coarse, body: np.ndarray, z0: int, z1: int) -> float:
    """Physical y of the most anterior body point between two slices, less a margin."""
    rows = np.nonzero(body[max(z0, 0) : z1 + 1].any(axis=(0, 2)))[0]
    return float(c.physical(0, rows.min(), 0)[1]) - 8.0


def locate_head(image: sitk.Image) -> HeadBox:
    """The physical box that holds the six glands, or NoHeadError with a reason."""
    c = _canonical(image)
    body = largest_component(c.arr > BODY_HU)
    if body.sum() == 0:
        raise NoHeadError("no body found in the image (nothing denser than air)")
    body_area = body.sum(axis=(1, 2)) * c.px_cm2
    flags, regions = _cranial_slices(c, body, body_area)
    runs = [r for r in _runs(flags, max_gap=c.slices(15.0)) if (r[1] - r[0] + 1) * c.dz >= 18.0]
    if runs:
        z0, z1 = max(runs, key=lambda r: r[1])  # the most superior cranium-like run
        low = [regions[z] for z in range(z0, min(z1, z0 + c.slices(40)) + 1) if z in regions]
        cy, cx = np.argwhere(np.any(low, axis=0)).mean(axis=0)
        base = c.physical(cx, cy, z0)
        y_front = _front(c, body, z0 - c.slices(BELOW_SKULL_BASE_MM), z0 + c.slices(ABOVE_SKULL_BASE_MM))
        lower = np.array([base[0] - HALF_WIDTH_MM, y_front, base[2] - BELOW_SKULL_BASE_MM])
        upper = np.array([base[0] + HALF_WIDTH_MM, y_front + DEPTH_MM, base[2] + ABOVE_SKULL_BASE_MM])
        box = HeadBox(lower, upper, midline_x=float(base[0]), method="cranium",
                      details={"skull_base_lps_mm": [round(float(v), 1) for v in base], "cranium_mm": round((z1 - z0 + 1) * c.dz, 1)})
        return _clip(box, image)
    return _clip(_from_cut_top(c, body, body_area), image)


def _from_cut_top(c: _Coarse, body: np.ndarray, areas: np.ndarray) -> HeadBox:
    """Fallback when no cranium is seen: the top of a single, neck-sized body column.

    Head-and-neck planning scans are often cut (or masked) a few cm above the parotids; the
    glands then lie within BELOW_CUT_TOP_MM of the top of the body. What is refused: a top
    that is torso-sized, holds lung, or is split into several parts (legs, arms).
    """
    arr = c.arr
    occupied = np.nonzero(areas > 40)[0]  # thin things above the head (masks, rests) do not count
    if occupied.size == 0:
        raise NoHeadError("no head found: the body is too small to hold one")
    top = int(occupied.max())
    window = list(range(max(top - c.slices(40), 0), top + 1))
    top_area = float(np.median(areas[window]))
    big_parts = [int(np.sum(np.bincount(ndimage.label(body[z])[0].ravel())[1:] * c.px_cm2 > 40)) for z in window]
    lungs = float(np.median([((arr[z] < -500) & ndimage.binary_fill_holes(body[z])).sum() * c.px_cm2 for z in window]))
    column = slice(max(top - c.slices(120), 0), top + 1)
    bone = float(((arr[column] > BONE_HU) & body[column]).sum() * c.px_cm2 * c.dz / 10.0)  # cm^3
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
    topp = c.physical(cx, cy, top)
    y_front = _front(c, body, top - c.slices(BELOW_CUT_TOP_MM), top)
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
