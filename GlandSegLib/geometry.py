"""Physical boxes, crops, resampling and paste-back that keep origin, spacing, direction.

Everything here works in LPS millimetres (SimpleITK's and DICOM's space). Indices are
only ever derived from physical points through the image's own geometry, so RAS storage,
flipped or permuted axes, feet-first and oblique volumes all behave alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import Iterator, Sequence

import numpy as np
import SimpleITK as sitk


@dataclass(frozen=True)
class PhysicalBox:
    """An axis-aligned box in LPS mm: the head region handed from the locator to inference."""

    lower: np.ndarray
    upper: np.ndarray

    def __post_init__(self) -> None:
        lo = np.asarray(self.lower, dtype=float)
        hi = np.asarray(self.upper, dtype=float)
        if lo.shape != (3,) or hi.shape != (3,) or np.any(hi <= lo):
            raise ValueError(f"invalid box {lo} .. {hi}")
        object.__setattr__(self, "lower", lo)
        object.__setattr__(self, "upper", hi)

    @property
    def size(self) -> np.ndarray:
        return self.upper - self.lower

    @property
    def center(self) -> np.ndarray:
        return (self.lower + self.upper) / 2

    def contains(self, point: Sequence[float]) -> bool:
        p = np.asarray(point, dtype=float)
        return bool(np.all(p >= self.lower) and np.all(p <= self.upper))

    def intersect(self, other: "PhysicalBox") -> "PhysicalBox":
        return PhysicalBox(np.maximum(self.lower, other.lower), np.minimum(self.upper, other.upper))

    def corners(self) -> Iterator[tuple[float, float, float]]:
        for c in product(*zip(self.lower, self.upper)):
            yield tuple(float(v) for v in c)

    def to_dict(self) -> dict[str, list[float]]:
        return {"lower_lps_mm": [round(float(v), 2) for v in self.lower], "upper_lps_mm": [round(float(v), 2) for v in self.upper]}


def image_bounds(image: sitk.Image) -> PhysicalBox:
    """The physical axis-aligned bounding box of the image's voxel centres (half a voxel out)."""
    size = np.array(image.GetSize())
    pts = [image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]) for corner in product(*[(-0.5, s - 0.5) for s in size])]
    arr = np.array(pts)
    return PhysicalBox(arr.min(axis=0), arr.max(axis=0))


def index_region(image: sitk.Image, box: PhysicalBox) -> tuple[list[int], list[int]]:
    """(start, size) of the smallest index region covering `box`, clipped to the image.

    Raises ValueError when the box misses the image entirely.
    """
    cidx = np.array([image.TransformPhysicalPointToContinuousIndex(c) for c in box.corners()])
    lo = np.floor(cidx.min(axis=0)).astype(int)
    hi = np.ceil(cidx.max(axis=0)).astype(int)
    dims = np.array(image.GetSize())
    lo = np.clip(lo, 0, dims - 1)
    hi = np.clip(hi, 0, dims - 1)
    size = hi - lo + 1
    if np.any(cidx.max(axis=0) < -0.5) or np.any(cidx.min(axis=0) > dims - 0.5):
        raise ValueError("the box lies outside the image")
    return [int(v) for v in lo], [int(v) for v in size]


def crop(image: sitk.Image, box: PhysicalBox) -> sitk.Image:
    """Exact voxels of `image` covering `box`; geometry kept (origin moves, nothing resampled)."""
    start, size = index_region(image, box)
    return sitk.RegionOfInterest(image, size, start)


def model_grid(box: PhysicalBox, spacing: Sequence[float]) -> sitk.Image:
    """An empty identity-direction (LPS) grid covering `box` at `spacing`.

    Models are trained on crops stored this way, so any storage orientation of the input
    reaches the network in the same anatomical orientation.
    """
    sp = np.asarray(spacing, dtype=float)
    size = np.maximum(np.ceil(box.size / sp).astype(int), 1)
    origin = box.center - (size - 1) * sp / 2
    ref = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    ref.SetSpacing([float(s) for s in sp])
    ref.SetOrigin([float(o) for o in origin])
    ref.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    return ref


def resample_to(image: sitk.Image, reference: sitk.Image, *, is_label: bool = False, default: float | None = None) -> sitk.Image:
    """Resample onto `reference`'s grid. CT: linear, float32; labels: nearest, same type."""
    if default is None:
        default = 0.0 if is_label else -1024.0
    if is_label:
        return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, default, image.GetPixelID())
    return sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, default, sitk.sitkFloat32)


def resample_box(image: sitk.Image, box: PhysicalBox, spacing: Sequence[float], *, is_label: bool = False) -> sitk.Image:
    """Crop to the box first (cheap, exact), then resample only that onto the model grid."""
    cropped = crop(image, box)
    return resample_to(cropped, model_grid(box, spacing), is_label=is_label)


def paste(region: sitk.Image, full: sitk.Image) -> sitk.Image:
    """Put `region` (a crop of `full`'s grid) back at its place in an image shaped like `full`.

    Exact: voxel for voxel, no interpolation; refuses a region not on `full`'s grid.
    """
    start = full.TransformPhysicalPointToContinuousIndex(region.GetOrigin())
    start_int = np.round(start).astype(int)
    if (
        np.max(np.abs(np.asarray(start) - start_int)) > 1e-3
        or not np.allclose(region.GetSpacing(), full.GetSpacing(), rtol=1e-6)
        or not np.allclose(region.GetDirection(), full.GetDirection(), atol=1e-6)
    ):
        raise ValueError("region is not on the grid of the full image")
    out = np.zeros(sitk.GetArrayViewFromImage(full).shape, dtype=sitk.GetArrayViewFromImage(region).dtype)
    src = sitk.GetArrayViewFromImage(region)
    x0, y0, z0 = (int(v) for v in start_int)
    sz, sy, sx = src.shape
    out[z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx] = src
    result = sitk.GetImageFromArray(out)
    result.CopyInformation(full)
    return result


def centroid_lps(mask: np.ndarray, image: sitk.Image) -> np.ndarray | None:
    """Physical centroid of a boolean (z, y, x) mask on `image`'s grid, or None when empty."""
    idx = np.argwhere(mask)
    if idx.size == 0:
        return None
    mean_zyx = idx.mean(axis=0)
    return np.array(image.TransformContinuousIndexToPhysicalPoint([float(mean_zyx[2]), float(mean_zyx[1]), float(mean_zyx[0])]))


def voxel_volume_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0
