"""Measure a model honestly: real CT first (every gland), then held-out phantoms (synthetic).

The numbers in a model card come from this script, so anyone can recompute them:

    python -m GlandSegLib.defaultmodel.model_eval --model glandseg-v3 --outlines ../shared/data/tcia-hn-labels \\
        --openkbp ../shared/data/openkbp/validation-pats --pddca ../shared/data/pddca-0522c0001 --out eval.json [--card]

Real CT (real_ct.py): the PDDCA planning CT (parotids and submandibular glands outlined;
measurement only), the OpenKBP validation CTs (parotids outlined; every gland's volume
against the TCIA experts' range; lacrimal glands counted only where the scan reaches the
orbit roof). Held-out phantoms are built around the `validation` split of the TCIA outlines
(training uses the `test` split only) with the oncologist's outlines as truth, at fixed
seeds; the same scans' radiographer outlines give the human ceiling. Phantom figures
flatter a model (a phantom's gland is painted with its own intensity): they follow the
real ones and are named synthetic. --card writes the tables into the model folder's
model_card.md and evaluation.json and refreshes its checksums.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

from GlandSegLib.glands import GLANDS, BY_LABEL
from GlandSegLib.defaultmodel.real_ct import (ORBIT_ROOF_PERCENTILE, POSITION_REGION_SD, centroids_mm, evaluate_pddca,
                                             expert_volumes, orbit_roof_above_parotid_mm, position_plausibility,
                                             position_reference, scan_top_above_parotid_mm, score_case,
                                             volume_plausibility)

HELDOUT_SEED_BASE = 900_000_000  # train_default draws seeds below 2**31 from its own rng; these are fixed and listed
HELDOUT_SPLIT = "validation"
HELDOUT_FIELD, HELDOUT_SPACING = "headneck", (1.0, 1.0, 2.0)
EVALUATION = "evaluation.json"
CARD_HEADING = "## Measured quality"


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


def evaluate_phantoms(predictor, outlines: Path, work: Path, limit: int | None = None) -> dict:
    """Phantoms around the held-out scans, segmented by the full pipeline, scored against the
    oncologist's outlines; the radiographer on the same scans is the human reference."""
    from GlandSegLib.io.images import write_image_atomic
    from GlandSegLib.defaultmodel.interrater import agreement, summarise
    from GlandSegLib.defaultmodel.phantom import list_outline_cases, make_phantom_from_outlines
    from GlandSegLib.segmentation.pipeline import segment

    scans = list_outline_cases(outlines, HELDOUT_SPLIT)[:limit]
    cases = {}
    for i, scan in enumerate(scans):
        seed = HELDOUT_SEED_BASE + i
        ph = make_phantom_from_outlines(scan, "oncologist", seed, field=HELDOUT_FIELD, spacing=HELDOUT_SPACING)
        path = work / f"{scan.name}.nii.gz"
        write_image_atomic(ph.ct, path)
        res = segment(path, work / f"out_{scan.name}", predictor=predictor, overwrite=True)
        cases[scan.name] = score_case(res.labels, ph.labels, [g.label for g in GLANDS])
    human = summarise(agreement(cases=scans))
    return {"split": HELDOUT_SPLIT, "truth": "oncologist", "seeds": [HELDOUT_SEED_BASE + i for i in range(len(scans))],
            "field": HELDOUT_FIELD, "spacing_mm": list(HELDOUT_SPACING), "cases": cases,
            "summary": summarize(list(cases.values())),
            "human_radiographer_vs_oncologist": {k: {m: v[m] for m in ("n_cases", "dice_median", "hd95_mm_median",
                                                                        "surface_dice_median")}
                                                 for k, v in human.items()}}


def evaluate_openkbp(predictor, folder: Path, work: Path, limit: int | None = None, outlines: Path | None = None) -> dict:
    """Parotids scored against OpenKBP's outlines; every gland's volume found against the TCIA
    experts' range (with `outlines`), the lacrimal glands only where the scan reaches the orbit roof;
    every other gland's centre against where the experts' lie relative to the outlined parotid."""
    from GlandSegLib.defaultmodel.openkbp import PAROTIDS, list_patients, parotid_truth
    from GlandSegLib.errors import NoHeadError
    from GlandSegLib.segmentation.pipeline import segment

    roof = orbit_roof_above_parotid_mm(outlines) if outlines else None
    cases, failures, volumes, reach, in_view, centres, parotid_centres = {}, {}, {}, {}, {}, {}, {}
    for patient in list_patients(folder)[:limit]:
        truth = parotid_truth(sitk.ReadImage(str(patient / "oar_labels.nrrd")))
        try:
            res = segment(patient / "ct.nrrd", work / patient.name, predictor=predictor, overwrite=True)
        except NoHeadError as exc:
            failures[patient.name] = str(exc)
            continue
        cases[patient.name] = score_case(res.labels, truth, list(PAROTIDS.values()))
        volumes[patient.name] = {BY_LABEL[row["label"]].key: row["volume_ml"] for row in res.report["glands"]}
        centres[patient.name] = {BY_LABEL[row["label"]].key: row["centroid_lps_mm"] for row in res.report["glands"]
                                 if row.get("centroid_lps_mm") is not None}
        parotid_centres[patient.name] = centroids_mm(truth)
        reach[patient.name] = scan_top_above_parotid_mm(sitk.ReadImage(str(patient / "ct.nrrd")), truth)
        if roof:
            reaches_roof = reach[patient.name] is not None and reach[patient.name] >= roof[f"p{ORBIT_ROOF_PERCENTILE}_mm"]
            in_view[patient.name] = {g.key: reaches_roof for g in GLANDS if g.organ == "lacrimal"}
    result = {"cases": cases, "failures": failures, "summary": summarize(list(cases.values())),
              "volumes_ml": volumes, "scan_top_above_parotid_mm": reach,
              "centroids_mm": centres, "outlined_parotid_centroids_mm": parotid_centres,
              "position_plausibility": position_plausibility(centres, parotid_centres, position_reference())}
    if outlines:
        result["orbit_roof_above_parotid_mm"] = roof
        result["volume_plausibility"] = volume_plausibility(volumes, expert_volumes(outlines), in_view)
    return result


