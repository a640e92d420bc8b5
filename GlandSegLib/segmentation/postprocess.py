"""Clean the network's labels and check that left glands are on the patient's left.

Mirrored predictions were the original failure of this project's predecessor, so sides
are checked in physical LPS space (+x = patient left), never from array indices.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.geometry import centroid_lps
from GlandSegLib.glands import BY_LABEL, GLANDS, partner


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a boolean mask (the mask itself when it has
    at most one); on a tie the first in scan order."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def keep_largest_component(labels: sitk.Image) -> sitk.Image:
    """Each gland is one organ: drop islands (false positives far from the gland).

    On the grid the labels lie on: right for stage one's glands, which are thick; the lacrimal
    stage chooses its thin glands on its own finer grid (lacrimal.one_gland)."""
    arr = sitk.GetArrayFromImage(labels)
    for g in GLANDS:
        mask = arr == g.label
        if mask.any():
            arr[mask & ~largest_component(mask)] = 0
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(labels)
    return out


def laterality_warnings(labels: sitk.Image, midline_x: float | None) -> dict[int, list[str]]:
    """Per gland label, warnings when its centroid is on the wrong side.

    Two independent tests: against the head's midline (from the locator), and against its
    partner gland (a right gland must have a smaller x than the left one).
    """
    arr = sitk.GetArrayViewFromImage(labels)
    centroids = {g.label: centroid_lps(arr == g.label, labels) for g in GLANDS}
    warnings: dict[int, list[str]] = {g.label: [] for g in GLANDS}
    for g in GLANDS:
        c = centroids[g.label]
        if c is None:
            continue
        if midline_x is not None:
            wrong = c[0] > midline_x if g.side == "R" else c[0] < midline_x
            if wrong:
                other = "left" if g.side == "R" else "right"
                warnings[g.label].append(
                    f"{g.name} lies on the patient's {other} of the midline (x={c[0]:.1f} mm, midline {midline_x:.1f} mm): possible left/right swap")
        p = partner(g)
        pc = centroids[p.label]
        if pc is not None:
            r, l = (c, pc) if g.side == "R" else (pc, c)
            if r[0] >= l[0]:
                warnings[g.label].append(f"{g.name} is not on the patient's {'right' if g.side == 'R' else 'left'} of the {BY_LABEL[p.label].name}: possible left/right swap")
    return warnings
