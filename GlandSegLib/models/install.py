"""Install, list and remove models under $GLANDSEG_HOME/models.

Models travel between hospitals as zips and are installed with one click, so the archive
is untrusted: entries with absolute paths, `..`, links, or that would land outside the
model folder (zip slip) are refused, as are archives that would unpack to more than
MAX_UNPACKED_BYTES (zip bombs). Checkpoints are re-saved as plain weights (loaded without
running code), and a SHA-256 of every installed file is recorded and checked at each load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from GlandSegLib.models.checkpoint import load_checkpoint
from GlandSegLib.errors import InputNotFoundError, ModelError, OutputExistsError
from GlandSegLib.models.registry import METADATA, file_table, glandseg_home, load_model_info

MAX_UNPACKED_BYTES = 4 * 2**30
MAX_ENTRIES = 10_000
KEEP_CHECKPOINT_KEYS = ("network_weights", "trainer_name", "inference_allowed_mirroring_axes")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")  # model and stage folder names: no paths, no dot files


def installed_models_dir() -> Path:
    return glandseg_home() / "models"


def _safe_member(info: zipfile.ZipInfo) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    path = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in path.parts:
        raise ModelError(f"refused: zip entry {info.filename!r} points outside the model folder")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ModelError(f"refused: zip entry {info.filename!r} is a symbolic link")
    return path


def _extract_zip(zip_path: Path, dest: Path) -> None:
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{zip_path}: not a readable zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            raise ModelError(f"refused: {zip_path} has {len(infos)} entries")
        total = sum(i.file_size for i in infos)
        if total > MAX_UNPACKED_BYTES:
            raise ModelError(f"refused: {zip_path} would unpack to {total / 2**30:.1f} GB (limit {MAX_UNPACKED_BYTES / 2**30:.0f} GB)")
        root = dest.resolve()
        written = 0
        for info in infos:
            rel = _safe_member(info)
            target = (dest / Path(*rel.parts)).resolve() if rel.parts else root
            if target != root and root not in target.parents:
                raise ModelError(f"refused: zip entry {info.filename!r} would land outside the model folder")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > MAX_UNPACKED_BYTES:  # sizes in the directory can lie
                        raise ModelError(f"refused: {zip_path} unpacks to more than it declares")
                    out.write(chunk)


def _find_model_root(folder: Path) -> Path:
    """The folder holding dataset.json + plans.json + fold_* (an export, or nnU-Net's results folder)."""
    candidates = [p.parent for p in folder.rglob("plans.json") if (p.parent / "dataset.json").is_file()
                  and any(d.name.startswith("fold_") for d in p.parent.iterdir() if d.is_dir())]
    if not candidates:
        raise ModelError(f"no nnU-Net model (dataset.json, plans.json, fold_*/) found in {folder}")
    # a two-stage model holds its second stage's model in a subfolder: the outer one is the model
    candidates = [c for c in candidates if not any(o in c.parents for o in candidates)]
    if len(candidates) > 1:
        raise ModelError("several models found: " + ", ".join(str(c.relative_to(folder)) for c in candidates) + "; install one folder at a time")
    return candidates[0]


def _copy_model(src: Path, dest: Path, trust: bool) -> list[str]:
    """Copy what inference needs; checkpoints are re-saved as plain weights."""
    import torch

    shutil.copy2(src / "dataset.json", dest / "dataset.json")
    shutil.copy2(src / "plans.json", dest / "plans.json")
    for extra in ("model_card.md", METADATA):
        if (src / extra).is_file():
            shutil.copy2(src / extra, dest / extra)
    folds = []
    for fold_dir in sorted(d for d in src.iterdir() if d.is_dir() and d.name.startswith("fold_")):
        ckpt_path = next((fold_dir / n for n in ("checkpoint_final.pth", "checkpoint_best.pth") if (fold_dir / n).is_file()), None)
        if ckpt_path is None:
            continue
        ckpt = load_checkpoint(ckpt_path, trust=trust)
        configuration = (ckpt.get("init_args") or {}).get("configuration")
        slim = {k: ckpt[k] for k in KEEP_CHECKPOINT_KEYS if k in ckpt}
        slim["init_args"] = {"configuration": configuration, "fold": fold_dir.name[len("fold_"):]}
        (dest / fold_dir.name).mkdir()
        torch.save(slim, dest / fold_dir.name / "checkpoint_final.pth")
        folds.append(fold_dir.name[len("fold_"):])
    if not folds:
        raise ModelError(f"{src}: no fold_*/checkpoint_final.pth or checkpoint_best.pth")
    return folds


def _copy_stage(src: Path, dest: Path, kind: str, sub: str, trust: bool) -> None:
    """A second stage travels inside its model folder; its checkpoints are re-saved like the
    first stage's, so its own checksum index is rebuilt."""
    if not SAFE_NAME.fullmatch(sub) or not (src / sub / METADATA).is_file():
        raise ModelError(f"{src}: stage {kind!r} must be a model folder directly inside it, not {sub!r}")
    (dest / sub).mkdir()
    _copy_model(src / sub, dest / sub, trust)
    meta = json.loads((src / sub / METADATA).read_text())
    meta["files"] = file_table(dest / sub)
    (dest / sub / METADATA).write_text(json.dumps(meta, indent=2) + "\n")


def _configuration_of(src: Path, dest: Path, folds: list[str]) -> str:
    meta = json.loads((src / METADATA).read_text()) if (src / METADATA).is_file() else {}
    if meta.get("configuration"):
        return str(meta["configuration"])
    import torch

    ckpt = torch.load(dest / f"fold_{folds[0]}" / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    if ckpt["init_args"].get("configuration"):
        return str(ckpt["init_args"]["configuration"])
    parts = src.name.split("__")
    if len(parts) == 3:
        return parts[2]
    raise ModelError(f"{src}: cannot tell which nnU-Net configuration the model uses")


def install_model(source: str | Path, name: str | None = None, *, overwrite: bool = False, trust: bool = False) -> Path:
    """Install a model zip or folder; returns the installed folder. Nothing is left half-installed."""
    source = Path(source)
    if not source.exists():
        raise InputNotFoundError(f"{source}: no such file or folder")
    models = installed_models_dir()
    models.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=models))
    try:
        if source.is_file():
            unpacked = staging / "unpacked"
            unpacked.mkdir()
            _extract_zip(source, unpacked)
            src = _find_model_root(unpacked)
        else:
            src = _find_model_root(source)
        prior = json.loads((src / METADATA).read_text()) if (src / METADATA).is_file() else {}
        model_name = name or prior.get("name") or (source.stem if source.is_file() else src.name.split("__")[0] if "__" in src.name else src.name)
        if not SAFE_NAME.fullmatch(model_name):
            raise ModelError(f"invalid model name {model_name!r}: use letters, digits, '.', '_' and '-'")
        target = models / model_name
        if target.exists() and not overwrite:
            raise OutputExistsError(f"a model named {model_name!r} is already installed; use --overwrite or --name")
        built = staging / "model"
        built.mkdir()
        folds = _copy_model(src, built, trust)
        for kind, sub in (prior.get("stages") or {}).items():
            _copy_stage(src, built, str(kind), str(sub), trust)
        meta = dict(prior)
        meta.update({"format": 1, "name": model_name, "configuration": _configuration_of(src, built, folds), "folds": folds,
                     "checkpoint": "checkpoint_final.pth", "installed_from": source.name})
        meta["files"] = file_table(built)
        (built / METADATA).write_text(json.dumps(meta, indent=2) + "\n")
        load_model_info(str(built))  # labels map, configuration exists, checksums hold
        if target.exists():
            shutil.rmtree(target)
        os.replace(built, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_model(name: str) -> Path:
    target = installed_models_dir() / name
    if not SAFE_NAME.fullmatch(name) or not target.is_dir():
        raise ModelError(f"no installed model named {name!r} in {installed_models_dir()} (shipped models cannot be removed)")
    shutil.rmtree(target)
    return target