def _fmt(v) -> str:
    return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) and v <= 1 else f"{v:.1f}")


def _real_ct_tables(result: dict) -> list[str]:
    out = []
    pd = result.get("pddca")
    if pd:
        out += [f"Real CT, one planning CT with expert outlines: {pd['case']}, given as its DICOM series. "
                "Used to measure only: never trained on, no threshold or checkpoint chosen on it. Its parotid "
                "outlines follow the PDDCA convention (about 12 ml, smaller than the TCIA experts' 20-45 ml).", "",
                "| gland | Dice | HD95 (mm) | surface Dice | volume found (ml) | volume outlined (ml) | volume error |",
                "|---|---|---|---|---|---|---|"]
        for key, s in pd["glands"].items():
            err = s["volume_error_percent"]
            out.append(f"| {key} | {_fmt(s['dice'])} | {_fmt(s['hd95_mm'])} | {_fmt(s['surface_dice'])} | "
                       f"{s['volume_ml']:.1f} | {s['truth_volume_ml']:.1f} | {'-' if err is None else f'{err:+.0f}%'} |")
        out.append("")
    kbp = result.get("openkbp")
    if kbp:
        out += [f"Real CT, OpenKBP validation-pats ({len(kbp['cases']) + len(kbp['failures'])} patients, parotids outlined, "
                f"2.7-5.4 mm voxels; {len(kbp['failures'])} refused by the locator):", "",
                "| gland | n | Dice median | Dice mean | HD95 median (mm) | surface Dice median |", "|---|---|---|---|---|---|"]
        for key, s in kbp["summary"].items():
            out.append(f"| {key} | {s['n']} | {_fmt(s['dice_median'])} | {_fmt(s['dice_mean'])} | {_fmt(s['hd95_mm_median'])} "
                       f"| {_fmt(s['surface_dice_median'])} |")
        out.append("")
        plaus = kbp.get("volume_plausibility")
        if plaus:
            roof = kbp["orbit_roof_above_parotid_mm"]
            out += ["Every gland on the same real CTs: how often it is found and its volume, against the TCIA experts' "
                    f"volumes (70 outline sets). Lacrimal glands are counted only on scans reaching "
                    f"{roof[f'p{ORBIT_ROOF_PERCENTILE}_mm']:g} mm above the parotids' top (where the orbit roof of "
                    f"{ORBIT_ROOF_PERCENTILE}% of the experts' patients lies).", "",
                    "| gland | scans in view | found | volume median (ml) | inside experts' 5-95% | experts' median (5-95%) ml |",
                    "|---|---|---|---|---|---|"]
            for key, v in plaus.items():
                e = v["experts"]
                out.append(f"| {key} | {v['patients_in_view']} | {v['found']} | {_fmt(v['volume_ml_median'])} | "
                           f"{v['inside_expert_range']} of {v['found']} | {e['median_ml']:g} ({e['p05_ml']:g}-{e['p95_ml']:g}) |")
            out.append("")
        where = kbp.get("position_plausibility")
        if where:
            out += ["Where the glands found on the same real CTs lie: each gland's centre against where the TCIA experts' "
                    "lie relative to the centre of the outlined parotid of its side (mean and SD per axis over the TCIA "
                    "outline sets, 70 less resected glands); the experts' 95% region spans "
                    f"{POSITION_REGION_SD} SDs. A volume inside the experts' range in the wrong place is not the gland.", "",
                    "| gland | found beside an outlined parotid | centre's distance from the experts' mean, median (mm) | "
                    "inside the experts' 95% region | the experts' own: distance median (mm), inside |", "|---|---|---|---|---|"]
            for key, v in where.items():
                share = v["experts_inside"]
                out.append(f"| {key} | {v['n']} | {_fmt(v['distance_mm_median'])} | {v['inside_expert_region']} of {v['n']} | "
                           f"{_fmt(v['experts_distance_mm_median'])}, {'-' if share is None else f'{share:.0%}'} |")
            out.append("")
    return out


