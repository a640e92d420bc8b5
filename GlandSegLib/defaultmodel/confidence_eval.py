"""Does GlandSeg's per-gland confidence tell the poor segments from the good ones?

    python -m GlandSegLib.defaultmodel.confidence_eval --outlines ../shared/data/tcia-hn-labels \\
        --pddca ../shared/data/pddca-0522c0001 --openkbp ../shared/data/openkbp/validation-pats \\
        --out confidence_eval.json [--model NAME] [--phantom-limit N] [--openkbp-limit N]

Every case is held out from training and has true outlines: the shipped sample CT (a
phantom around a `validation` TCIA scan) with its labels; phantoms around the 7 TCIA
`validation` scans (oncologist, the seeds of model_eval); the PDDCA real CT (parotids and
submandibular glands; measured here, never tuned on); the OpenKBP `validation-pats` real
CTs (parotids). Each is segmented by the full pipeline; for every written segment whose
gland the truth outlines, its Dice is set beside the confidence figures of its report
(GlandSegLib.segmentation.confidence). Reported: Spearman's rank correlation with Dice per
source and over all, and how the poor segments (Dice < POOR_DICE) rank: the AUC (chance that
a poor segment has a lower confidence than a good one) and their places in the review
order. Glands the truth outlines but GlandSeg did not write (not found, rejected) have no
confidence and are counted apart. The statuses of all glands are tallied per source (e.g.
how often the lacrimal glands of the neck-centred OpenKBP CTs are outside the field of view).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import stats

from GlandSegLib.cohort.metrics import dice
from GlandSegLib.glands import BY_LABEL
from GlandSegLib.models.registry import ModelInfo

POOR_DICE = 0.6
METRICS = ("confidence", "expected_dice", "mean_probability", "boundary_uncertain_share")
REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "Resources" / "sample"
PDDCA_STRUCTURES = {"Parotid_R": 3, "Parotid_L": 4, "Submandibular_R": 5, "Submandibular_L": 6}


def score(report: dict, labels: sitk.Image, truth: sitk.Image, case: str, source: str,
          rejected: sitk.Image | None = None) -> tuple[list[dict], list[dict]]:
    """(rows of segments whose gland the truth outlines: Dice + confidence figures, written or
    rejected; status rows of all glands). `rejected`: the rejected segments (any grid)."""
    if labels.GetSize() != truth.GetSize() or not np.allclose(labels.GetOrigin(), truth.GetOrigin(), atol=1e-3):
        truth = sitk.Resample(truth, labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0, truth.GetPixelID())
    p, t = sitk.GetArrayViewFromImage(labels), sitk.GetArrayViewFromImage(truth)
    rej = None
    if rejected is not None:
        rej = sitk.GetArrayFromImage(sitk.Resample(rejected, labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    rows, statuses = [], []
    for g in report["glands"]:
        statuses.append({"source": source, "case": case, "gland": BY_LABEL[g["label"]].key, "status": g["status"],
                         "reason": g["status_reason"], "in_truth": bool((t == g["label"]).any())})
        if not (t == g["label"]).any():
            continue
        written = g["status"] in ("found", "found, cut by the field of view")
        seg = p == g["label"] if written else (rej == g["label"] if rej is not None and g["status"] == "rejected" else None)
        row = {"source": source, "case": case, "gland": BY_LABEL[g["label"]].key, "status": g["status"], "written": written,
               "volume_ml": g["volume_ml"] if written else g["candidate_volume_ml"],
               "dice": dice(seg, t == g["label"]) if seg is not None and seg.any() else 0.0}
        row.update({m: g.get(m) for m in METRICS})
        rows.append(row)
    return rows, statuses


def sample_cases():
    yield "sample", "phantom_head_ct", SAMPLE / "phantom_head_ct.nii.gz", sitk.ReadImage(str(SAMPLE / "phantom_head_labels.nii.gz"))


def phantom_cases(outlines: Path, work: Path, limit: int | None):
    from GlandSegLib.defaultmodel.model_eval import HELDOUT_FIELD, HELDOUT_SEED_BASE, HELDOUT_SPACING, HELDOUT_SPLIT
    from GlandSegLib.defaultmodel.phantom import list_outline_cases, make_phantom_from_outlines

    for i, scan in enumerate(list_outline_cases(outlines, HELDOUT_SPLIT)[:limit]):
        ph = make_phantom_from_outlines(scan, "oncologist", HELDOUT_SEED_BASE + i, field=HELDOUT_FIELD, spacing=HELDOUT_SPACING)
        path = work / f"{scan.name}.nii.gz"
        sitk.WriteImage(ph.ct, str(path))
        yield "heldout_phantoms", scan.name, path, ph.labels


def pddca_cases(folder: Path):
    truth = None
    for name, label in PDDCA_STRUCTURES.items():
        m = sitk.ReadImage(str(folder / "structures" / f"{name}.nrrd"))
        arr = sitk.GetArrayFromImage(m) != 0
        if truth is None:
            truth = np.zeros(arr.shape, np.uint8)
            ref = m
        truth[arr] = label
    img = sitk.GetImageFromArray(truth)
    img.CopyInformation(ref)
    yield "pddca", folder.name, folder / "ct-dicom", img


def openkbp_cases(folder: Path, limit: int | None):
    from GlandSegLib.defaultmodel.openkbp import list_patients, parotid_truth

    for patient in list_patients(folder)[:limit]:
        yield "openkbp_validation", patient.name, patient / "ct.nrrd", parotid_truth(sitk.ReadImage(str(patient / "oar_labels.nrrd")))


def spearman(rows: list[dict], metric: str) -> dict | None:
    r = [(x[metric], x["dice"]) for x in rows if x[metric] is not None and x["written"]]
    if len(r) < 3:
        return None
    rho, p = stats.spearmanr([a for a, _ in r], [b for _, b in r])
    sign = -1.0 if metric == "boundary_uncertain_share" else 1.0  # more uncertain boundary = less confident
    return {"n": len(r), "rho": round(float(sign * rho), 3), "p": float(f"{p:.3g}")}


def poor_ranking(rows: list[dict], metric: str = "confidence") -> dict:
    """How the poor segments rank by confidence among the written segments."""
    r = [x for x in rows if x[metric] is not None and x["written"]]
    poor = [x for x in r if x["dice"] < POOR_DICE]
    good = [x for x in r if x["dice"] >= POOR_DICE]
    if not poor or not good:
        return {"n_poor": len(poor), "n_good": len(good)}
    wins = sum((a[metric] < b[metric]) + 0.5 * (a[metric] == b[metric]) for a in poor for b in good)
    ordered = sorted(r, key=lambda x: x[metric])
    ranks = [ordered.index(x) + 1 for x in poor]
    return {"n_poor": len(poor), "n_good": len(good), "auc": round(wins / (len(poor) * len(good)), 3),
            "poor_ranks_of_n": ranks, "n": len(r),
            "poor_below_every_good": bool(max(x[metric] for x in poor) < min(x[metric] for x in good)),
            "poor": [{k: x[k] for k in ("source", "case", "gland", "dice", metric)} for x in poor],
            "lowest_good_confidence": min(x[metric] for x in good)}


def within_case_order(rows: list[dict]) -> dict:
    """Within each case with a poor and a good segment: is every poor one reviewed first?"""
    cases: dict = {}
    for x in rows:
        if x["confidence"] is not None and x["written"]:
            cases.setdefault((x["source"], x["case"]), []).append(x)
    mixed = [v for v in cases.values() if any(x["dice"] < POOR_DICE for x in v) and any(x["dice"] >= POOR_DICE for x in v)]
    first = [max(x["confidence"] for x in v if x["dice"] < POOR_DICE) < min(x["confidence"] for x in v if x["dice"] >= POOR_DICE)
             for v in mixed]
    return {"cases_with_poor_and_good": len(mixed), "poor_reviewed_first": int(sum(first))}


def summarise(rows: list[dict], statuses: list[dict]) -> dict:
    out: dict = {"poor_dice": POOR_DICE}
    sources = sorted({x["source"] for x in rows})
    for name, sub in [("all", rows)] + [(s, [x for x in rows if x["source"] == s]) for s in sources]:
        rejected = [x for x in sub if x["status"] == "rejected"]
        out[name] = {"spearman": {m: spearman(sub, m) for m in METRICS}, "poor": poor_ranking(sub),
                     "review_order": within_case_order(sub),
                     "spearman_written_and_rejected": spearman([dict(x, written=True) for x in sub], "confidence"),
                     "rejected_but_outlined": [{k: x[k] for k in ("case", "gland", "dice", "volume_ml", "confidence")}
                                               for x in rejected],
                     "not_written_but_outlined": Counter(x["status"] for x in sub if not x["written"])}
    tally: dict = {}
    for s in statuses:
        tally.setdefault(s["source"], {}).setdefault(s["gland"], Counter())[s["status"]] += 1
    out["statuses"] = {src: {g: dict(c) for g, c in v.items()} for src, v in tally.items()}
    return out


def rescore(result: dict, model: ModelInfo) -> dict:
    """The result with each row's confidence recomputed from its expected Dice (the
    segmentation does not depend on the reference; only this mapping does)."""
    from GlandSegLib.segmentation.confidence import reference_for, relative_confidence

    ref = (reference_for(model) or {}).get("glands", {})
    for row in result["rows"]:
        if row.get("expected_dice") is not None:
            r = ref.get(row["gland"])
            row["confidence"] = relative_confidence(row["expected_dice"], r) if r else row["expected_dice"]
    result["summary"] = summarise(result["rows"], result["statuses"])
    return result


SOURCE_STYLE = {"sample": ("sample CT", "o"), "heldout_phantoms": ("held-out phantoms", "s"),
                "pddca": ("PDDCA real CT", "D"), "openkbp_validation": ("OpenKBP real CT", "^")}


def figure_run(predictor, work: Path, pddca: Path | None):
    """The right panel's run, with its uncertainty map: the PDDCA real CT where given (its
    submandibular glands are the poorest, least confident segments: what a reviewer should
    see first), else the shipped sample (its parotids)."""
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.segmentation.pipeline import segment

    path, glands, title = ((pddca / "ct-dicom", (5, 6), "PDDCA real CT") if pddca is not None
                           else (SAMPLE / "phantom_head_ct.nii.gz", (3, 4), "sample CT"))
    run = segment(path, work / "figure", predictor=predictor, uncertainty=True)
    return run, read_ct(path).image, glands, title


def draw_figure(result: dict, shown_run, shown_ct: sitk.Image, path: Path, glands: tuple[int, ...] = (3, 4),
                title: str = "sample CT") -> None:
    """README picture: confidence against Dice for every scored segment (left), and one
    run's uncertainty map on an axial slice through `glands` (right), with their confidence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from GlandSegLib.io.images import write_bytes_atomic

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.6), dpi=100, gridspec_kw={"width_ratios": [1.1, 1]})
    for src, (name, marker) in SOURCE_STYLE.items():
        r = [x for x in result["rows"] if x["source"] == src and x["written"] and x["confidence"] is not None]
        if r:
            ax.scatter([x["confidence"] for x in r], [x["dice"] for x in r], marker=marker, s=28, alpha=0.75, label=f"{name} ({len(r)})")
    ax.axhline(POOR_DICE, color="grey", lw=0.8, ls="--")
    rho = result["summary"]["all"]["spearman"]["confidence"]
    ax.set_xlabel("GlandSeg confidence (share of its training segments of that gland it was less sure of)")
    ax.set_ylabel("Dice against the experts")
    ax.set_title(f"written segments: Spearman {rho['rho']:.2f} (n = {rho['n']})", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    labels = sitk.ReadImage(str(shown_run.outdir / "glands_labelmap.nii.gz"))
    ct = sitk.GetArrayFromImage(labels)
    u = sitk.GetArrayFromImage(sitk.ReadImage(str(shown_run.outdir / "uncertainty.nii.gz")))
    # the CT as the run saw it, on the label map's grid (the input may be a DICOM series)
    img = sitk.GetArrayFromImage(sitk.Resample(shown_ct, labels, sitk.Transform(), sitk.sitkLinear, -1000.0, sitk.sitkFloat32))
    z = int(np.argwhere(np.isin(ct, glands))[:, 0].mean())
    # the body on that slice, without the couch: the connected tissue region holding the glands
    from scipy import ndimage

    parts, _ = ndimage.label(ndimage.binary_opening(img[z] > -400, iterations=2))
    keep = np.unique(parts[np.isin(ct[z], glands) & (parts > 0)])
    ys, xs = np.nonzero(np.isin(parts, keep)) if keep.size else np.nonzero(img[z] > -400)
    view = (slice(max(ys.min() - 5, 0), ys.max() + 6), slice(max(xs.min() - 5, 0), xs.max() + 6))
    ax2.imshow(img[z][view], cmap="gray", vmin=-160, vmax=240)  # LPS storage: patient's right on the image's left
    shown = ax2.imshow(np.ma.masked_less(u[z][view], 3), cmap="inferno", vmin=0, vmax=50, alpha=0.9, interpolation="nearest")
    ax2.contour(np.isin(ct[z][view], glands), levels=[0.5], colors="cyan", linewidths=1.0)
    rows = {g["label"]: g for g in shown_run.report["glands"]}
    names = ", ".join(f"{rows[lab]['name'].split()[0]} {rows[lab]['confidence']:.2f}" for lab in glands
                      if rows[lab].get("confidence") is not None)
    organ = rows[glands[0]]["name"].split()[1]
    ax2.set_title(f"{title}: uncertainty (%)\ncyan: GlandSeg's {organ} glands\nconfidence {names}", fontsize=9)
    ax2.set_xticks([])
    ax2.set_yticks([])
    ax2.text(0.02, 0.5, "R", transform=ax2.transAxes, color="yellow", fontsize=13, va="center")
    fig.colorbar(shown, ax=ax2, fraction=0.04)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(buf.getvalue(), path)


def main(argv: list[str] | None = None) -> int:
    from GlandSegLib.errors import GlandSegError
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.segmentation.pipeline import segment

    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.confidence_eval", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--outlines", type=Path, default=None, help="tcia-hn-labels (held-out phantoms)")
    ap.add_argument("--phantom-limit", type=int, default=None)
    ap.add_argument("--pddca", type=Path, default=None, help="pddca-0522c0001 folder")
    ap.add_argument("--openkbp", type=Path, default=None, help="OpenKBP validation-pats folder")
    ap.add_argument("--openkbp-limit", type=int, default=None)
    ap.add_argument("--no-sample", action="store_true", help="leave out the shipped sample CT")
    ap.add_argument("--out", type=Path, required=True, help="result JSON (with --figure-only: an earlier result to draw)")
    ap.add_argument("--figure", type=Path, default=None, help="also draw the README picture (PNG)")
    ap.add_argument("--figure-only", action="store_true", help="only draw --figure from the result in --out")
    ap.add_argument("--rescore", action="store_true",
                    help="recompute the confidences of the result in --out from its expected Dice with the current "
                         "confidence_reference.json (after regenerating it), and its summary; no segmentation")
    args = ap.parse_args(argv)
    if args.rescore:
        result = rescore(json.loads(args.out.read_text()), load_model_info(args.model))
        args.out.write_text(json.dumps(result, indent=1, default=dict))
        print(json.dumps(result["summary"]["all"]["spearman"]), json.dumps(result["summary"]["all"]["poor"].get("auc")))
        return 0
    predictor = GlandPredictor(load_model_info(args.model), args.device)
    if args.figure_only:
        if args.figure is None:
            ap.error("--figure-only needs --figure")
        with tempfile.TemporaryDirectory() as tmp:
            run, ct, glands, title = figure_run(predictor, Path(tmp), args.pddca)
            draw_figure(json.loads(args.out.read_text()), run, ct, args.figure, glands, title)
        return 0
    rows, statuses, failures = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sources = [] if args.no_sample else [sample_cases()]
        if args.outlines:
            sources.append(phantom_cases(args.outlines, work, args.phantom_limit))
        if args.pddca:
            sources.append(pddca_cases(args.pddca))
        if args.openkbp:
            sources.append(openkbp_cases(args.openkbp, args.openkbp_limit))
        for gen in sources:
            for source, case, path, truth in gen:
                try:
                    res = segment(path, work / "out" / source / case, predictor=predictor, overwrite=True)
                except GlandSegError as exc:
                    failures[f"{source}/{case}"] = str(exc)
                    print(f"{source}/{case}: {exc}", file=sys.stderr)
                    continue
                r, s = score(res.report, res.labels, truth, case, source, res.rejected)
                rows += r
                statuses += s
                print(f"{source}/{case}: " + ", ".join(f"{x['gland']} Dice {x['dice']:.2f} conf {x['confidence']}" for x in r),
                      file=sys.stderr)
    result = {"model": predictor.info.name, "summary": summarise(rows, statuses), "failures": failures,
              "rows": rows, "statuses": statuses}
    args.out.write_text(json.dumps(result, indent=1, default=dict))
    if args.figure is not None:
        with tempfile.TemporaryDirectory() as tmp:
            run, ct, glands, title = figure_run(predictor, Path(tmp), args.pddca)
            draw_figure(result, run, ct, args.figure, glands, title)
    s = result["summary"]["all"]
    print(f"{len(rows)} scored segments; Spearman (confidence vs Dice) {s['spearman']['confidence']}; "
          f"poor segments (Dice < {POOR_DICE}): {s['poor']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
