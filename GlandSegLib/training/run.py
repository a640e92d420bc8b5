"""`glandseg train`: a prepared raw dataset -> plans -> nnU-Net training, one command.

Built on training.plan_and_preprocess / training.train, so the stock
nnUNetTrainerNoMirroring is imported directly and nnU-Net's trainer lookup by name (which
imports torchvision and breaks beside a CPU torch) is never used, also not for several
GPUs: `train_ddp` starts one process per GPU itself, joins the NCCL process group and
calls the same `training.train` in each (nnU-Net's trainer detects the initialized group
and wraps its network in DistributedDataParallel, as `nnunetv2.run.run_training.run_ddp`
does after its lookup).

Folders: the raw dataset's parent is nnUNet_raw; nnUNet_preprocessed and nnUNet_results
come from --preprocessed/--results, else from the environment, else sit beside it. Plans
and preprocessed data are reused when present (so --continue and a second fold cost no
preprocessing); --replan redoes them. The crop spacing comes from the dataset.json that
`glandseg prepare` wrote, so the network is planned at exactly the spacing of the crops.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from GlandSegLib.models.export_zip import TRAIN_RECORD
from GlandSegLib.training.dataset import parse_dataset_path
from GlandSegLib.errors import DependencyError, InputNotFoundError, InvalidInputError
from GlandSegLib.training.nnunet_env import NnUNetFolders
from GlandSegLib.training.defaults import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_FEATURES, DEFAULT_ITERATIONS, DEFAULT_PATCH, PLANS_IDENTIFIER
from GlandSegLib.training.planning import plan_and_preprocess
from GlandSegLib.training.trainer import TrainResult, train

CONFIGURATIONS = ("3d_compact", "3d_fullres")
Log = Callable[[str], None]


@dataclass
class TrainSetup:
    dataset: Path
    dataset_id: int
    dataset_name: str
    folders: NnUNetFolders
    spacing: list[float]


def setup(dataset: str | Path, preprocessed: str | Path | None = None, results: str | Path | None = None) -> TrainSetup:
    """Resolve the dataset folder, its id and the three nnU-Net folders (see module doc)."""
    p = Path(dataset)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such dataset folder")
    raw_root, dataset_id, _name = parse_dataset_path(p)
    dj = p / "dataset.json"
    if not dj.is_file() or not (p / "imagesTr").is_dir():
        raise InvalidInputError(f"{p}: not an nnU-Net raw dataset (dataset.json and imagesTr/ needed; make one with glandseg prepare)")
    try:
        meta = json.loads(dj.read_text())
        spacing = [float(s) for s in meta["glandseg"]["crop"]["spacing_mm"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise InvalidInputError(f"{dj}: no GlandSeg crop recipe (glandseg.crop.spacing_mm): prepare the dataset with glandseg prepare") from None

    def pick(explicit: str | Path | None, variable: str, default: Path) -> Path:
        if explicit is not None:
            return Path(explicit).absolute()
        if os.environ.get(variable):
            return Path(os.environ[variable]).absolute()
        return default

    folders = NnUNetFolders(raw=raw_root, preprocessed=pick(preprocessed, "nnUNet_preprocessed", raw_root.parent / "nnUNet_preprocessed"),
                            results=pick(results, "nnUNet_results", raw_root.parent / "nnUNet_results"))
    return TrainSetup(p.absolute(), dataset_id, p.name, folders, spacing)


def is_preprocessed(s: TrainSetup, configuration: str, plans_identifier: str = PLANS_IDENTIFIER) -> bool:
    """Plans hold the configuration and its preprocessed data folder is not empty."""
    from GlandSegLib.models.registry import configuration_dict

    plans_file = s.folders.preprocessed / s.dataset_name / f"{plans_identifier}.json"
    if not plans_file.is_file():
        return False
    try:
        plans = json.loads(plans_file.read_text())
        ident = configuration_dict(plans, configuration)["data_identifier"]
    except Exception:
        return False
    data = s.folders.preprocessed / s.dataset_name / ident
    return data.is_dir() and any(data.iterdir())


def train_dataset(
    dataset: str | Path,
    configuration: str = "3d_compact",
    fold: int | str = "all",
    epochs: int = DEFAULT_EPOCHS,
    iterations: int = DEFAULT_ITERATIONS,
    *,
    gpus: int = 1,
    device: str = "auto",
    continue_training: bool = False,
    replan: bool = False,
    patch: Sequence[int] = DEFAULT_PATCH,
    features: Sequence[int] = DEFAULT_FEATURES,
    batch: int = DEFAULT_BATCH,
    preprocessed: str | Path | None = None,
    results: str | Path | None = None,
    num_processes: int | None = None,
    torch_threads: int | None = None,
    log: Log = print,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Plan/preprocess if needed, train one fold, record what was done; returns that record."""
    if configuration not in CONFIGURATIONS:
        raise InvalidInputError(f"--config {configuration!r}: use one of {', '.join(CONFIGURATIONS)}")
    s = setup(dataset, preprocessed, results)
    dev = _device(device, gpus)
    t0 = time.perf_counter()
    if replan or not is_preprocessed(s, configuration):
        log(f"planning and preprocessing {s.dataset_name} ({configuration}, spacing {s.spacing} mm)")
        plan_and_preprocess(s.dataset_id, "3d_compact", s.spacing, patch, features, batch, folders=s.folders,
                            num_processes=num_processes, progress=log,
                            preprocess=[configuration] if configuration != "3d_compact" else None)
    else:
        log(f"reusing plans and preprocessed data in {s.folders.preprocessed / s.dataset_name}")
    t_plan = time.perf_counter() - t0
    log(f"training {configuration} fold {fold}: {epochs} epochs x {iterations} iterations on {dev}"
        f"{f' ({gpus} GPUs)' if gpus > 1 else ''}")
    kwargs: dict[str, Any] = dict(dataset_id=s.dataset_id, configuration=configuration, fold=fold, epochs=epochs,
                                  iterations_per_epoch=iterations, continue_training=continue_training,
                                  folders=s.folders, torch_threads=torch_threads)
    if gpus > 1:
        result = train_ddp(gpus, kwargs, log)
    else:
        result = train(device=dev, progress=log, **kwargs).to_dict()
    record = {
        "command": " ".join(command) if command else None,
        "dataset": s.dataset_name,
        "configuration": configuration,
        "fold": str(fold),
        "epochs": epochs,
        "iterations_per_epoch": iterations,
        "total_iterations": epochs * iterations,
        "device": dev,
        "gpus": gpus,
        "seconds_plan_preprocess": round(t_plan, 1),
        **{k: v for k, v in result.items() if k not in ("output_folder", "checkpoint")},
        "output_folder": result.get("output_folder"),
    }
    out = Path(str(result["output_folder"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / TRAIN_RECORD).write_text(json.dumps(_json_safe(record), indent=2) + "\n")
    return record


def _json_safe(v: Any) -> Any:
    import math

    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _device(requested: str, gpus: int) -> str:
    import torch

    if gpus < 1:
        raise InvalidInputError("--gpus must be at least 1 (it counts GPUs per job; use --device cpu for the CPU)")
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DependencyError("--device cuda was requested but PyTorch sees no CUDA GPU")
    if requested == "cpu" and gpus > 1:
        raise InvalidInputError("--gpus > 1 needs --device cuda")
    if gpus > 1 and torch.cuda.device_count() < gpus:
        raise DependencyError(f"--gpus {gpus} requested but PyTorch sees {torch.cuda.device_count()} CUDA GPUs")
    if requested not in ("cpu", "cuda"):
        raise InvalidInputError(f"unknown device {requested!r}")
    return requested


# --------------------------------------------------------------------------- several GPUs


def train_ddp(gpus: int, kwargs: dict[str, Any], log: Log) -> dict[str, Any]:  # pragma: no cover - needs >= 2 CUDA GPUs
    """One process per GPU (see module doc); rank 0 reports and writes the result."""
    import tempfile

    import torch.multiprocessing as mp
    from nnunetv2.run.run_training import find_free_network_port

    os.environ.setdefault("MASTER_ADDR", "localhost")
    os.environ.setdefault("MASTER_PORT", str(find_free_network_port()))
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        mp.spawn(_ddp_worker, args=(gpus, kwargs, str(result_file)), nprocs=gpus, join=True)
        return json.loads(result_file.read_text())


def _ddp_worker(rank: int, world_size: int, kwargs: dict[str, Any], result_file: str) -> None:  # pragma: no cover
    import torch
    import torch.distributed as dist

    dist.init_process_group("nccl", rank=rank, world_size=world_size)
    try:
        torch.cuda.set_device(torch.device("cuda", rank))
        log = (lambda m: print(m, flush=True)) if rank == 0 else (lambda m: None)
        result: TrainResult = train(device="cuda", progress=log, **kwargs)
        if rank == 0:
            Path(result_file).write_text(json.dumps(result.to_dict()))
    finally:
        dist.destroy_process_group()


def elapsed_log(stream: Any = None) -> Log:
    """Progress lines with the time since the command started (the training display)."""
    t0 = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - t0:8.1f} s] {message}", file=stream or sys.stdout, flush=True)

    return log
