"""Second stage for the lacrimal glands: a fine grid on a small box beside each orbit.

Why a second stage: a lacrimal gland holds ~0.65 ml, about 80 voxels on the 2 mm head
crop, and a CPU-trained network on that crop never separated it from the orbital fat
(glandseg-v2: Dice 0 on every held-out scan). On a 1.25 mm grid the gland has ~330 voxels,
and an 80 mm box around it is exactly one 64^3 patch: one tile per side, about a second on
a CPU, and every training patch holds a gland.

Why the parotid anchors the box: stage one finds the parotids reliably (Dice ~0.8), and
in the TCIA expert outlines (70 scans, both raters) the lacrimal centroid lies at a stable
offset from the ipsilateral parotid centroid: about 14 mm medial, 49 mm anterior and 72 mm
superior, SD 4-10 mm per axis, every case within 25 mm of the mean. The box (±40 mm) holds
the whole gland for all of them. The offsets a model uses are measured on its own training
outlines and travel in its glandseg-model.json, so a retrained stage carries its anchor.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from GlandSegLib.geometry import PhysicalBox, centroid_lps, resample_box
from GlandSegLib.segmentation.postprocess import largest_component

BOX_MM = 80.0
SPACING_MM = 1.25  # BOX_MM / SPACING_MM = 64 voxels: one patch
LACRIMAL_OF_PAROTID = {3: 1, 4: 2}  # parotid label -> lacrimal label on the same side
LACRIMAL_LABELS = tuple(LACRIMAL_OF_PAROTID.values())
STAGE_KIND = "lacrimal"
AIR_HU = -300.0  # below this a voxel is air (or padding outside the scan), never gland
BELOW_HALF = np.float32(0.499)  # a probability no interpolation between such values lifts past 0.5


def label_centroid(labels: sitk.Image, label: int) -> np.ndarray | None:
    """Physical (LPS mm) centroid of one label, or None where it is absent; any direction."""
    return centroid_lps(sitk.GetArrayViewFromImage(labels) == label, labels)


def lacrimal_box(parotid_centroid: Sequence[float], offset_mm: Sequence[float], box_mm: float = BOX_MM) -> PhysicalBox:
    """The cube where the lacrimal gland of the parotid's side is looked for."""
    centre = np.asarray(parotid_centroid, float) + np.asarray(offset_mm, float)
    return PhysicalBox(centre - box_mm / 2, centre + box_mm / 2)


def stage_boxes(labels: sitk.Image, offsets: Mapping[int, Sequence[float]], box_mm: float = BOX_MM,
                midline_x: float | None = None, fallback: Mapping[int, Sequence[float]] | None = None) -> dict[int, PhysicalBox]:
    """Per lacrimal label, its box, for each side whose parotid `labels` holds.

    A side whose parotid is missing (resected, or not found) borrows the other parotid
    mirrored across the patient's midline (LPS x), when the midline is known. Without
    either parotid (a brain-only CT) a side's box is centred on `fallback`, the lacrimal
    gland's expected centre from other anatomy (the cranium), where given.
    """
    centres = {p: label_centroid(labels, p) for p in LACRIMAL_OF_PAROTID}
    boxes = {}
    for parotid, lacrimal in LACRIMAL_OF_PAROTID.items():
        c = centres[parotid]
        other = centres[7 - parotid]  # 3 <-> 4
        if c is None and other is not None and midline_x is not None:
            c = other.copy()
            c[0] = 2 * midline_x - other[0]
        if c is not None and lacrimal in offsets:
            boxes[lacrimal] = lacrimal_box(c, offsets[lacrimal], box_mm)
        elif c is None and fallback and lacrimal in fallback:
            boxes[lacrimal] = lacrimal_box(fallback[lacrimal], (0.0, 0.0, 0.0), box_mm)
    return boxes


def stage_settings(metadata: Mapping) -> tuple[dict[int, list[float]], float, float]:
    """(offsets per lacrimal label, box mm, spacing mm) from a stage model's glandseg-model.json."""
    stage = metadata.get("stage") or {}
    if stage.get("kind") != STAGE_KIND:
        raise ValueError("not a lacrimal stage model (glandseg-model.json has no stage.kind 'lacrimal')")
    offsets = {int(k): [float(v) for v in vals] for k, vals in stage["offsets_mm"].items()}
    return offsets, float(stage["box_mm"]), float(stage["spacing_mm"])


