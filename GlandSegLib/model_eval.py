"""Measure a model honestly: held-out phantoms (all six glands) and real CT (OpenKBP parotids).

The numbers in a model card come from this script, so anyone can recompute them:

    python -m GlandSegLib.model_eval --model glandseg-phantom-v1 --phantoms 10 \\
        --openkbp ../shared/data/openkbp/validation-pats --out eval.json

Held-out phantoms use seeds the training never draws from (a separate seed stream).
OpenKBP outlines only the parotids (its labels 3 = right, 4 = left parotid, the same values
as GlandSeg's), so only those are scored there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .glands import GLANDS, BY_LABEL
from .metrics import SURFACE_TOLERANCE_MM, dice, hd95, surface_dice

HELDOUT_SEED_BASE = 900_000_000  # train_default draws seeds below 2**31 from its own rng; these are fixed and listed
OPENKBP_PAROTIDS = {3: 3, 4: 4}  # OpenKBP value -> GlandSeg label


def score_case(pred: sitk.Image, truth: sitk.Image, labels: list[int]) -> dict[str, dict]:
    """Per gland: Dice, HD95 and surface Dice of `pred` against `truth` on truth's grid."""
    if pred.GetSize() != truth.GetSize() or not np.allclose(pred.GetOrigin(), truth.GetOrigin(), atol=1e-3):
        pred = sitk.Resample(pred, truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pred.GetPixelID())
    p, t = sitk.GetArrayFromImage(pred), sitk.GetArrayFromImage(truth)
    spacing = list(reversed(truth.GetSpacing()))
    out = {}
    for label in labels:
        g = BY_LABEL[label]
        a, b = p == label, t == label
        if not b.any():
            continue
        out[g.key] = {"dice": dice(a, b), "hd95_mm": hd95(a, b, spacing),
                      "surface_dice": surface_dice(a, b, spacing, SURFACE_TOLERANCE_MM[g.organ])}
    return out


def summarize(cases: list[dict[str, dict]]) -> dict[str, dict]:
    summary = {}
    for g in GLANDS:
        rows = [c[g.key] for c in cases if g.key in c]
        if not rows:
            continue
        summary[g.key] = {"n": len(rows)}
        for metric in ("dice", "hd95_mm", "surface_dice"):
            vals = [r[metric] for r in rows if r[metric] is not None]
            summary[g.key][f"{metric}_median"] = round(statistics.median(vals), 3) if vals else None
        summary[g.key]["dice_mean"] = round(statistics.mean(r["dice"] or 0.0 for r in rows), 3)
    return summary


def evaluate_phantoms(predictor, n: int, work: Path, field: str = "headneck") -> dict:
    from .imageio import write_image_atomic
    from .phantom import make_phantom
    from .pipeline import segment

    cases = []
    for i in range(n):
        seed = HELDOUT_SEED_BASE + i
        ph = make_phantom(seed, field=field, spacing=(1.0, 1.0, 2.0))
        path = work / f"phantom_{seed}.nii.gz"
        write_image_atomic(ph.ct, path)
        res = segment(path, work / f"out_{seed}", predictor=predictor, overwrite=True)
        cases.append(score_case(res.labels, ph.labels, [g.label for g in GLANDS]))
    return {"seeds": [HELDOUT_SEED_BASE + i for i in range(n)], "field": field, "cases": cases, "summary": summarize(cases)}


def evaluate_openkbp(predictor, folder: Path, work: Path, limit: int | None = None) -> dict:
    from .errors import NoHeadError
    from .pipeline import segment

    cases, failures = {}, {}
    patients = sorted((p for p in folder.iterdir() if (p / "ct.nrrd").is_file()), key=lambda p: int(p.name.split("_")[-1]))
    for patient in patients[:limit]:
        truth = sitk.ReadImage(str(patient / "oar_labels.nrrd"))
        t = sitk.GetArrayFromImage(truth)
        keep = np.isin(t, list(OPENKBP_PAROTIDS))
        mapped = np.zeros_like(t)
        for src, dst in OPENKBP_PAROTIDS.items():
            mapped[t == src] = dst
        mapped[~keep] = 0
        truth_img = sitk.GetImageFromArray(mapped)
        truth_img.CopyInformation(truth)
        try:
            res = segment(patient / "ct.nrrd", work / patient.name, predictor=predictor, overwrite=True)
        except NoHeadError as exc:
            failures[patient.name] = str(exc)
            continue
        cases[patient.name] = score_case(res.labels, truth_img, list(OPENKBP_PAROTIDS.values()))
    return {"cases": cases, "failures": failures, "summary": summarize(list(cases.values()))}


def main(argv: list[str] | None = None) -> int:
    from .inference import GlandPredictor
    from .models import load_model_info

    ap = argparse.ArgumentParser(description="Evaluate a GlandSeg model on held-out phantoms and OpenKBP.")
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--phantoms", type=int, default=10, help="number of held-out phantoms (0: none)")
    ap.add_argument("--openkbp", type=Path, default=None, help="OpenKBP validation-pats folder")
    ap.add_argument("--openkbp-limit", type=int, default=None)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    predictor = GlandPredictor(load_model_info(args.model), args.device)
    result: dict = {"model": predictor.info.name, "device": predictor.device}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="glandseg-eval-") as tmp:
        if args.phantoms:
            result["heldout_phantoms"] = evaluate_phantoms(predictor, args.phantoms, Path(tmp))
            print(json.dumps(result["heldout_phantoms"]["summary"], indent=1), flush=True)
        if args.openkbp:
            result["openkbp"] = evaluate_openkbp(predictor, args.openkbp, Path(tmp), args.openkbp_limit)
            print(json.dumps(result["openkbp"]["summary"], indent=1), flush=True)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
