"""Real-CT pseudo-labels for the submandibular glands, which no real CT we may train on outlines.

    python -m GlandSegLib.defaultmodel.pseudo_labels --model glandseg-v7 \\
        --openkbp ../shared/data/openkbp/train-pats --outlines ../shared/data/tcia-hn-labels \\
        --out /tmp/glandseg-pseudo

Why: stage one learns the submandibular glands from phantoms only, and on real CT it trusts
them too little (prior weights up to x8 were needed, and longer training on phantoms made
it worse). A trained model's own segmentation of the OpenKBP *training* CTs, kept only where
it is anatomically plausible, shows the network real submandibular glands in real
surroundings (self-training; Xie et al., "noisy student", CVPR 2020), while the phantoms keep
teaching the boundary. Never run on validation-pats (model_eval measures there) or on the
PDDCA case.

Per CT and side, the gland found (the model with its prior weights, largest component, on
the model's 2 mm crop) becomes a label only when its volume lies inside the TCIA experts'
5-95% range of that side and its centre inside the experts' 95% region relative to the
outlined parotid of its side (real_ct.position_plausibility's test). Then, on the crop grid:

* the gland eroded by CORE_MM: the gland's label;
* from there to BAND_MM outside it: IGNORE_LABEL (the boundary is the model's guess);
* from BAND_MM to SHELL_MM outside it: background (where a real gland is certainly not);
* everything else: IGNORE_LABEL, i.e. no statement.

train_default --pseudo-labels merges these into the OpenKBP cases' partial labels, only
where those say nothing (IGNORE_LABEL): an outlined organ, the air and the parotid ring
always win. The files are images with their physical geometry, so the merge holds for any
crop that covers them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.glands import GLANDS, IGNORE_LABEL
from GlandSegLib.segmentation.postprocess import largest_component

ORGAN = "submandibular"
CORE_MM = 2.0
BAND_MM = 4.0
SHELL_MM = 12.0
FILE_NAME = "pseudo_labels.nrrd"
SUMMARY = "pseudo_labels.json"


def summary_name(shard: tuple[int, int]) -> str:
    """One summary per shard, so that processes side by side never write the same file;
    labelling_models reads them all back by this naming."""
    return SUMMARY if tuple(shard) == (0, 1) else f"{Path(SUMMARY).stem}.{shard[0]}of{shard[1]}.json"


def labelling_models(folder: Path) -> list[str]:
    """The models that made a pseudo-label folder, read from its summaries (one per shard): a
    model card names these, not the folder, which lived on the builder's disk. A folder with no
    summary raises FileNotFoundError; a summary that names no model raises ValueError."""
    models = set()
    for f in sorted(Path(folder).glob(f"{Path(SUMMARY).stem}*.json")):
        try:
            models.add(json.loads(f.read_text())["model"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{f} is not a pseudo-label summary (no model named in it): {exc}") from exc
    if not models:
        raise FileNotFoundError(f"{folder} holds no pseudo_labels*.json summary: not written by GlandSegLib.defaultmodel.pseudo_labels")
    return sorted(models)


def label_map(glands: dict[int, np.ndarray], spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """The pseudo-label array (z, y, x) for the plausible glands `glands` (label -> mask):
    core, ignore band, background shell, IGNORE_LABEL elsewhere."""
    shape = next(iter(glands.values())).shape if glands else None
    if shape is None:
        raise ValueError("no gland to label")
    sp = np.asarray(spacing_zyx, float)
    out = np.full(shape, IGNORE_LABEL, np.uint8)
    near = np.zeros(shape, bool)
    for mask in glands.values():
        # one distance map per gland: the band and shell are measured from the gland's surface
        dist_out = ndimage.distance_transform_edt(~mask, sampling=sp)
        shell = (dist_out > BAND_MM) & (dist_out <= SHELL_MM)
        out[shell & (out == IGNORE_LABEL)] = 0
        near |= (dist_out <= BAND_MM)
    out[near] = IGNORE_LABEL  # a band always wins over another gland's shell
    for label, mask in glands.items():
        # Euclidean, in mm: a voxel is core when no voxel outside the gland lies within CORE_MM
        out[mask & (ndimage.distance_transform_edt(mask, sampling=sp) > CORE_MM)] = label
    return out


def plausible(volume_ml: float, centre: list[float], parotid_centre: list[float] | None, expert: dict,
              reference: dict) -> str | None:
    """Why a gland found is not taken as a label, or None when it is."""
    from GlandSegLib.defaultmodel.real_ct import POSITION_REGION_SD, offset_distances

    if not expert["p05_ml"] <= volume_ml <= expert["p95_ml"]:
        return f"volume {volume_ml:.1f} ml outside the experts' {expert['p05_ml']}-{expert['p95_ml']} ml"
    if parotid_centre is None:
        return "parotid of its side not outlined: position cannot be checked"
    _, sds = offset_distances(centre, parotid_centre, reference["mean_mm"], reference["sd_mm"])
    if sds > POSITION_REGION_SD:
        return f"centre {sds:.1f} SD from where the experts' lie (limit {POSITION_REGION_SD})"
    return None


def pseudo_label_case(predictor, patient: Path, experts: dict, reference: dict) -> tuple[sitk.Image | None, dict]:
    """One OpenKBP training CT: the pseudo-label image on the model's crop grid (None when no
    gland passed) and a record of what was kept and why not."""
    from GlandSegLib.defaultmodel.openkbp import parotid_truth
    from GlandSegLib.defaultmodel.real_ct import centroids_mm
    from GlandSegLib.geometry import centroid_lps, voxel_volume_ml
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.segmentation.inference import probabilities_to_labels
    from GlandSegLib.segmentation.pipeline import find_head, head_crops

    ct = read_ct(patient / "ct.nrrd").image
    parotids = centroids_mm(parotid_truth(sitk.ReadImage(str(patient / "oar_labels.nrrd"))))
    box = find_head(ct, "fast")
    _, model_crop = head_crops(ct, box, predictor.info.spacing_xyz)
    # the pipeline's own argmax (ties to the lower label), on the model grid itself
    argmax = sitk.GetArrayFromImage(probabilities_to_labels(predictor.predict_probabilities(model_crop), model_crop, model_crop))
    voxel_ml = voxel_volume_ml(model_crop)
    kept: dict[int, np.ndarray] = {}
    record: dict = {"patient": patient.name, "glands": {}}
    for g in GLANDS:
        if g.organ != ORGAN:
            continue
        mask = largest_component(argmax == g.label)
        if not mask.any():
            record["glands"][g.key] = {"kept": False, "why": "not found"}
            continue
        volume = float(mask.sum()) * voxel_ml
        centre = [float(v) for v in centroid_lps(mask, model_crop)]
        why = plausible(volume, centre, parotids.get(reference[g.key]["reference"]), experts[g.key], reference[g.key])
        record["glands"][g.key] = {"kept": why is None, "volume_ml": round(volume, 2), **({"why": why} if why else {})}
        if why is None:
            kept[g.label] = mask
    if not kept:
        return None, record
    spacing_zyx = tuple(reversed(model_crop.GetSpacing()))
    img = sitk.GetImageFromArray(label_map(kept, spacing_zyx))
    img.CopyInformation(model_crop)
    return img, record


def merge(labels: sitk.Image, pseudo: sitk.Image) -> sitk.Image:
    """`labels` (partial training labels) with `pseudo` filled in where they say nothing."""
    from GlandSegLib.geometry import resample_to

    on_grid = sitk.GetArrayFromImage(resample_to(pseudo, labels, is_label=True, default=IGNORE_LABEL))
    arr = sitk.GetArrayFromImage(labels)
    fill = (arr == IGNORE_LABEL) & (on_grid != IGNORE_LABEL)
    arr[fill] = on_grid[fill]
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(labels)
    return out


def pseudo_label_file(folder: Path | None, patient: str) -> Path | None:
    """Where pseudo_labels wrote this patient's labels, if it wrote any."""
    if folder is None:
        return None
    path = Path(folder) / patient / FILE_NAME
    return path if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.pseudo_labels", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="installed model whose segmentation becomes the labels")
    ap.add_argument("--openkbp", type=Path, required=True, help="OpenKBP train-pats folder")
    ap.add_argument("--outlines", type=Path, required=True, help="tcia-hn-labels (the experts' volumes)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--shard", type=int, nargs=2, default=(0, 1), metavar=("I", "N"),
                    help="do every N-th patient starting at I (run N processes side by side)")
    ap.add_argument("--device", default="auto", help="auto (a GPU when present), cpu or cuda")
    a = ap.parse_args(argv)
    if "validation" in a.openkbp.name:
        ap.error("validation-pats is held out for evaluation: pseudo-label train-pats")

    from GlandSegLib.defaultmodel.openkbp import list_patients
    from GlandSegLib.defaultmodel.real_ct import expert_volumes, position_reference
    from GlandSegLib.errors import NoHeadError
    from GlandSegLib.io.images import write_image_atomic, write_text_atomic
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    predictor = GlandPredictor(load_model_info(a.model), a.device)
    experts, reference = expert_volumes(a.outlines), position_reference()
    patients = list_patients(a.openkbp)[: a.limit][a.shard[0]::a.shard[1]]
    records = []
    t0 = time.perf_counter()
    for i, patient in enumerate(patients, 1):
        try:
            img, rec = pseudo_label_case(predictor, patient, experts, reference)
        except NoHeadError as exc:
            img, rec = None, {"patient": patient.name, "skipped": str(exc)}
        if img is not None:
            write_image_atomic(img, a.out / patient.name / FILE_NAME)
        records.append(rec)
        kept = [k for k, v in rec.get("glands", {}).items() if v["kept"]]
        print(f"[{time.perf_counter() - t0:6.0f} s] {i}/{len(patients)} {patient.name}: kept {kept or 'none'}", flush=True)
    summary = a.out / summary_name(a.shard)
    write_text_atomic(json.dumps({"model": a.model, "patients": records}, indent=1) + "\n", summary)
    n = {g.key: sum(1 for r in records if r.get("glands", {}).get(g.key, {}).get("kept")) for g in GLANDS if g.organ == ORGAN}
    print(f"kept per gland: {n} of {len(patients)} CTs; summary {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