def one_gland(prob: np.ndarray, ct_box: np.ndarray) -> np.ndarray:
    """The stage's lacrimal probability with every voxel outside its largest gland component
    (p > 0.5, not air) held below 0.5, so that only that component can reach another grid.

    Why on the stage's grid: a lacrimal gland is a curved plate 3-5 mm thick. On its 1.25 mm
    grid it is one piece; sampled onto a coarse CT grid (OpenKBP: 4.6 x 4.6 x 3 mm) it falls
    into several face-connected pieces, and keeping the largest of those kept 0.38 of 0.83 ml
    (pt_55, left). Chosen here, the organ is one piece where it was predicted, islands are
    dropped where they are islands, and the CT grid keeps every sample of the gland. Inside
    the component the probability is unchanged, so the gland's edge on the CT grid is where
    it was before."""
    gland = largest_component((prob > 0.5) & (ct_box > AIR_HU))
    return np.where(gland, prob, np.minimum(prob, BELOW_HALF)).astype(np.float32, copy=False)


def merge_lacrimal(labels: sitk.Image, side_probs: Mapping[int, tuple[sitk.Image, np.ndarray]],
                   ct_on_labels: np.ndarray | None = None) -> sitk.Image:
    """Labels with each side's lacrimal replaced by the stage's prediction: per side the
    largest gland component on the stage's grid (one_gland), every CT voxel of it.

    side_probs: lacrimal label -> (the CT on its box grid, lacrimal probability on that grid). The
    box tells the side, so the probability of either lacrimal class counts; stage one's own
    lacrimal voxels are dropped, and a voxel another gland holds is never taken.
    ct_on_labels: the CT on the labels' grid; voxels of air (< AIR_HU) are never gland. Real
    scans cut at the orbits showed why: with the box reaching past the scan's top, the stage
    "found" a gland in the padding above the head (OpenKBP pt_202).
    """
    arr = sitk.GetArrayFromImage(labels)
    arr[np.isin(arr, list(LACRIMAL_LABELS))] = 0
    for lacrimal, (grid, prob) in side_probs.items():
        p = sitk.GetImageFromArray(one_gland(np.asarray(prob, np.float32), sitk.GetArrayViewFromImage(grid)))
        p.CopyInformation(grid)
        on_labels = sitk.GetArrayFromImage(sitk.Resample(p, labels, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        take = (on_labels > 0.5) & (arr == 0)
        if ct_on_labels is not None:
            take &= ct_on_labels > AIR_HU
        arr[take] = lacrimal
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(labels)
    return out


def lacrimal_stage(ct: sitk.Image, ct_crop: sitk.Image, labels: sitk.Image, stage, midline_x: float | None = None,
                   sides: Collection[int] | None = None,
                   fallback: Mapping[int, Sequence[float]] | None = None) -> tuple[sitk.Image, dict[int, sitk.Image]]:
    """(labels with the stage's lacrimal glands, per lacrimal label the stage's probability
    of a lacrimal gland on its box grid, for confidence and the uncertainty map).

    `labels` lies on `ct_crop`'s grid (a crop of `ct`); the stage's boxes are cut from the
    whole `ct`, so a box reaching past the head crop still sees real anatomy.

    Boxes reaching past the scan are filled with air, as in training; a box that misses
    the scan entirely (an anchor far off) leaves that side without a lacrimal gland.
    midline_x: the head box's midline, to mirror a lone parotid (see stage_boxes).
    sides: the lacrimal labels to look for (default both), e.g. not a side whose gland
    cannot lie in the scan (GlandSegLib.segmentation.status). fallback: see stage_boxes.
    """
    offsets, box_mm, spacing = stage_settings(stage.info.metadata)
    side_probs, images = {}, {}
    for lacrimal, box in stage_boxes(labels, offsets, box_mm, midline_x, fallback).items():
        if sides is not None and lacrimal not in sides:
            continue
        try:
            data = resample_box(ct, box, [spacing] * 3)  # exactly as train_lacrimal cut its boxes
        except ValueError:
            continue
        probs = stage.predict_probabilities(data)
        p = sum(probs[v] for v in LACRIMAL_LABELS if v in probs)
        side_probs[lacrimal] = (data, p)
        img = sitk.GetImageFromArray(np.asarray(p, np.float32))
        img.CopyInformation(data)
        images[lacrimal] = img
    return merge_lacrimal(labels, side_probs, sitk.GetArrayViewFromImage(ct_crop)), images
