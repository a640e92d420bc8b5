"""The scanner both phantom kinds go through: fields of view and grid layout, blur, noise, the
reconstruction circle, and the finished images (Phantom).

Storage is LPS, identity direction, z index increasing superiorly (storage.reorient stores it
otherwise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.defaultmodel.phantom.shapes import CHUNK, Canvas

# field: (in-plane field of view mm, default length mm, y of the field centre from the head/body centre)
FIELDS = {"head": (240.0, 240.0, -20.0), "headneck": (500.0, 350.0, -10.0), "wholebody": (500.0, 1500.0, -10.0)}


@dataclass
class Phantom:
    ct: sitk.Image  # int16 HU, air -1000, outside the reconstruction circle -1024
    labels: sitk.Image  # uint8, the six glands only, canonical values, same grid as ct
    midline_x: float  # physical LPS x of the head's midsagittal plane (head centre), mm


def extent(field: str, vertex: float, truncate_vertex_mm: float, length_mm: float | None) -> tuple[float, float]:
    """Top (physical z) and length of a field: a truncated vertex lowers the top, the lower end stays."""
    top = vertex - truncate_vertex_mm if truncate_vertex_mm > 0 else vertex + 5.0
    length = length_mm if length_mm is not None else FIELDS[field][1] - (vertex + 5.0 - top)
    return top, length


def layout(field: str, spacing, size_xy: int | None, top: float, length: float, xc: float, yc: float,
           fov: float | None = None) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Grid size and origin of a field of view centred on (xc, yc), from top down by length."""
    sx, sy, sz = (float(v) for v in spacing)
    fov = fov or FIELDS[field][0]
    nz = max(1, int(round(length / sz)))
    nx = size_xy or int(round(fov / sx))
    ny = size_xy or int(round(fov / sy))
    return (nx, ny, nz), (xc - (nx - 1) / 2 * sx, yc - (ny - 1) / 2 * sy, top - (nz - 1) * sz)


def images(cv: Canvas) -> tuple[np.ndarray, sitk.Image]:
    """The finished canvas as a CT image (and its label array); the canvas gives up its CT copy."""
    img = sitk.GetImageFromArray(cv.ct)
    cv.ct = None  # the image holds its own copy: free ours before the labels are copied too
    img.SetOrigin(tuple(float(v) for v in cv.origin))
    img.SetSpacing(tuple(float(v) for v in cv.spacing))
    return cv.lab, img


def finish(cv: Canvas, blur_mm: float, noise_sd: float, rng: np.random.Generator, circle: bool) -> None:
    """Scanner blur and noise, slab by slab in place (float32 only for one slab at a time)."""
    sig = blur_mm / cv.spacing[::-1]
    m = int(math.ceil(3 * sig.max())) + 1
    nz, ny, nx = cv.ct.shape
    step = max(m + 1, CHUNK // (ny * nx))
    outside = None
    if circle:
        yy, xx = np.mgrid[:ny, :nx]
        r = min(nx * cv.spacing[0], ny * cv.spacing[1]) / 2
        outside = ((xx - (nx - 1) / 2) * cv.spacing[0]) ** 2 + ((yy - (ny - 1) / 2) * cv.spacing[1]) ** 2 > r * r
    tail = None  # original (unblurred) rows just below the current slab
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        lo, hi = max(0, z0 - m), min(nz, z1 + m)
        block = cv.ct[lo:hi].copy()
        if tail is not None:
            block[:z0 - lo] = tail
        tail = cv.ct[max(z1 - m, 0):z1].copy()
        res = rng.standard_normal((z1 - z0, ny, nx), dtype=np.float32)
        res *= np.float32(noise_sd)
        res -= np.float32(1000)  # air, blurred or not
        ys, xs = np.nonzero((block != -1000).any(0))  # blur only the box around the content
        if len(ys):
            y0, y1, x0, x1 = max(ys.min() - m, 0), ys.max() + m + 1, max(xs.min() - m, 0), xs.max() + m + 1
            sub = ndimage.gaussian_filter(block[:, y0:y1, x0:x1].astype(np.float32), sig, mode="nearest", truncate=3.0)
            res[:, y0:y1, x0:x1] += sub[z0 - lo:z0 - lo + (z1 - z0)] + np.float32(1000)
        if outside is not None:
            np.copyto(res, np.float32(-1024), where=outside)
        np.rint(res, out=res)
        np.clip(res, -1024, 3071, out=res)
        cv.ct[z0:z1] = res
