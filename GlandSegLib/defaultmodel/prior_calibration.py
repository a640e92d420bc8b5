"""Fit a model's per-gland prior weights (GlandSegLib.segmentation.prior_weights) on real training CTs.

    python -m GlandSegLib.defaultmodel.prior_calibration --model glandseg-v7 \\
        --openkbp ../shared/data/openkbp/train-pats --outlines ../shared/data/tcia-hn-labels \\
        --patients 40 --work /tmp/glandseg-priors [--write]

Only OpenKBP `train-pats` CTs are used: never the validation CTs (model_eval measures on
them) and never the PDDCA case. Weights come from a fixed grid:

* parotids, outlined on these CTs: one weight for both sides, the one with the highest
  median Dice against the outlines (both sides pooled: per side, the Dice differences
  between neighbouring grid weights are within the noise of 40 CTs);
* submandibular and lacrimal glands, not outlined anywhere on real CT we may tune on: one
  weight per side, whose median volume found comes closest (in log ratio) to the TCIA
  experts' median volume of that side (70 outline sets). The network trained without
  mirroring is not equally sure of both sides (glandseg-v5's left lacrimal and left
  submandibular glands needed a larger weight than the right ones), and each side is its
  own class. Fitted by coordinate descent from the best common weight: one side varies
  while the other is held, twice over, since the two sides compete where they touch.
  Lacrimal glands count only on scans whose field of view reaches the orbit roof
  (real_ct.ORBIT_ROOF_PERCENTILE), as model_eval counts them.

Matching the experts' median volume corrects a systematic shortfall; it cannot make a
misplaced gland right (model_eval's PDDCA Dice and the OpenKBP parotid Dice say whether
it did). The network's raw probabilities are computed once per CT (stage one on the 2 mm
crop, the lacrimal stage in its two boxes) and every candidate weight is applied to them,
with the largest connected component per gland, as the pipeline does (the lacrimal glands'
on the stage's 1.25 mm grid, where lacrimal.one_gland chooses it too; a volume written on a
coarse CT grid is that component's samples there). --write stores the
weights and the fit in the model's glandseg-model.json (checksums unchanged: the index
is not in its own file table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.glands import GLANDS
from GlandSegLib.segmentation.postprocess import keep_largest_component, largest_component

GRID = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8, 4.0, 5.6, 8.0, 11.0, 16.0, 22.0, 32.0)
ORGANS_BY_VOLUME = ("submandibular", "lacrimal")  # no real outlines to tune on: the experts' median volume
ORGANS_BY_DICE = ("parotid",)  # outlined on OpenKBP train-pats
SIDE_ROUNDS = 2  # coordinate-descent rounds of the per-side fit


# ----------------------------------------------------------------------------- collect once per CT


def collect_case(predictor, patient: Path, roof_mm: float) -> dict:
    """The raw (unweighted) probabilities of one OpenKBP CT, with its parotid outlines on the same grid."""
    from GlandSegLib.defaultmodel.openkbp import parotid_truth
    from GlandSegLib.defaultmodel.real_ct import scan_top_above_parotid_mm
    from GlandSegLib.geometry import resample_to, voxel_volume_ml
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.segmentation.inference import probabilities_to_labels
    from GlandSegLib.segmentation.lacrimal import AIR_HU, lacrimal_stage
    from GlandSegLib.segmentation.pipeline import find_head, head_crops

    if predictor.prior_weights:
        raise ValueError("collect raw probabilities with a predictor built with prior_weights={}")
    ct = read_ct(patient / "ct.nrrd").image
    truth_ct = parotid_truth(sitk.ReadImage(str(patient / "oar_labels.nrrd")))
    box = find_head(ct, "fast")
    ct_crop, model_crop = head_crops(ct, box, predictor.info.spacing_xyz)
    probs = predictor.predict_probabilities(model_crop)
    labels = sorted(probs)
    case = {"patient": patient.name, "labels": labels,
            "probs": np.stack([probs[k] for k in labels]).astype(np.float16),
            "voxel_ml": voxel_volume_ml(model_crop),
            "truth": sitk.GetArrayFromImage(resample_to(truth_ct, model_crop, is_label=True)),
            "top_above_parotid_mm": scan_top_above_parotid_mm(ct, truth_ct), "roof_mm": roof_mm, "lacrimal": {}}
    if predictor.lacrimal is not None:
        stage_one = keep_largest_component(probabilities_to_labels(probs, model_crop, ct_crop))
        _, images = lacrimal_stage(ct, ct_crop, stage_one, predictor.lacrimal, box.midline_x)
        for label, img in images.items():
            # past the scan is air, as the stage's boxes are filled
            air = sitk.GetArrayFromImage(resample_to(ct, img)) <= AIR_HU
            case["lacrimal"][label] = {"prob": sitk.GetArrayFromImage(img).astype(np.float16), "air": air,
                                       "voxel_ml": voxel_volume_ml(img)}
    return case


# ----------------------------------------------------------------------------- apply a weight


def _organ_view(case: dict, organ: str) -> dict:
    """What one organ's weights can change, computed once per case: per gland of the organ, its
    probability against the strongest other class (with weight 1) and its sibling (the other
    side, weighted by _wins with its own weight), inside the region where the largest grid
    weight could make it win.
    Ties go to the lower label, as in the pipeline's argmax, so the fit counts exactly what
    the pipeline would segment on the model grid (it then resamples the probabilities onto
    the CT before its argmax), without recomputing the argmax over all classes per weight."""
    cache = case.setdefault("_views", {})
    if organ in cache:
        return cache[organ]
    probs, labels = case["probs"], case["labels"]
    mine = [i for i, k in enumerate(labels) if k in {g.label for g in GLANDS if g.organ == organ}]

    def strongest(idx: list[int], like: np.ndarray) -> np.ndarray:
        return np.max(probs[idx], axis=0).astype(np.float32) if idx else np.full_like(like, -1.0)

    view = {}
    for i in mine:
        p = probs[i].astype(np.float32)
        below = strongest([j for j in range(len(labels)) if j < i and j not in mine], p)  # must beat
        above = strongest([j for j in range(len(labels)) if j > i and j not in mine], p)  # must reach
        reach = (max(GRID) * p > below) & (max(GRID) * p >= above)
        if not reach.any():
            view[labels[i]] = None
            continue
        sl = ndimage.find_objects(reach.astype(np.uint8))[0]
        siblings = [(probs[j][sl].astype(np.float32), j < i, labels[j]) for j in mine if j != i]
        view[labels[i]] = {"p": p[sl], "below": below[sl], "above": above[sl], "siblings": siblings,
                           "truth": case["truth"][sl] == labels[i], "truth_total": int((case["truth"] == labels[i]).sum())}
    cache[organ] = view
    return view


def _wins(v: dict, weight: float, weights: Mapping[int, float]) -> np.ndarray:
    wp = np.float32(weight) * v["p"]
    win = (wp > v["below"]) & (wp >= v["above"])
    for q, lower, label in v["siblings"]:  # the other side, with its own weight
        wq = np.float32(weights[label]) * q
        win &= (wp > wq) if lower else (wp >= wq)
    return win


def gland_volumes_and_dice(case: dict, organ: str, weights: float | Mapping[int, float]) -> dict[str, dict]:
    """Per gland of `organ`: volume found (ml) and, where outlined, Dice; largest component each.
    weights: one for every gland of the organ, or per gland label (missing: 1)."""
    out = {}
    glands = [g for g in GLANDS if g.organ == organ]
    per_gland = ({g.label: float(weights.get(g.label, 1.0)) for g in glands} if isinstance(weights, Mapping)
                 else {g.label: float(weights) for g in glands})
    if organ == "lacrimal" and case["lacrimal"]:
        for g in glands:
            side = case["lacrimal"].get(g.label)
            if side is None:
                out[g.key] = {"volume_ml": 0.0}
                continue
            p = side["prob"].astype(np.float32)
            found = largest_component((per_gland[g.label] * p > 1.0 - p) & ~side["air"])
            out[g.key] = {"volume_ml": float(found.sum()) * side["voxel_ml"]}
        return out
    view = _organ_view(case, organ)
    for g in glands:
        v = view.get(g.label)
        if v is None:
            found_n, hit = 0, 0
        else:
            found = largest_component(_wins(v, per_gland[g.label], per_gland))
            found_n, hit = int(found.sum()), int((found & v["truth"]).sum())
        row = {"volume_ml": found_n * case["voxel_ml"]}
        total = int((case["truth"] == g.label).sum()) if v is None else v["truth_total"]
        if total:
            row["dice"] = 2.0 * hit / (found_n + total)
        out[g.key] = row
    return out


# ----------------------------------------------------------------------------- fit


def curve(cases: list[dict], organ: str, grid=GRID, vary: int | None = None,
          held: Mapping[int, float] | None = None) -> list[dict]:
    """Per candidate weight: median volume (and median Dice where outlined) per gland over the
    cases. The candidate weight applies to every gland of the organ, or only to the gland
    labelled `vary`, the others keeping their `held` weight."""
    rows = []
    for w in grid:
        weights = {g.label: (w if vary in (None, g.label) else float((held or {}).get(g.label, 1.0)))
                   for g in GLANDS if g.organ == organ}
        per_gland: dict[str, dict[str, list[float]]] = {}
        for case in cases:
            if organ == "lacrimal" and not _lacrimal_in_view(case):
                continue
            for key, r in gland_volumes_and_dice(case, organ, weights).items():
                d = per_gland.setdefault(key, {"volume_ml": [], "dice": []})
                d["volume_ml"].append(r["volume_ml"])
                if "dice" in r:
                    d["dice"].append(r["dice"])
        row = {"weight": w}
        for key, d in per_gland.items():
            vols = [v for v in d["volume_ml"] if v > 0]
            row[key] = {"n": len(d["volume_ml"]), "found": len(vols),
                        "volume_ml_median": round(float(np.median(vols)), 3) if vols else 0.0}
            if d["dice"]:
                row[key]["dice_median"] = round(float(np.median(d["dice"])), 4)
        rows.append(row)
    return rows


def _lacrimal_in_view(case: dict) -> bool:
    top = case["top_above_parotid_mm"]
    return top is not None and top >= case["roof_mm"]


def choose(organ: str, rows: list[dict], experts: dict[str, dict], keys: list[str] | None = None) -> float:
    """The grid weight that best meets the organ's criterion for `keys` (default: all its
    glands; ties: the weight closest to 1)."""
    keys = keys or [g.key for g in GLANDS if g.organ == organ]

    def score(row: dict) -> float:
        if organ in ORGANS_BY_DICE:
            dice = [row[k]["dice_median"] for k in keys if "dice_median" in row.get(k, {})]
            return -float(np.mean(dice)) if dice else float("inf")
        gaps = [abs(np.log(max(row[k]["volume_ml_median"], 1e-6) / experts[k]["median_ml"])) for k in keys if k in row]
        return float(np.sum(gaps)) if gaps else float("inf")

    best = min(rows, key=lambda r: (round(score(r), 6), abs(np.log(r["weight"]))))
    return float(best["weight"])


def fit(cases: list[dict], experts: dict[str, dict]) -> dict:
    """{"weights": {label: weight, ...} (weights of 1 left out), "curves": {organ or gland key: rows}}."""
    result: dict = {"weights": {}, "curves": {}}
    for organ in ORGANS_BY_DICE + ORGANS_BY_VOLUME:
        glands = [g for g in GLANDS if g.organ == organ]
        rows = curve(cases, organ)
        common = choose(organ, rows, experts)
        result["curves"][organ] = rows
        weights = {g.label: common for g in glands}
        if organ in ORGANS_BY_VOLUME:
            for _ in range(SIDE_ROUNDS):
                for g in glands:
                    side_rows = curve(cases, organ, vary=g.label, held=weights)
                    weights[g.label] = choose(organ, side_rows, experts, [g.key])
                    result["curves"][g.key] = side_rows
        result["weights"].update({str(label): w for label, w in weights.items() if w != 1.0})
    return result


def write_into_model(folder: Path, fitted: dict, record: dict) -> None:
    """Store the weights and how they were fitted in the model's glandseg-model.json (atomic)."""
    from GlandSegLib.io.images import write_text_atomic
    from GlandSegLib.models.registry import METADATA, PRIOR_WEIGHTS_KEY

    path = Path(folder) / METADATA
    meta = json.loads(path.read_text())
    meta[PRIOR_WEIGHTS_KEY] = fitted["weights"]
    meta["prior_calibration"] = record
    write_text_atomic(json.dumps(meta, indent=2) + "\n", path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.prior_calibration", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--openkbp", type=Path, required=True, help="OpenKBP train-pats (never validation-pats)")
    ap.add_argument("--outlines", type=Path, required=True, help="tcia-hn-labels (the experts' volumes)")
    ap.add_argument("--patients", type=int, default=40, help="evenly spread over train-pats")
    ap.add_argument("--work", type=Path, required=True, help="cache of the raw probabilities (one .npz per CT)")
    ap.add_argument("--write", action="store_true", help="store the weights in the model's glandseg-model.json")
    args = ap.parse_args(argv)
    if "validation" in args.openkbp.name:
        ap.error("--openkbp must be train-pats: the validation CTs measure the model")

    from GlandSegLib.defaultmodel.openkbp import list_patients
    from GlandSegLib.defaultmodel.real_ct import ORBIT_ROOF_PERCENTILE, expert_volumes, orbit_roof_above_parotid_mm
    from GlandSegLib.errors import GlandSegError
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    t0 = time.perf_counter()
    info = load_model_info(args.model)
    predictor = GlandPredictor(info, args.device, prior_weights={})
    experts = expert_volumes(args.outlines)
    roof = orbit_roof_above_parotid_mm(args.outlines)[f"p{ORBIT_ROOF_PERCENTILE}_mm"]
    pts = list_patients(args.openkbp)
    step = max(len(pts) // args.patients, 1)
    chosen = pts[::step][: args.patients]
    args.work.mkdir(parents=True, exist_ok=True)
    cases, skipped = [], []
    for i, p in enumerate(chosen, 1):
        cache = args.work / f"{info.name}_{p.name}.npz"
        if cache.is_file():
            with np.load(cache, allow_pickle=True) as z:
                cases.append(z["case"].item())
            continue
        try:
            case = collect_case(predictor, p, roof)
        except (GlandSegError, ValueError) as exc:
            skipped.append(f"{p.name}: {exc}")
            print(f"[{time.perf_counter() - t0:7.1f} s] {p.name}: skipped ({exc})", flush=True)
            continue
        np.savez_compressed(cache, case=np.array(case, dtype=object))
        cases.append(case)
        print(f"[{time.perf_counter() - t0:7.1f} s] {i}/{len(chosen)} {p.name}", flush=True)
    fitted = fit(cases, experts)
    record = {"source": f"OpenKBP train-pats, {len(cases)} CTs (every {step}th){'; skipped: ' + '; '.join(skipped) if skipped else ''}",
              "rule": "parotid: one weight, highest median Dice vs the outlines (sides pooled); submandibular, lacrimal: one "
                      "weight per side, median volume closest to the TCIA experts' median of that side (lacrimal: scans "
                      f"reaching the orbit roof; {SIDE_ROUNDS} coordinate-descent rounds from the best common weight); grid " +
                      ", ".join(f"{w:g}" for w in GRID),
              "patients": [c["patient"] for c in cases],
              "command": "python -m GlandSegLib.defaultmodel.prior_calibration " + " ".join(sys.argv[1:] if argv is None else argv),
              "experts_median_ml": {k: v["median_ml"] for k, v in experts.items()},
              "curves": fitted["curves"]}
    print(json.dumps({"weights": fitted["weights"]}, indent=1))
    for name, rows in fitted["curves"].items():
        print(f"\n{name}:")
        for row in rows:
            print(f"  w={row['weight']:<5g} " + "  ".join(
                f"{k}: {v['volume_ml_median']:.2f} ml ({v['found']}/{v['n']})" + (f" Dice {v['dice_median']:.3f}" if "dice_median" in v else "")
                for k, v in row.items() if k != "weight"))
    if args.write:
        write_into_model(info.folder, fitted, record)
        print(f"written into {info.folder}")
    print(f"[{time.perf_counter() - t0:7.1f} s] done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
