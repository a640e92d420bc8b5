"""How sure the network is of each gland, from its own probabilities; the uncertainty map.

Why: a reviewer with six segments and little time should open the doubtful ones first. The
network's probabilities say where it hesitated: a segment whose inside is uncertain, or
whose probability spreads well beyond its boundary, is one a second look is most likely
to correct. Per gland, on the CT grid the labels were made on (the probabilities resampled
linearly, exactly as the labels were made from them), in the segment's box plus a margin:

* ``expected_dice``: 2 * sum_S(p) / (|S| + sum(p)), with p the gland's probability and S
  its segment: the Dice the network itself expects of the segment if its probabilities are
  right (1 = certain inside, nothing outside; it falls with doubt inside and with
  probability spread around the segment). Small glands score lower: their boundary is a
  larger part of them, as it is of their error.
* ``confidence``: the expected Dice set against the same network's expected Dice for the
  same gland on its own training cases (confidence_reference.json, made by
  `python -m GlandSegLib.defaultmodel.confidence_reference`): Phi((e - median) / SD), the
  share of those training segments the network was less sure of. 0.5 is this network's
  usual certainty for this gland, 0.05 is doubt it shows on one training case in twenty.
  Why not the expected Dice itself: it is not comparable between glands (the shipped model
  gives the right submandibular gland 0.67 where it gives the left one 0.90 at the same
  true Dice), and the review order compares glands. A model without a reference (one you
  trained) gets the expected Dice as its confidence, and the report says so.
* ``mean_probability``: mean p inside the segment.
* ``boundary_uncertain_share``: share of the voxels on the segment's boundary (one voxel
  either side) where p lies between 0.25 and 0.75, i.e. where the network is unsure which
  side of the boundary the voxel is on.

Testing/test_confidence.py checks these on synthetic probabilities; the measured relation
with Dice is `python -m GlandSegLib.defaultmodel.confidence_eval`.

The uncertainty map is 1 - the largest class probability per voxel (stage one: seven
classes; inside a lacrimal stage box, where that stage decides: lacrimal or not), scaled to
0-100 (percent) and stored as uint8 on the CT grid.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.geometry import PhysicalBox, crop, image_bounds
from GlandSegLib.models.registry import PRIOR_WEIGHTS_KEY, ModelInfo

PAD_VOXELS = 3  # margin around the segment, in voxels of the probability's own grid
UNCERTAIN = (0.25, 0.75)
REFERENCE_FILE = Path(__file__).with_name("confidence_reference.json")


def model_fingerprint(model: ModelInfo | Mapping) -> str | None:
    """A model's identity for its confidence reference: the SHA-256 of its checkpoints' own
    SHA-256s (glandseg-model.json's file table), of its prior weights and of its inference
    settings (inference.MIRROR_KEY) where it has any (they change which voxels win), its
    second stages' own inference settings included, so a reference never applies to other
    weights or another way of running them. A bare index (Mapping) knows no stages."""
    metadata = model.metadata if isinstance(model, ModelInfo) else model
    files = metadata.get("files") or {}
    sums = sorted(f"{k}:{v}" for k, v in files.items() if k.endswith(".pth"))
    weights = metadata.get(PRIOR_WEIGHTS_KEY)
    if sums and weights:
        sums.append(f"{PRIOR_WEIGHTS_KEY}:" + json.dumps({str(k): float(v) for k, v in weights.items()}, sort_keys=True))
    if sums and metadata.get("inference"):
        sums.append("inference:" + json.dumps(metadata["inference"], sort_keys=True))
    stages = model.stages if isinstance(model, ModelInfo) else {}
    for kind, stage in sorted(stages.items()):
        if sums and stage.metadata.get("inference"):
            sums.append(f"stage {kind} inference:" + json.dumps(stage.metadata["inference"], sort_keys=True))
    return hashlib.sha256("\n".join(sums).encode()).hexdigest()[:16] if sums else None


@functools.lru_cache(maxsize=2)
def _references(path: str) -> dict:
    p = Path(path)
    return json.loads(p.read_text()).get("models", {}) if p.is_file() else {}


def reference_for(model: ModelInfo | Mapping, path: Path = REFERENCE_FILE) -> dict | None:
    """The shipped reference of this model ({"model", "glands": {key: {median, sd, n}}, ...}), or None."""
    fp = model_fingerprint(model)
    return _references(str(path)).get(fp) if fp else None


def relative_confidence(expected_dice: float, reference: Mapping) -> float:
    """Phi((e - median) / SD): the share of the reference's segments with a lower expected Dice
    under a normal approximation."""
    z = (expected_dice - reference["median"]) / max(reference["sd"], 1e-3)
    return round(0.5 * (1.0 + math.erf(z / math.sqrt(2.0))), 3)


def probability_image(p: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """A (z, y, x) probability array as an image on `grid`'s geometry."""
    img = sitk.GetImageFromArray(np.asarray(p, np.float32))
    img.CopyInformation(grid)
    return img


def _segment_box(mask: np.ndarray, labels: sitk.Image, margin_mm: np.ndarray) -> PhysicalBox:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0)[::-1], idx.max(axis=0)[::-1]  # x y z
    corners = [labels.TransformContinuousIndexToPhysicalPoint([float(c) for c in (a, b, e)])
               for a in (lo[0] - 0.5, hi[0] + 0.5) for b in (lo[1] - 0.5, hi[1] + 0.5) for e in (lo[2] - 0.5, hi[2] + 0.5)]
    pts = np.array(corners)
    return PhysicalBox(pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm)


