"""The same physical anatomy stored another way (RAS, flipped, permuted, feet first, oblique,
anisotropic): test input for orientation handling.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

VARIANTS = ("lps", "ras", "flip_x", "permuted", "feet_first", "oblique10", "anisotropic")


def reorient(image: sitk.Image, variant: str, *, is_label: bool = False) -> sitk.Image:
    """The same physical content stored another way, to test orientation handling."""
    if variant == "lps":
        return sitk.Image(image)
    if variant in ("ras", "flip_x", "feet_first"):
        axes = {"ras": [True, True, False], "flip_x": [True, False, False], "feet_first": [False, False, True]}[variant]
        return sitk.Flip(image, axes)
    if variant == "permuted":
        return sitk.PermuteAxes(image, (2, 0, 1))
    interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    default = 0 if is_label else -1024
    size, sp = np.array(image.GetSize()), np.array(image.GetSpacing())
    d_old = np.array(image.GetDirection()).reshape(3, 3)
    if variant == "anisotropic":
        new_sp = np.array([0.7, 0.7, 3.0])
        new_size = np.maximum(1, np.round(size * sp / new_sp)).astype(int)
        origin = np.array(image.GetOrigin()) + d_old @ ((new_sp - sp) / 2)
        direction = d_old
    elif variant == "oblique10":
        axis = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
        a = math.radians(10)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        direction = (np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k) @ d_old
        corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in size], indexing="ij")).reshape(3, -1).T
        phys = np.array(image.GetOrigin()) + (corners * sp) @ d_old.T
        local = phys @ direction  # coordinates along the new axes
        new_sp = sp
        new_size = np.ceil((local.max(0) - local.min(0)) / new_sp).astype(int)
        origin = direction @ (local.min(0) + new_sp / 2)
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    return sitk.Resample(image, [int(v) for v in new_size], sitk.Transform(), interp,
                         [float(v) for v in origin], [float(v) for v in new_sp],
                         [float(v) for v in direction.ravel()], default, image.GetPixelID())
