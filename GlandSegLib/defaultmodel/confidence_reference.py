"""How sure a model usually is of each gland, on its own training cases: the reference that
turns an expected Dice into a confidence comparable between glands.

    python -m GlandSegLib.defaultmodel.confidence_reference --outlines ../shared/data/tcia-hn-labels \\
        --openkbp ../shared/data/openkbp/train-pats [--model NAME] [--phantoms 10] [--patients 24]

Why training cases: the reference must not come from the cases the confidence is measured
on (GlandSegLib.defaultmodel.confidence_eval uses only held-out ones). The model's own
training distribution says what its usual certainty for a gland is: phantoms around the
TCIA `test` split's outlines (the anatomy stage one learned all six glands from; both raters
in turn, new seeds) and OpenKBP `train-pats` real CTs (where it learned the parotids). Per
gland, over the segments GlandSeg writes on the cases that taught the model that gland
(OpenKBP outlines only the parotids: its lacrimal and submandibular segments do not count):
the median expected Dice and a robust SD (1.4826 x the median absolute deviation). The entry is keyed by the model's fingerprint
(GlandSegLib.segmentation.confidence.model_fingerprint), merged into
GlandSegLib/segmentation/confidence_reference.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.glands import BY_LABEL, GLANDS
from GlandSegLib.segmentation.confidence import REFERENCE_FILE, model_fingerprint

# which glands each training source supervised (GlandSegLib.defaultmodel.openkbp: parotids only)
SUPERVISED = {"tcia_test_phantoms": ("lacrimal", "parotid", "submandibular"), "openkbp_train": ("parotid",)}
SEED_BASE = 500_000_000  # not train_default's seeds (below 2**31 from its own rng) nor model_eval's held-out ones
FIELD, SPACING = "headneck", (1.0, 1.0, 2.0)


def training_cases(outlines: Path | None, openkbp: Path | None, phantoms: int, patients: int, work: Path):
    """(source, case, CT path) of the training-side cases, in a fixed order."""
    if outlines is not None and phantoms:
        from GlandSegLib.defaultmodel.phantom import OUTLINE_RATERS, list_outline_cases, make_phantom_from_outlines

        scans = list_outline_cases(outlines, "test")
        step = max(len(scans) // phantoms, 1)
        for i, scan in enumerate(scans[::step][:phantoms]):
            rater = OUTLINE_RATERS[i % len(OUTLINE_RATERS)]
            ph = make_phantom_from_outlines(scan, rater, SEED_BASE + i, field=FIELD, spacing=SPACING)
            path = work / f"{scan.name}_{rater}.nii.gz"
            sitk.WriteImage(ph.ct, str(path))
            yield "tcia_test_phantoms", f"{scan.name}/{rater}", path
    if openkbp is not None and patients:
        from GlandSegLib.defaultmodel.openkbp import list_patients

        pts = list_patients(openkbp)
        step = max(len(pts) // patients, 1)
        for p in pts[::step][:patients]:
            yield "openkbp_train", p.name, p / "ct.nrrd"


def summarise(values: dict[str, dict[str, list[float]]]) -> dict:
    """Per gland, from values[source][gland key]: median, robust SD, n, range."""
    out = {}
    for g in GLANDS:
        v = np.asarray([x for src, per in values.items() if g.organ in SUPERVISED[src] for x in per.get(g.key, [])], float)
        if v.size < 5:
            continue
        med = float(np.median(v))
        out[g.key] = {"median": round(med, 4), "sd": round(float(1.4826 * np.median(np.abs(v - med))), 4), "n": int(v.size),
                      "min": round(float(v.min()), 3), "max": round(float(v.max()), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    from GlandSegLib.errors import GlandSegError
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.segmentation.pipeline import segment

    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.confidence_reference", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--outlines", type=Path, default=None, help="tcia-hn-labels (training phantoms: the test split)")
    ap.add_argument("--openkbp", type=Path, default=None, help="OpenKBP train-pats")
    ap.add_argument("--phantoms", type=int, default=10)
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--out", type=Path, default=REFERENCE_FILE)
    args = ap.parse_args(argv)
    predictor = GlandPredictor(load_model_info(args.model), args.device)
    fp = model_fingerprint(predictor.info)
    if fp is None:
        ap.error("the model has no file table (glandseg-model.json 'files'): install it with glandseg install-model first")
    values: dict[str, dict[str, list[float]]] = {}
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for source, case, path in training_cases(args.outlines, args.openkbp, args.phantoms, args.patients, Path(tmp)):
            try:
                res = segment(path, Path(tmp) / "out", predictor=predictor, overwrite=True)
            except GlandSegError as exc:
                print(f"{source}/{case}: {exc}", file=sys.stderr)
                continue
            cases.append(f"{source}/{case}")
            for row in res.report["glands"]:
                if row["status"] in ("found", "found, cut by the field of view") and row.get("expected_dice") is not None:
                    values.setdefault(source, {}).setdefault(BY_LABEL[row["label"]].key, []).append(row["expected_dice"])
            print(f"{source}/{case}: " + ", ".join(f"{BY_LABEL[r['label']].key} {r.get('expected_dice')}" for r in res.report["glands"]
                                                  if r.get("expected_dice") is not None), file=sys.stderr)
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data.setdefault("about", "Per model (key: GlandSegLib.segmentation.confidence.model_fingerprint) and gland: the "
                             "expected Dice of the segments GlandSeg writes on the model's training cases (median, robust SD).")
    data.setdefault("generated_by", "python -m GlandSegLib.defaultmodel.confidence_reference --outlines <tcia-hn-labels> "
                                    "--openkbp <openkbp/train-pats>")
    data.setdefault("models", {})[fp] = {
        "model": predictor.info.name,
        "cases": f"{sum(c.startswith('tcia') for c in cases)} phantoms around TCIA test-split outlines (training anatomy), "
                 f"{sum(c.startswith('openkbp') for c in cases)} OpenKBP train-pats real CTs",
        "case_list": cases,
        "expected_dice": values,
        "glands": summarise(values),
    }
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(json.dumps(data["models"][fp]["glands"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