def segment_confidence(prob: sitk.Image, labels: sitk.Image, label: int) -> dict | None:
    """Confidence figures of one gland: `prob` is its probability on the network's grid,
    `labels` the final labels (any grid, any direction). None where the gland is absent."""
    mask_full = sitk.GetArrayViewFromImage(labels) == label
    if not mask_full.any():
        return None
    margin = PAD_VOXELS * np.array(prob.GetSpacing())
    box = _segment_box(mask_full, labels, margin).intersect(image_bounds(labels))
    region = crop(labels, box)
    s = sitk.GetArrayViewFromImage(region) == label
    p = sitk.GetArrayFromImage(sitk.Resample(prob, region, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
    inside = p[s]
    band = ndimage.binary_dilation(s) & ~ndimage.binary_erosion(s)
    pb = p[band]
    return {
        "expected_dice": round(float(2 * inside.sum() / (s.sum() + p.sum())), 3),
        "mean_probability": round(float(inside.mean()), 3),
        "boundary_uncertain_share": round(float(np.mean((pb >= UNCERTAIN[0]) & (pb <= UNCERTAIN[1]))), 3),
    }


def review_order(rows: list[dict], written: tuple[str, ...] = ("found", "found, cut by the field of view")) -> list[int]:
    """Labels of the written segments (rows whose status is in `written`; rows without a
    status count as written), least confident first (ties: label order)."""
    scored = [r for r in rows if r.get("confidence") is not None and r.get("status", written[0]) in written]
    return [r["label"] for r in sorted(scored, key=lambda r: (r["confidence"], r["label"]))]


def uncertainty_percent(max_probability: np.ndarray) -> np.ndarray:
    """1 - max probability, in percent, uint8 (0 = certain)."""
    return np.rint((1.0 - np.asarray(max_probability, np.float32)) * 100.0).clip(0, 100).astype(np.uint8)


def add_stage_uncertainty(uncertainty: np.ndarray, labels: sitk.Image, side_probs: Mapping[int, sitk.Image],
                          keep: tuple[int, ...]) -> None:
    """Inside each lacrimal stage box the stage decided (lacrimal or not): its own
    uncertainty replaces stage one's, except on voxels a gland in `keep` (the glands stage
    one decided) holds. `uncertainty` (uint8 percent) lies on `labels`' grid; in place."""
    lab = sitk.GetArrayViewFromImage(labels)
    for prob in side_probs.values():
        q = sitk.GetArrayFromImage(sitk.Resample(prob, labels, sitk.Transform(), sitk.sitkLinear, -1.0, sitk.sitkFloat32))
        take = (q >= 0) & ~np.isin(lab, keep)
        uncertainty[take] = uncertainty_percent(np.maximum(q[take], 1.0 - q[take]))
