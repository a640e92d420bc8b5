"""overview.png: axial, coronal and sagittal CT slices through the glands with overlays.

Shown in radiological convention (patient's right on the left of the image), with R/L
marks drawn from physical coordinates, so a swapped result is visible at a glance.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.geometry import image_bounds, model_grid, resample_to
from GlandSegLib.glands import GLANDS
from GlandSegLib.io.images import write_bytes_atomic


def render_overview(ct: sitk.Image, labels: sitk.Image, path: Path, title: str = "") -> None:
    """`ct` and `labels` share a grid (the head crop); both are resampled to 1 mm LPS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ref = model_grid(image_bounds(labels), [1.0, 1.0, 1.0])
    c = sitk.GetArrayFromImage(resample_to(ct, ref))
    lab = sitk.GetArrayFromImage(resample_to(labels, ref, is_label=True))
    if lab.any():
        zc, yc, xc = (int(v) for v in np.argwhere(lab > 0).mean(axis=0))
        # axial through the parotids if present: the most informative single slice
        par = np.argwhere((lab == 3) | (lab == 4))
        if par.size:
            zc = int(par[:, 0].mean())
    else:
        zc, yc, xc = (s // 2 for s in lab.shape)
    colors = np.zeros((7, 4))
    for g in GLANDS:
        colors[g.label, :3] = g.color
        colors[g.label, 3] = 0.55
    cmap = ListedColormap(colors)
    views = [
        ("axial", c[zc], lab[zc], "lower"),  # rows = y (anterior at top after flip below)
        ("coronal", c[:, yc, :], lab[:, yc, :], "lower"),
        ("sagittal", c[:, :, xc], lab[:, :, xc], "lower"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.6), dpi=100)
    for ax, (name, img, seg, origin) in zip(axes, views):
        if name == "axial":
            img, seg, origin = img, seg, "upper"  # y grows posterior: anterior at the top
        ax.imshow(img, cmap="gray", vmin=-160, vmax=240, origin=origin, interpolation="bilinear")
        ax.imshow(np.ma.masked_equal(seg, 0), cmap=cmap, vmin=0, vmax=6, origin=origin, interpolation="nearest")
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
        if name in ("axial", "coronal"):  # x grows to the patient's left: right is on the image's left
            ax.text(0.02, 0.5, "R", transform=ax.transAxes, color="yellow", fontsize=14, va="center")
            ax.text(0.95, 0.5, "L", transform=ax.transAxes, color="yellow", fontsize=14, va="center")
    handles = [Patch(color=g.color, label=g.name) for g in GLANDS]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(buf.getvalue(), Path(path))
