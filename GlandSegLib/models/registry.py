"""Where models live, how one is found by name or path, and how it is verified.

A GlandSeg model folder is an nnU-Net v2 results folder (dataset.json, plans.json,
fold_*/checkpoint_*.pth) plus `glandseg-model.json` (configuration, crop recipe, SHA-256
of every file) and a model card. Installed models live under $GLANDSEG_HOME/models; the
shipped default lives in Resources/models. Checksums are verified at every load so a model
changed on disk is noticed before its pickle is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from GlandSegLib.errors import ModelError
from GlandSegLib.glands import LABELS as CANONICAL_LABELS
from GlandSegLib.names import map_model_labels

DEFAULT_MODEL = "glandseg-v8"
METADATA = "glandseg-model.json"
PRIOR_WEIGHTS_KEY = "prior_weights"
REPO_ROOT = Path(__file__).resolve().parents[2]


def glandseg_home() -> Path:
    return Path(os.environ.get("GLANDSEG_HOME", Path.home() / ".glandseg"))


def model_roots() -> list[Path]:
    """Search order: the user's installed models first, then the models shipped with GlandSeg."""
    return [glandseg_home() / "models", REPO_ROOT / "Resources" / "models"]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class ModelInfo:
    folder: Path
    name: str
    configuration: str
    folds: list[str]
    checkpoint: str
    dataset_json: dict
    plans: dict
    metadata: dict
    label_map: dict[int, int]  # model value -> canonical gland label
    warnings: list[str] = field(default_factory=list)
    stages: dict[str, "ModelInfo"] = field(default_factory=dict)  # e.g. "lacrimal": the second stage's model
    prior_weights: dict[int, float] = field(default_factory=dict)  # canonical gland label -> weight (prior_weights.py)

    @property
    def spacing_xyz(self) -> list[float]:
        """Target spacing of the configuration, in SimpleITK's (x, y, z) order."""
        cfg = configuration_dict(self.plans, self.configuration)
        spacing_zyx = cfg["spacing"]
        transpose = self.plans.get("transpose_forward", [0, 1, 2])
        if list(transpose) != [0, 1, 2]:
            # spacing in plans is given in the transposed order
            inv = [transpose.index(i) for i in range(3)]
            spacing_zyx = [spacing_zyx[i] for i in inv]
        return [float(v) for v in reversed(spacing_zyx)]

    @property
    def patch_size(self) -> list[int]:
        return list(configuration_dict(self.plans, self.configuration)["patch_size"])


def configuration_dict(plans: dict, name: str) -> dict:
    """A plans configuration with `inherits_from` resolved, as nnU-Net does it."""
    configs = plans.get("configurations", {})
    if name not in configs:
        raise ModelError(f"configuration {name!r} is not in the model's plans ({', '.join(configs)})")
    cfg = dict(configs[name])
    seen = {name}
    while "inherits_from" in cfg:
        parent = cfg.pop("inherits_from")
        if parent in seen or parent not in configs:
            raise ModelError(f"configuration {name!r} inherits from an unknown or circular {parent!r}")
        seen.add(parent)
        merged = dict(configs[parent])
        merged.update(cfg)
        cfg = merged
    return cfg


def resolve_model_folder(model: str | None) -> Path:
    """A model name (installed or shipped) or a path to a model folder."""
    name = model or DEFAULT_MODEL
    p = Path(name).expanduser()
    if p.is_dir():
        return p
    if os.sep not in name and "/" not in name:
        for root in model_roots():
            if (root / name).is_dir():
                return root / name
    known = ", ".join(sorted(m.name for r in model_roots() if r.is_dir() for m in r.iterdir() if m.is_dir())) or "none"
    raise ModelError(f"model {name!r} not found (installed models: {known})")


