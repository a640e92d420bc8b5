"""`glandseg export-model RESULTS_FOLDER -o MODEL.zip`: a trained fold as one shareable file.

The zip holds one folder, the GlandSeg model folder that export.export_model writes
(checkpoint without optimizer state, dataset.json, plans.json, glandseg-model.json with
checksums, model_card.md), so `glandseg install-model MODEL.zip` installs it as is, with
install.py's zip-slip and size checks. The model card gathers what a receiving site
needs to judge the model: the crop recipe and spacing (from dataset.json), the label map
(export.py's table), the training data summary that `glandseg prepare` recorded, the
training schedule that `glandseg train` recorded, and validation metrics when
`glandseg evaluate` was run (--evaluation).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from GlandSegLib.errors import InputNotFoundError, InvalidInputError, ModelError, OutputExistsError
from GlandSegLib.models.install import SAFE_NAME

TRAIN_RECORD = "glandseg_train.json"  # what `glandseg train` records beside nnU-Net's fold folders; read here for the card


def _fold(results: Path, fold: str | None) -> str:
    folds = sorted(d.name[len("fold_"):] for d in results.iterdir() if d.is_dir() and d.name.startswith("fold_")
                   and (d / "checkpoint_final.pth").is_file())
    if fold is not None:
        if str(fold) not in folds:
            raise ModelError(f"{results}: fold {fold} has no checkpoint_final.pth (finished folds: {', '.join(folds) or 'none'})")
        return str(fold)
    if not folds:
        raise ModelError(f"{results}: no fold_*/checkpoint_final.pth: is the training finished?")
    if len(folds) > 1:
        raise InvalidInputError(f"{results}: several finished folds ({', '.join(folds)}); choose one with --fold")
    return folds[0]


def _evaluation(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    p = path / "summary.json" if path.is_dir() else path
    if not p.is_file():
        raise InputNotFoundError(f"{p}: no evaluation summary (run glandseg evaluate -o FOLDER first)")
    try:
        summary = json.loads(p.read_text())
        glands = summary["glands"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InvalidInputError(f"{p}: not a glandseg evaluate summary.json") from None
    out: dict[str, Any] = {"cases": len(summary.get("cases", []))}
    for name, g in glands.items():
        out[name] = (f"Dice {g['dice'].get('median')}, surface Dice {g['surface_dice'].get('median')}, "
                     f"HD95 {g['hd95_mm'].get('median')} mm (medians), swaps {g.get('swaps', 0)}")
    return out


def build_card(results: Path, fold: str, evaluation: Path | None) -> dict[str, Any]:
    """Model card sections from what prepare, train and evaluate left in the results folder."""
    dataset_json = json.loads((results / "dataset.json").read_text())
    gs = dataset_json.get("glandseg", {})
    prep = gs.get("prepare", {})
    card: dict[str, Any] = {
        "summary": f"GlandSeg model trained on {dataset_json.get('name', results.parent.name)} "
                   f"({prep.get('summary', {}).get('cases', dataset_json.get('numTraining', '?'))} training cases). "
                   "Research software: validate it on your own data before use.",
    }
    crop = gs.get("crop", {})
    if crop:
        card["crop_recipe"] = {k: crop[k] for k in ("locator", "spacing_mm", "direction", "space", "ct_interpolation",
                                                    "label_interpolation", "functions") if k in crop}
    if prep:
        summary = prep.get("summary", {})
        data: dict[str, Any] = {"cohort": prep.get("cohort"), "training_cases": summary.get("cases"),
                                "hold_out_cases": len(prep.get("test_cases", [])), "skipped_cases": len(prep.get("failed_cases", [])),
                                "case_kinds": summary.get("kinds"), "hold_out_fraction": prep.get("holdout_fraction"),
                                "seed": prep.get("seed"), "anomalies_flagged": prep.get("anomalies"),
                                "overlap_rule": prep.get("overlap_rule")}
        for name, g in summary.get("glands", {}).items():
            data[name] = (f"{g.get('cases_with_gland')} cases, median {g.get('volume_ml_median')} ml, "
                          f"mean HU median {g.get('hu_mean_median')}")
        card["training_data"] = data
    record_file = results / TRAIN_RECORD
    if record_file.is_file():
        rec = json.loads(record_file.read_text())
        card["training"] = {k: rec.get(k) for k in ("configuration", "fold", "epochs", "iterations_per_epoch", "total_iterations",
                                                   "batch_size", "device", "gpus", "seconds", "seconds_per_iteration",
                                                   "final_train_loss", "final_pseudo_dice", "resumed_from") if k in rec}
        card["training"]["trainer"] = "nnUNetTrainerNoMirroring (stock nnunetv2)"
    else:
        card["training"] = {"fold": fold, "trainer": "nnUNetTrainerNoMirroring (stock nnunetv2)"}
    ev = _evaluation(evaluation)
    if ev is not None:
        card["validation"] = ev
    card["limitations"] = ["Inputs must be cropped by GlandSeg's head locator and resampled to the model spacing "
                           "(glandseg segment does this).",
                           "Pseudo Dice is nnU-Net's training-time estimate, not a validation result."]
    return card


def export_model_zip(results_folder: str | Path, zip_path: str | Path, *, name: str | None = None, fold: str | None = None,
                     evaluation: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write MODEL.zip (see module doc); nothing is left behind on failure."""
    from GlandSegLib.models.export import export_model

    results = Path(results_folder)
    if not results.is_dir():
        raise InputNotFoundError(f"{results}: no such results folder")
    for f in ("plans.json", "dataset.json"):
        if not (results / f).is_file():
            raise ModelError(f"{results}: {f} is missing: give nnU-Net's <results>/<Dataset>/<Trainer>__<Plans>__<config> folder")
    zip_path = Path(zip_path)
    if zip_path.suffix.lower() != ".zip":
        raise InvalidInputError(f"{zip_path}: the output must be a .zip file")
    if zip_path.exists() and not overwrite:
        raise OutputExistsError(f"{zip_path} exists; use --overwrite")
    model_name = name or zip_path.stem
    if not SAFE_NAME.fullmatch(model_name):
        raise InvalidInputError(f"invalid model name {model_name!r}: use letters, digits, '.', '_' and '-'")
    chosen = _fold(results, fold)
    card = build_card(results, chosen, Path(evaluation) if evaluation is not None else None)
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=zip_path.parent))
    try:
        try:
            folder = export_model(results, tmp / model_name, model_name, fold=chosen, card=card)
        except (FileNotFoundError, ValueError) as exc:
            raise ModelError(f"cannot export {results}: {exc}") from None
        part = tmp / "model.zip"
        with zipfile.ZipFile(part, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(folder.rglob("*")):
                if p.is_file() and not p.is_symlink():
                    zf.write(p, f"{model_name}/{p.relative_to(folder).as_posix()}")
        os.chmod(part, 0o644)
        os.replace(part, zip_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return zip_path