def card_section(result: dict) -> str:
    """The model card's quality tables, from an evaluation result: real CT first, phantoms after."""
    out = [CARD_HEADING, "", f"Recomputed by `python -m GlandSegLib.defaultmodel.model_eval` (all numbers in `{EVALUATION}`).", ""]
    weights = result.get("prior_weights")
    if weights:
        out += ["With the model's prior weights (GlandSegLib.segmentation.prior_weights; fitted on OpenKBP train-pats by "
                "GlandSegLib.defaultmodel.prior_calibration): " +
                ", ".join(f"{BY_LABEL[int(k)].key} x{v:g}" for k, v in weights.items()) + ".", ""]
    out += _real_ct_tables(result)
    ph = result.get("heldout_phantoms")
    if ph:
        human = ph["human_radiographer_vs_oncologist"]
        out += [f"Synthetic CT (flatters the model: a phantom's gland is painted with its own intensity). Held-out "
                f"phantoms: {len(ph['cases'])} scans of the TCIA `{ph['split']}` split (never trained on), "
                f"{ph['field']} field, {' x '.join(f'{v:g}' for v in ph['spacing_mm'])} mm, seeds from {ph['seeds'][0]}; "
                "truth: the oncologist's outlines. Human ceiling: the radiographer's outlines of the same scans "
                "against the same truth.", "",
                "| gland | n | Dice median | Dice mean | HD95 median (mm) | surface Dice median | human Dice median | human HD95 median (mm) |",
                "|---|---|---|---|---|---|---|---|"]
        for g in GLANDS:
            s, h = ph["summary"].get(g.key), human.get(g.key, {})
            if s:
                out.append(f"| {g.key} | {s['n']} | {_fmt(s['dice_median'])} | {_fmt(s['dice_mean'])} | {_fmt(s['hd95_mm_median'])} "
                           f"| {_fmt(s['surface_dice_median'])} | {_fmt(h.get('dice_median'))} | {_fmt(h.get('hd95_mm_median'))} |")
        out.append("")
    return "\n".join(out)


def write_into_model(folder: Path, result: dict) -> None:
    """evaluation.json and the card's quality section into an installed model; checksums refreshed."""
    from GlandSegLib.io.images import write_text_atomic
    from GlandSegLib.models.registry import METADATA, file_table

    card = folder / "model_card.md"
    text = card.read_text() if card.is_file() else ""
    text = text.split(CARD_HEADING)[0].rstrip() + "\n\n" + card_section(result)
    write_text_atomic(text, card)
    write_text_atomic(json.dumps(result, indent=2) + "\n", folder / EVALUATION)
    index = json.loads((folder / METADATA).read_text())
    index["files"] = file_table(folder)
    write_text_atomic(json.dumps(index, indent=2) + "\n", folder / METADATA)


def main(argv: list[str] | None = None) -> int:
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.models.registry import load_model_info

    ap = argparse.ArgumentParser(description="Evaluate a GlandSeg model on real CT (PDDCA, OpenKBP) and held-out phantoms.")
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--outlines", type=Path, default=None, help="tcia-hn-labels folder (held-out phantoms)")
    ap.add_argument("--phantom-limit", type=int, default=None, help="only the first N held-out scans")
    ap.add_argument("--openkbp", type=Path, default=None, help="OpenKBP validation-pats folder")
    ap.add_argument("--openkbp-limit", type=int, default=None)
    ap.add_argument("--pddca", type=Path, default=None, help="the PDDCA case folder (pddca-0522c0001): measurement only")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--card", action="store_true", help="also write the results into the model folder (card, evaluation.json)")
    ap.add_argument("--no-prior-weights", action="store_true",
                    help="measure the network's raw probabilities, without the model's prior weights (prior_weights.py)")
    args = ap.parse_args(argv)
    if args.outlines is None and args.openkbp is None and args.pddca is None:
        ap.error("give --pddca, --openkbp and/or --outlines")
    if args.card and args.no_prior_weights:
        ap.error("--card describes the model as shipped: not with --no-prior-weights")
    predictor = GlandPredictor(load_model_info(args.model), args.device, prior_weights={} if args.no_prior_weights else None)
    result: dict = {"model": predictor.info.name, "device": predictor.device,
                    "prior_weights": {str(k): v for k, v in sorted(predictor.prior_weights.items())}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="glandseg-eval-") as tmp:
        if args.pddca:
            result["pddca"] = evaluate_pddca(predictor, args.pddca, Path(tmp))
        if args.openkbp:
            result["openkbp"] = evaluate_openkbp(predictor, args.openkbp, Path(tmp), args.openkbp_limit, args.outlines)
        if args.outlines:
            result["heldout_phantoms"] = evaluate_phantoms(predictor, args.outlines, Path(tmp), args.phantom_limit)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(card_section(result))
    if args.card:
        write_into_model(predictor.info.folder, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