def file_table(folder: Path) -> dict[str, str]:
    """SHA-256 of every file in a model folder but the index itself, by POSIX relative path."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix() != METADATA}


def verify_checksums(folder: Path, metadata: dict) -> None:
    """Every listed file present and unchanged, and no unlisted file beside them."""
    files = metadata.get("files")
    if not isinstance(files, dict) or not files:
        raise ModelError(f"{folder / METADATA} lists no file checksums")
    extra = sorted(set(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")
                       if p.is_file() and p.name != METADATA) - set(files))
    if extra:
        raise ModelError(f"{folder} holds files not in its checksum list (added after installation?): {', '.join(extra)}")
    for rel, digest in files.items():
        target = (folder / rel).resolve()
        if folder.resolve() not in target.parents:
            raise ModelError(f"{METADATA} names a file outside the model folder: {rel}")
        if not target.is_file():
            raise ModelError(f"model file {rel} is missing from {folder}")
        if sha256_file(target) != digest:
            raise ModelError(f"model file {rel} in {folder} has changed since the model was installed (checksum mismatch)")


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path.parent}: not a model folder ({path.name} missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: corrupt JSON ({exc})") from None


def load_model_info(model: str | None = None) -> ModelInfo:
    folder = resolve_model_folder(model)
    metadata = {}
    if (folder / METADATA).is_file():
        metadata = _load_json(folder / METADATA)
        verify_checksums(folder, metadata)
    dataset_json = _load_json(folder / "dataset.json")
    plans = _load_json(folder / "plans.json")
    folds = [str(f) for f in metadata.get("folds", [])] or sorted(
        d.name[len("fold_"):] for d in folder.iterdir() if d.is_dir() and d.name.startswith("fold_"))
    if not folds:
        raise ModelError(f"{folder}: no fold_* folder with a checkpoint")
    checkpoint = metadata.get("checkpoint", "checkpoint_final.pth")
    for f in folds:
        if not (folder / f"fold_{f}" / checkpoint).is_file():
            raise ModelError(f"{folder}: fold_{f}/{checkpoint} is missing")
    configuration = metadata.get("configuration") or _configuration_from_checkpoint(folder / f"fold_{folds[0]}" / checkpoint) \
        or _configuration_from_folder_name(folder, plans)
    configuration_dict(plans, configuration)
    label_map, warnings = map_model_labels(dataset_json.get("labels", {}))
    if not metadata:
        warnings.append(f"{folder} has no {METADATA}: files are not checksum-verified (install it with `glandseg install-model`)")
    return ModelInfo(folder, metadata.get("name", folder.name), configuration, folds, checkpoint,
                     dataset_json, plans, metadata, label_map, warnings, _load_stages(folder, metadata),
                     parse_prior_weights(metadata.get(PRIOR_WEIGHTS_KEY), folder))


def parse_prior_weights(raw, folder: Path) -> dict[int, float]:
    """glandseg-model.json's optional "prior_weights" ({"5": 2.8, ...}: canonical gland label ->
    positive weight), checked here so a bad index fails at load, not halfway through a batch."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ModelError(f"{folder / METADATA}: {PRIOR_WEIGHTS_KEY} must map gland labels to weights")
    out = {}
    for key, value in raw.items():
        try:
            label, weight = int(key), float(value)
        except (TypeError, ValueError):
            raise ModelError(f"{folder / METADATA}: {PRIOR_WEIGHTS_KEY} entry {key!r}: {value!r} is not label: number") from None
        if label not in CANONICAL_LABELS:
            raise ModelError(f"{folder / METADATA}: {PRIOR_WEIGHTS_KEY} names label {label}, not a gland (1-6)")
        if not (0.0 < weight < float("inf")):
            raise ModelError(f"{folder / METADATA}: {PRIOR_WEIGHTS_KEY} weight of label {label} must be positive and finite, got {value!r}")
        out[label] = weight
    return out


def _load_stages(folder: Path, metadata: dict) -> dict[str, ModelInfo]:
    """Second-stage models a model folder carries in subfolders (metadata "stages": {kind: subfolder})."""
    stages = {}
    for kind, sub in (metadata.get("stages") or {}).items():
        target = (folder / str(sub)).resolve()
        if folder.resolve() not in target.parents:
            raise ModelError(f"{METADATA} names a stage outside the model folder: {sub}")
        if not target.is_dir():
            raise ModelError(f"stage {kind!r} ({sub}/) is missing from {folder}")
        stage = load_model_info(str(target))
        if (stage.metadata.get("stage") or {}).get("kind") != kind:
            raise ModelError(f"{target} is not a {kind!r} stage model (its {METADATA} has no stage.kind {kind!r})")
        stages[str(kind)] = stage
    return stages


def _configuration_from_checkpoint(path: Path) -> str | None:
    """nnU-Net records the configuration a checkpoint was trained with in its init_args."""
    from GlandSegLib.models.checkpoint import load_checkpoint

    init_args = load_checkpoint(path).get("init_args") or {}
    value = init_args.get("configuration") if isinstance(init_args, dict) else None
    return str(value) if value else None


def _configuration_from_folder_name(folder: Path, plans: dict) -> str:
    """nnU-Net names results folders Trainer__Plans__configuration."""
    parts = folder.name.split("__")
    if len(parts) == 3 and parts[2] in plans.get("configurations", {}):
        return parts[2]
    if "3d_fullres" in plans.get("configurations", {}):
        return "3d_fullres"
    raise ModelError(f"{folder}: cannot tell which configuration the model was trained with")
