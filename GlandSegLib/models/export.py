"""Turn an nnU-Net training output into a GlandSeg model folder.

Layout (what GlandSeg's model loader and nnU-Net's predictor both read):

    dest/dataset.json             nnU-Net's, with the glands' TG-263 names and crop recipe
    dest/plans.json               nnU-Net's plans (holds the compact configuration)
    dest/fold_<fold>/checkpoint_final.pth
    dest/glandseg-model.json      GlandSeg's index: configuration, spacing, crop, training,
                                  sha256 of every other file (tamper/corruption check)
    dest/model_card.md            for people

Why the checkpoint is stripped: nnU-Net's checkpoint carries optimizer state (two thirds
of its size), logging and pickled objects that need `weights_only=False`, i.e. arbitrary
code execution on load. The shipped one holds only tensors and plain values, loads with
`torch.load(..., weights_only=True)`, and still has the keys nnU-Net's predictor reads
(`network_weights`, `trainer_name`, `init_args.configuration`,
`inference_allowed_mirroring_axes`).

Mirroring must be off (None): the labels are sided, and test-time mirroring would average
a right gland with the mirrored left one. A checkpoint that allows mirroring is refused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from GlandSegLib.glands import GLANDS
from GlandSegLib.io.images import replace_dir_atomic
from GlandSegLib.models.registry import METADATA as INDEX_FILE
from GlandSegLib.models.registry import configuration_dict, file_table

MODEL_FORMAT = 1
CARD_FILE = "model_card.md"
CHECKPOINT_NAME = "checkpoint_final.pth"


def strip_checkpoint(checkpoint: Mapping[str, Any], fold: str, *, half: bool = False) -> dict[str, Any]:
    """Only what inference needs, as tensors and plain values (see module docstring)."""
    import torch

    mirroring = checkpoint.get("inference_allowed_mirroring_axes")
    if mirroring is not None:
        raise ValueError(
            f"checkpoint allows test-time mirroring on axes {mirroring}; GlandSeg's labels are sided, "
            "train with nnUNetTrainerNoMirroring"
        )
    dtype = torch.float16 if half else torch.float32
    # nnU-Net's state dict names most tensors two or three times (`conv` and
    # `all_modules.0`, `decoder.encoder.*`); they share storage and torch.save writes it
    # once. Converting each name separately would triple the file, so convert per tensor.
    converted: dict[tuple[int, tuple[int, ...], tuple[int, ...], int], Any] = {}
    weights = {}
    for k, v in checkpoint["network_weights"].items():
        t = v.detach().to("cpu")
        key = (t.untyped_storage().data_ptr(), tuple(t.shape), tuple(t.stride()), t.storage_offset())
        if key not in converted:
            converted[key] = t.to(dtype) if t.is_floating_point() else t
        weights[str(k)] = converted[key]
    return {
        "network_weights": weights,
        "trainer_name": str(checkpoint["trainer_name"]),
        "inference_allowed_mirroring_axes": None,
        "init_args": {"configuration": str(checkpoint["init_args"]["configuration"]), "fold": str(fold)},
    }


def _xyz(values: list[float], transpose_backward: list[int]) -> list[float]:
    zyx = [values[i] for i in transpose_backward]
    return zyx[::-1]


def _render_card(index: dict[str, Any], card: Mapping[str, Any]) -> str:
    """Markdown for people: the facts from the index, then the caller's sections in order."""
    lines = [f"# GlandSeg model: {index['name']}", ""]
    if card.get("summary"):
        lines += [str(card["summary"]), ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| configuration | `{index['configuration']}` (nnU-Net v2, plans `{index['plans']}`) |",
        f"| trainer | `{index['trainer']}` (test-time mirroring off: labels are sided) |",
        f"| folds | {', '.join(index['folds'])} |",
        f"| spacing | {' x '.join(f'{s:g}' for s in index['spacing_mm'])} mm (x, y, z) |",
        f"| patch | {' x '.join(str(p) for p in index['patch_size'])} voxels (x, y, z) |",
        f"| input crop | locator `{index['crop']['locator']}`, identity-direction LPS grid at the model spacing |",
        "",
        "## Labels",
        "",
        "| value | gland | TG-263 |",
        "|---|---|---|",
    ]
    lines += [f"| {g.label} | {g.name} | `{g.tg263}` |" for g in sorted(GLANDS, key=lambda g: g.label)]
    lines.append("")
    for key, value in card.items():
        if key == "summary":
            continue
        lines += [f"## {key.replace('_', ' ').capitalize()}", ""]
        if isinstance(value, Mapping):
            lines += [f"- **{k}**: {_plain(v)}" for k, v in value.items()]
        elif isinstance(value, (list, tuple)):
            lines += [f"- {_plain(v)}" for v in value]
        else:
            lines.append(str(value))
        lines.append("")
    return "\n".join(lines)


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_plain(x) for x in v)
    if isinstance(v, Mapping):
        return "; ".join(f"{k}: {_plain(x)}" for k, x in v.items())
    return str(v)


