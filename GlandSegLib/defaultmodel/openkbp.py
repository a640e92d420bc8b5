"""OpenKBP's real head-and-neck CTs as GlandSeg cases: parotid truth and partial training labels.

OpenKBP (see shared/data/README) outlines the parotids and five other organs, never the
lacrimal or submandibular glands. For training, each voxel is therefore one of:

* a parotid (the expert's outline),
* certain background: air (outside the body, the airway, outside the field of view), the
  other outlined organs, a thin ring around each outlined parotid (nothing else but fat
  and muscle touches a parotid: the ring teaches the network where a real parotid ends),
  and everything more than BELOW_PAROTIDS_MM below the parotids' lower pole (the neck and
  chest hold no gland of the six: a mid-training check found parotids "found" in the
  lower neck of real CTs when that region was left unsupervised),
* IGNORE_LABEL everywhere else in the body: a submandibular or lacrimal gland may be there,
  so the case must not call it background. nnU-Net's ignore label leaves those voxels out
  of the loss, so the phantoms keep teaching the other four glands.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.glands import IGNORE_LABEL, gland

# OpenKBP's oar_labels.nrrd values
BRAINSTEM, SPINAL_CORD, RIGHT_PAROTID, LEFT_PAROTID, ESOPHAGUS, LARYNX, MANDIBLE = range(1, 8)
PAROTIDS = {RIGHT_PAROTID: gland("parotid", "R").label, LEFT_PAROTID: gland("parotid", "L").label}
OTHER_ORGANS = (BRAINSTEM, SPINAL_CORD, ESOPHAGUS, LARYNX, MANDIBLE)
AIR_HU = -500.0  # below this a voxel is air (or outside the field of view): never a gland
RING_MM = 6.0
# The lowest submandibular voxel lies at most 47.5 mm below the lowest parotid voxel over
# all 70 TCIA outline sets (35 scans x 2 raters); 60 mm keeps a margin.
BELOW_PAROTIDS_MM = 60.0


def list_patients(folder: str | Path) -> list[Path]:
    """Patient folders (pt_N holding ct.nrrd), in numeric order."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if (p / "ct.nrrd").is_file() and (p / "oar_labels.nrrd").is_file()]
    if not found:
        raise FileNotFoundError(f"no OpenKBP patients (pt_*/ct.nrrd + oar_labels.nrrd) in {folder}")
    return sorted(found, key=lambda p: (int(p.name.rsplit("_", 1)[-1]) if p.name.rsplit("_", 1)[-1].isdigit() else 10**9, p.name))


def _like(a: np.ndarray, ref: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(ref)
    return img


def parotid_truth(oar: sitk.Image) -> sitk.Image:
    """The parotids in GlandSeg's label values, everything else 0 (for scoring)."""
    t = sitk.GetArrayViewFromImage(oar)
    out = np.zeros(t.shape, np.uint8)
    for src, dst in PAROTIDS.items():
        out[t == src] = dst
    return _like(out, oar)


def _patient_z(image: sitk.Image) -> np.ndarray:
    """Physical LPS z (towards the head) of every voxel, a (z, y, x) float32 array."""
    d = np.array(image.GetDirection()).reshape(3, 3)[2] * np.array(image.GetSpacing())
    x, y, z = (np.arange(n, dtype=np.float32) * np.float32(step) for n, step in zip(image.GetSize(), d))
    return np.float32(image.GetOrigin()[2]) + z[:, None, None] + y[None, :, None] + x[None, None, :]


def partial_labels(ct: sitk.Image, oar: sitk.Image, ring_mm: float = RING_MM,
                   below_parotids_mm: float = BELOW_PAROTIDS_MM) -> sitk.Image:
    """Training labels on the OpenKBP grid: parotids, certain background, IGNORE_LABEL elsewhere."""
    if ct.GetSize() != oar.GetSize():
        raise ValueError(f"CT size {ct.GetSize()} != label size {oar.GetSize()}")
    t = sitk.GetArrayViewFromImage(oar)
    hu = sitk.GetArrayViewFromImage(ct)
    out = np.full(t.shape, IGNORE_LABEL, np.uint8)
    out[hu < AIR_HU] = 0
    out[np.isin(t, OTHER_ORGANS)] = 0
    for src in PAROTIDS:
        mask = t == src
        if not mask.any():
            continue  # not outlined (resected or not contoured): its place stays unknown
        dist = sitk.SignedMaurerDistanceMap(_like(mask.astype(np.uint8), oar), insideIsPositive=False,
                                            squaredDistance=False, useImageSpacing=True)
        ring = (sitk.GetArrayViewFromImage(dist) <= ring_mm) & ~mask
        out[ring & (out == IGNORE_LABEL)] = 0
    parotid = np.isin(t, list(PAROTIDS))
    if parotid.any():
        z = _patient_z(oar)
        lowest = float(z[parotid].min())
        out[(z < lowest - below_parotids_mm) & (out == IGNORE_LABEL)] = 0
    for src, dst in PAROTIDS.items():
        out[t == src] = dst
    return _like(out, oar)
