"""From the network's probabilities to the glands GlandSeg stands behind, with a status and
a confidence each (the pipeline's postprocess and lacrimal stages).

Order matters: stage one's glands are judged first (status.GlandAssessor), so the lacrimal
stage anchors its boxes only on parotids that were accepted, and does not look for a
lacrimal gland whose place is outside the scan; then the lacrimal glands are judged against
everything accepted. Confidence is computed last, on the segments that are written.
Where nothing is rejected the labels are exactly those of the plain argmax + largest
component + lacrimal stage (the demo's label map stays byte-identical).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS, BY_LABEL
from GlandSegLib.progress import Progress
from GlandSegLib.segmentation.anatomy import Cranium, ExpectedAnatomy, find_cranium
from GlandSegLib.segmentation.confidence import (add_stage_uncertainty, probability_image, reference_for,
                                                 relative_confidence, review_order, segment_confidence, uncertainty_percent)
from GlandSegLib.segmentation.inference import labels_and_max_probability
from GlandSegLib.segmentation.lacrimal import LACRIMAL_LABELS, lacrimal_stage
from GlandSegLib.segmentation.postprocess import keep_largest_component, laterality_warnings
from GlandSegLib.segmentation.status import CUT, NOT_FOUND, REJECTED, GlandAssessor, GlandStatus

UNCERTAINTY_FILE = "uncertainty.nii.gz"
UNCERTAINTY_VALUES = ("uint8 percent: 100 x (1 - the largest class probability); 0 = certain. Stage one has 7 classes "
                      "(at most 86); inside a lacrimal stage box that stage's two outcomes (at most 50). 0 outside the head box")


@dataclass
class Assessment:
    labels: sitk.Image  # on the crop grid, without rejected or outside glands
    status: dict[int, GlandStatus]
    confidence: dict[int, dict]
    cranium: Cranium
    expected: ExpectedAnatomy
    uncertainty: np.ndarray | None = None  # uint8 percent on the crop grid
    rejected: sitk.Image | None = None  # the rejected segments (crop grid), for measuring the checks
    reference: dict | None = None  # the model's confidence reference (confidence.reference_for), None: raw expected Dice


def assess_glands(ct: sitk.Image, ct_crop: sitk.Image, model_crop: sitk.Image, probs: dict[int, np.ndarray],
                  predictor, midline_x: float | None, *, uncertainty: bool = False, keep_rejected: bool = False,
                  progress: Progress | None = None) -> Assessment:
    """Labels, statuses, confidences (and the uncertainty map) on `ct_crop`'s grid."""
    labels, best = labels_and_max_probability(probs, model_crop, ct_crop)
    umap = uncertainty_percent(best) if uncertainty else None
    del best
    labels = keep_largest_component(labels)
    cranium = find_cranium(ct)
    expected = ExpectedAnatomy.load()
    judge = GlandAssessor(ct, ct_crop, cranium, expected)
    stage_two = predictor.lacrimal is not None
    swapped = {lab for lab, warnings in laterality_warnings(labels, midline_x).items() if warnings}
    status = judge.assess(labels, [g.label for g in GLANDS if not (stage_two and g.label in LACRIMAL_LABELS)], swapped)
    stage_one_probs = {lab: probability_image(probs[lab], model_crop) for lab in status if lab in probs}
    confidence = _confidences(labels, status, stage_one_probs)  # rejected ones too: the report says how sure it was
    rejected = _rejected(labels, status)
    labels = _drop(judge, labels, status, keep_rejected)
    accepted = judge.drop(labels, status) if keep_rejected else labels
    side_probs: dict[int, sitk.Image] = {}
    if stage_two:
        if progress is not None:
            progress.start("lacrimal", "lacrimal glands: second stage beside each orbit")
        sides = [lab for lab in LACRIMAL_LABELS if judge.outside_reason(lab) is None]
        # the boxes are anchored on accepted glands only: a kept (rejected) "parotid" inside the
        # brain must not move them, so --keep-rejected changes what is written, not what is found
        staged, side_probs = lacrimal_stage(ct, ct_crop, accepted, predictor.lacrimal, midline_x, sides,
                                            fallback=_lacrimal_centres(judge))
        # each lacrimal gland is already one piece where the stage predicted it (lacrimal.one_gland);
        # a largest component here, on a coarse CT grid, would cut a thin gland's samples apart
        labels = _with_kept(staged, labels) if keep_rejected else staged
        swapped = {lab for lab, warnings in laterality_warnings(labels, midline_x).items() if warnings}
        lacrimal = judge.assess(labels, LACRIMAL_LABELS, swapped)
        confidence.update(_confidences(labels, lacrimal, side_probs))
        rejected = _rejected(labels, lacrimal, rejected)
        labels = _drop(judge, labels, lacrimal, keep_rejected)
        status.update(lacrimal)
        if umap is not None:
            add_stage_uncertainty(umap, labels, side_probs, keep=tuple(g.label for g in GLANDS if g.label not in LACRIMAL_LABELS))
    reference = reference_for(predictor.info)
    for lab, c in confidence.items():
        ref = (reference or {}).get("glands", {}).get(BY_LABEL[lab].key)
        c["confidence"] = relative_confidence(c["expected_dice"], ref) if ref else c["expected_dice"]
    return Assessment(labels, status, confidence, cranium, expected, umap, rejected, reference)