def export_model(
    trained_output_folder: str | os.PathLike[str],
    dest_folder: str | os.PathLike[str],
    name: str,
    fold: str | int = "all",
    card: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    half: bool = False,
    index_extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the GlandSeg model folder for one trained fold; return `dest_folder`.

    trained_output_folder: nnU-Net's `<results>/<Dataset>/<Trainer>__<Plans>__<config>`.
    card: free-form facts for the model card; a "training" mapping in it is also copied
    into glandseg-model.json, and `index_extra` (e.g. a second stage's anchor) goes into it
    as given. Everything is written into a temporary sibling folder and
    renamed into place, so a reader never sees a half-written model.
    """
    import torch

    src = Path(trained_output_folder)
    dest = Path(dest_folder).absolute()
    fold = str(fold)
    card = dict(card or {})
    ck_path = src / f"fold_{fold}" / CHECKPOINT_NAME
    for p in (src / "plans.json", src / "dataset.json", ck_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: is {src} a finished nnU-Net training output?")
    if dest.exists() and not overwrite:
        raise FileExistsError(f"{dest} exists (pass overwrite=True to replace it)")

    # our own training output, written by nnU-Net: it holds numpy scalars in its logs,
    # hence weights_only=False here and only here
    checkpoint = torch.load(ck_path, map_location="cpu", weights_only=False)
    stripped = strip_checkpoint(checkpoint, fold, half=half)
    configuration = stripped["init_args"]["configuration"]
    plans = json.loads((src / "plans.json").read_text())
    plans.pop("continue_training", None)
    dataset_json = json.loads((src / "dataset.json").read_text())
    dataset_json.pop("dataset", None)  # where the training files lay: nothing a model needs, nor should carry
    if configuration not in plans.get("configurations", {}):
        raise ValueError(f"configuration {configuration!r} of the checkpoint is not in plans.json")
    _check_labels(dataset_json)

    resolved = configuration_dict(plans, configuration)
    tb = plans["transpose_backward"]
    spacing_xyz = [float(s) for s in _xyz(list(resolved["spacing"]), tb)]
    patch_xyz = [int(p) for p in _xyz(list(resolved["patch_size"]), tb)]
    crop = dict(dataset_json.get("glandseg", {}).get("crop", {}))
    if crop.get("spacing_mm") is not None and any(abs(a - b) > 1e-3 for a, b in zip(crop["spacing_mm"], spacing_xyz)):
        raise ValueError(f"crop spacing {crop['spacing_mm']} differs from the model spacing {spacing_xyz}")

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        (tmp / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
        (tmp / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
        (tmp / f"fold_{fold}").mkdir()
        torch.save(stripped, tmp / f"fold_{fold}" / CHECKPOINT_NAME)
        torch.load(tmp / f"fold_{fold}" / CHECKPOINT_NAME, map_location="cpu", weights_only=True)  # prove it
        index: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "name": name,
            "configuration": configuration,
            "folds": [fold],
            "trainer": stripped["trainer_name"],
            "plans": plans.get("plans_name", "nnUNetPlans"),
            "spacing_mm": spacing_xyz,
            "patch_size": patch_xyz,
            "crop": {"locator": crop.get("locator", "fast"), "spacing_mm": crop.get("spacing_mm", spacing_xyz)},
            "labels": {g.tg263: g.label for g in sorted(GLANDS, key=lambda g: g.label)},
            "weights_dtype": "float16" if half else "float32",
            "training": _json_safe(dict(card.get("training", {}))),
            **_json_safe(dict(index_extra or {})),
        }
        (tmp / CARD_FILE).write_text(_render_card(index, card))
        index["files"] = file_table(tmp)
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, allow_nan=False) + "\n")
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        replace_dir_atomic(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _json_safe(value: Any) -> Any:
    """Strict JSON: NaN/inf (e.g. a pseudo Dice of a class absent from an epoch) -> null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _check_labels(dataset_json: Mapping[str, Any]) -> None:
    """The exported model must name the six glands with GlandSeg's values, or inference
    would have to guess which output channel is which gland."""
    labels = {str(k): int(v) for k, v in dataset_json.get("labels", {}).items() if not isinstance(v, (list, tuple))}
    for g in GLANDS:
        if labels.get(g.tg263) != g.label:
            raise ValueError(f"dataset.json does not map {g.tg263} to {g.label}: {labels}")
