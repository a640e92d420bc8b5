"""Per-gland volume, CT intensity and optional PET/SPECT uptake.

Uptake images come on their own grid; they are resampled (linearly) onto the CT grid so
each gland voxel gets one uptake value. Totals are value x ml, so Bq/ml becomes Bq.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from GlandSegLib.geometry import centroid_lps, voxel_volume_ml
from GlandSegLib.glands import GLANDS


def gland_statistics(labels: sitk.Image, ct: sitk.Image, uptake: sitk.Image | None = None) -> dict[int, dict]:
    """`labels` and `ct` share one grid (typically the head crop)."""
    lab = sitk.GetArrayViewFromImage(labels)
    hu = sitk.GetArrayViewFromImage(ct)
    up = None
    if uptake is not None:
        up = sitk.GetArrayFromImage(sitk.Resample(uptake, labels, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    vml = voxel_volume_ml(labels)
    out: dict[int, dict] = {}
    for g in GLANDS:
        mask = lab == g.label
        n = int(mask.sum())
        row: dict = {"label": g.label, "name": g.name, "voxels": n, "volume_ml": round(n * vml, 3)}
        if n:
            v = hu[mask].astype(np.float32)
            c = centroid_lps(mask, labels)
            row.update({
                "hu_mean": round(float(v.mean()), 1), "hu_sd": round(float(v.std()), 1),
                "hu_median": round(float(np.median(v)), 1),
                "centroid_lps_mm": [round(float(x), 1) for x in c],
            })
            if up is not None:
                u = up[mask]
                row.update({"uptake_mean": float(u.mean()), "uptake_max": float(u.max()), "uptake_total": float(u.sum() * vml)})
        out[g.label] = row
    return out