def _drop(judge: GlandAssessor, labels: sitk.Image, status: dict[int, GlandStatus], keep: bool) -> sitk.Image:
    """The labels without the segments whose status says they are not written, unless the
    user asked to keep them (each such status then notes that its segment is written anyway)."""
    if not keep:
        return judge.drop(labels, status)
    arr = sitk.GetArrayViewFromImage(labels)
    for lab, s in status.items():
        if not s.written and (arr == lab).any():
            s.notes.append("its segment is written anyway (keep_rejected)")
    return labels


def _with_kept(staged: sitk.Image, kept: sitk.Image) -> sitk.Image:
    """The lacrimal stage's labels plus the kept stage-one segments (not lacrimal) where the
    stage wrote nothing."""
    arr = sitk.GetArrayFromImage(staged)
    other = sitk.GetArrayViewFromImage(kept)
    add = (arr == 0) & (other > 0) & ~np.isin(other, LACRIMAL_LABELS)
    if not add.any():
        return staged
    arr[add] = other[add]
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(staged)
    return out


def _confidences(labels: sitk.Image, status: dict[int, GlandStatus], probs: dict[int, sitk.Image]) -> dict[int, dict]:
    """Confidence figures of every segment that is written or was rejected (not of one
    discarded because the gland cannot lie in the scan)."""
    out = {}
    for lab, s in status.items():
        if lab in probs and (s.written or s.status == REJECTED):
            c = segment_confidence(probs[lab], labels, lab)
            if c is not None:
                out[lab] = c
    return out


def _rejected(labels: sitk.Image, status: dict[int, GlandStatus], into: sitk.Image | None = None) -> sitk.Image | None:
    """The rejected segments alone, added to `into` (same grid)."""
    gone = [lab for lab, s in status.items() if s.status == REJECTED]
    if not gone:
        return into
    arr = sitk.GetArrayFromImage(labels)
    arr[~np.isin(arr, gone)] = 0
    if into is not None:
        prev = sitk.GetArrayViewFromImage(into)
        arr = np.where(arr > 0, arr, prev)
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.CopyInformation(labels)
    return img


def _lacrimal_centres(judge: GlandAssessor) -> dict[int, list[float]]:
    """Each lacrimal gland's expected centre from the cranium alone (top, midline and front of
    the brain), where the scan shows its dome: the lacrimal stage's anchor when no parotid
    was accepted (a brain-only CT)."""
    features = judge.cranium.features()
    out = {}
    for lab in LACRIMAL_LABELS:
        key = BY_LABEL[lab].key
        centre = []
        for a in "xyz":
            preds = judge.predictions(key, f"centroid_{a}", features)
            if not preds:
                break
            centre.append(min(preds, key=lambda p: p[2])[1])
        if len(centre) == 3:
            out[lab] = centre
    return out


def report_fields(a: Assessment, label: int) -> tuple[dict, list[str]]:
    """The report.json fields of one gland that come from the assessment, and its warnings."""
    g = BY_LABEL[label]
    s = a.status.get(label) or GlandStatus(label, NOT_FOUND)
    c = a.confidence.get(label) or {}
    v = a.expected.volumes[g.key]
    fields = {
        "status": s.status,
        "status_reason": s.reason,
        "status_notes": list(s.notes),
        "candidate_volume_ml": s.candidate_ml,
        "confidence": c.get("confidence"),
        "expected_dice": c.get("expected_dice"),
        "mean_probability": c.get("mean_probability"),
        "boundary_uncertain_share": c.get("boundary_uncertain_share"),
        "expert_volume_ml": {"median": v["median"], "p5": v["p5"], "p95": v["p95"], "n": v["n"]},
    }
    warnings = []
    if s.status == NOT_FOUND:
        warnings.append(f"{g.name} not found")
    elif s.status == REJECTED:
        warnings.append(f"{g.name} rejected: {s.reason}")
    elif s.status == CUT:
        warnings.append(f"{g.name} is cut by the field of view: {s.reason}")
    if s.written:
        warnings += [f"{g.name}: {n}" for n in s.notes]
    return fields, warnings


def report_summary(a: Assessment, rows: list[dict]) -> dict:
    """Top-level report.json fields: the review order and the anatomy the checks used."""
    ref = a.reference
    return {
        "review_order": review_order(rows),
        "confidence_reference": None if ref is None else {
            "model": ref["model"], "cases": ref["cases"],
            "meaning": "confidence = share of this model's training segments of the same gland with a lower expected Dice"},
        "anatomy": {"cranium": dict(a.cranium.details),
                    "expected_anatomy": a.expected.data["sources"]["outlines"]},
    }
