"""Train with nnU-Net's stock no-mirroring trainer, driven through its Python classes.

Why not `nnUNetv2_train`: nnU-Net finds trainers by name
(`recursive_find_trainer_class_by_name`), which imports every trainer module, among them the
primus trainers -> timm -> torchvision; PyPI's torchvision does not import beside torch 2.13
CPU. Importing `nnUNetTrainerNoMirroring` directly avoids that. The stock trainer is used as
is (only its schedule attributes are set), so a checkpoint names a trainer every nnunetv2
installation has. Mirroring must stay off: the labels are sided (right/left), and mirrored
training teaches the network that a gland and its partner are the same thing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from GlandSegLib.training.defaults import (
    DEFAULT_CONFIGURATION,
    DEFAULT_EPOCHS,
    DEFAULT_ITERATIONS,
    PLANS_IDENTIFIER,
    Progress,
)
from GlandSegLib.training.nnunet_env import (
    N_PROC_DA_VARIABLE,
    NnUNetFolders,
    folders_context,
    override_env,
    require_folders,
)
from GlandSegLib.training.nnunet_env import torch_threads as _torch_threads  # train()'s parameter has this name

# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    output_folder: Path  # <results>/<Dataset>/<Trainer>__<Plans>__<configuration>
    fold: str
    checkpoint: Path
    epochs: int
    iterations_per_epoch: int
    val_iterations_per_epoch: int
    batch_size: int
    seconds: float
    seconds_per_iteration: float  # wall time per training iteration incl. augmentation (see _StepStats)
    compute_seconds_per_iteration: float  # forward + backward + step only
    epochs_run: int
    final_train_loss: float | None
    final_pseudo_dice: list[float] = field(default_factory=list)
    resumed_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["output_folder"] = str(self.output_folder)
        d["checkpoint"] = str(self.checkpoint)
        return d


def resume_checkpoint(fold_folder: Path) -> Path | None:
    """The checkpoint to continue from: the newer of checkpoint_final and
    checkpoint_latest, else checkpoint_best, else None.

    nnU-Net prefers final over latest unconditionally; but a fresh training started in a
    folder that holds an earlier run's final, then interrupted, leaves that stale final
    beside a newer latest, and resuming from the stale one would silently discard work.
    """
    candidates = [fold_folder / n for n in ("checkpoint_final.pth", "checkpoint_latest.pth") if (fold_folder / n).is_file()]
    if candidates:
        return max(candidates, key=lambda p: p.stat().st_mtime_ns)
    best = fold_folder / "checkpoint_best.pth"
    return best if best.is_file() else None


def _adam_trainer(base: type) -> type:
    """nnUNetTrainerNoMirroring with AdamW: same data, augmentation, loss and checkpoints.

    Defined here rather than found by name, like the stock trainer (see module docstring).
    Inference never needs this class: GlandSeg builds the network from the plans.
    """
    import torch
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

    class nnUNetTrainerNoMirroringAdamW(base):  # noqa: N801 - nnU-Net's naming convention
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")):  # nnU-Net records these by name
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.initial_lr = 1e-3

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay)
            return opt, PolyLRScheduler(opt, self.initial_lr, self.num_epochs)

    return nnUNetTrainerNoMirroringAdamW


def _load_initial_weights(trainer: Any, checkpoint: Path) -> None:
    """Start from another training's weights; every tensor must match (same plans)."""
    from GlandSegLib.models.checkpoint import load_checkpoint

    weights = load_checkpoint(checkpoint)["network_weights"]
    trainer.initialize()
    net = getattr(trainer.network, "_orig_mod", trainer.network)  # torch.compile wraps it on GPU
    own = net.state_dict()
    wrong = [k for k, v in weights.items() if k not in own or own[k].shape != v.shape]
    missing = [k for k in own if k not in weights]
    if wrong or missing:
        raise ValueError(f"{checkpoint} does not fit this network ({len(wrong)} mismatched, {len(missing)} missing "
                         f"tensors, e.g. {(wrong + missing)[0]}): fine-tune only with the same plans")
    net.load_state_dict(weights)


def _normalise_fold(fold: int | str) -> int | str:
    if isinstance(fold, str) and fold != "all":
        fold = int(fold)
    if fold != "all" and not (isinstance(fold, int) and 0 <= fold <= 4):
        raise ValueError(f"fold must be 'all' or 0..4, got {fold!r}")
    return fold


def _finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def train(
    dataset_id: int,
    configuration: str = DEFAULT_CONFIGURATION,
    fold: int | str = "all",
    epochs: int = DEFAULT_EPOCHS,
    iterations_per_epoch: int = DEFAULT_ITERATIONS,
    device: str = "cpu",
    continue_training: bool = False,
    progress: Progress = print,
    *,
    val_iterations_per_epoch: int | None = None,
    save_every: int = 1,
    folders: NnUNetFolders | str | os.PathLike[str] | None = None,
    n_proc_da: int = 0,
    torch_threads: int | None = None,
    plans_identifier: str = PLANS_IDENTIFIER,
    oversample_foreground: float | None = None,
    optimizer: str = "sgd",
    initial_weights: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train the stock nnUNetTrainerNoMirroring with a short schedule; return where it wrote.

    The trainer class is imported directly (see module docstring) and only its schedule
    attributes are changed, so checkpoints name the stock trainer. nnU-Net's final
    validation (sliding-window prediction of every case) is not run: on CPU it costs more
    than the training, and GlandSeg evaluates exported models with its own pipeline.

    continue_training resumes from checkpoint_final, else checkpoint_latest, else
    checkpoint_best in the fold folder (nnU-Net's own order); with none, it starts anew.
    oversample_foreground: share of patches centred on a gland (None: nnU-Net's 0.33).
    optimizer: "sgd" (nnU-Net's stock SGD, lr 0.01) or "adam" (AdamW, lr 1e-3: leaves the
        all-background plateau within a few hundred iterations, which SGD may not on CPU).
    initial_weights: a checkpoint whose network weights start a new training (fine-tuning;
        same plans, so same network). Loaded weights-only: only GlandSeg's own models or
        ones the user trusts belong here. Ignored when resuming.
    save_every: epochs between checkpoint_latest writes (nnU-Net's 50 is longer than a
    whole CPU schedule, which would make --continue useless).
    """
    fold = _normalise_fold(fold)
    if epochs < 1 or iterations_per_epoch < 1:
        raise ValueError("epochs and iterations_per_epoch must be >= 1")
    n_val = max(1, iterations_per_epoch // 10) if val_iterations_per_epoch is None else max(1, int(val_iterations_per_epoch))

    with folders_context(folders, n_proc_da=n_proc_da, torch_threads=torch_threads), _torch_threads(
        torch_threads if folders is None else None
    ), override_env(
        **{N_PROC_DA_VARIABLE: str(max(0, int(n_proc_da)))}
    ):
        import torch
        from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoMirroring import (
            nnUNetTrainerNoMirroring,
        )
        from nnunetv2.utilities.dataset_name_id_conversion import (
            convert_id_to_dataset_name,
        )

        dataset_name = str(convert_id_to_dataset_name(dataset_id))
        pre = require_folders().preprocessed / dataset_name
        plans = json.loads((pre / f"{plans_identifier}.json").read_text())
        if configuration not in plans["configurations"]:
            raise ValueError(f"configuration {configuration!r} not in {plans_identifier}.json: run plan_and_preprocess first")
        dataset_json = json.loads((pre / "dataset.json").read_text())
        # nnunetv2 2.8's trainer pops this key from the plans dict (get_trainer_from_args sets it)
        plans["continue_training"] = bool(continue_training)

        torch_device = torch.device(device)
        if torch_device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        trainer_class = _adam_trainer(nnUNetTrainerNoMirroring) if optimizer == "adam" else nnUNetTrainerNoMirroring
        trainer = trainer_class(plans=plans, configuration=configuration, fold=fold, dataset_json=dataset_json, device=torch_device)
        trainer.num_epochs = int(epochs)
        trainer.num_iterations_per_epoch = int(iterations_per_epoch)
        trainer.num_val_iterations_per_epoch = n_val
        trainer.save_every = max(1, int(save_every))
        if oversample_foreground is not None:
            # nnU-Net's 0.33 suits 250k iterations; a short CPU schedule must see the small
            # glands far more often or it never leaves the all-background plateau
            trainer.oversample_foreground_percent = float(oversample_foreground)

        resumed_from = None
        if continue_training:
            chosen = resume_checkpoint(Path(trainer.output_folder))
            if chosen is None:
                progress("no checkpoint to continue from: starting a new training")
            else:
                trainer.load_checkpoint(str(chosen))  # initialises the trainer first
                resumed_from = chosen.name
                progress(f"resuming from {chosen.name} at epoch {trainer.current_epoch}")
        if initial_weights is not None and resumed_from is None:
            _load_initial_weights(trainer, Path(initial_weights))
            progress(f"network initialised from {initial_weights}")

        stats = _StepStats()
        t_start = time.perf_counter()
        _instrument(trainer, progress, stats, t_start)
        if torch_device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        start_epoch = trainer.current_epoch
        trainer.run_training()
        seconds = time.perf_counter() - t_start

        logger = trainer.logger
        train_loss = _finite_or_none(logger.get_value("train_losses", step=-1)) if trainer.current_epoch > 0 else None
        dice_raw = logger.get_value("dice_per_class_or_region", step=-1) if trainer.current_epoch > 0 else []
        output_folder = Path(trainer.output_folder_base)
        result = TrainResult(
            output_folder=output_folder,
            fold=str(fold),
            checkpoint=Path(trainer.output_folder) / "checkpoint_final.pth",
            epochs=int(epochs),
            iterations_per_epoch=int(iterations_per_epoch),
            val_iterations_per_epoch=n_val,
            batch_size=int(trainer.batch_size),
            seconds=seconds,
            seconds_per_iteration=stats.wall_per_iteration(),
            compute_seconds_per_iteration=stats.compute_per_iteration(),
            epochs_run=trainer.current_epoch - start_epoch,
            final_train_loss=train_loss,
            final_pseudo_dice=[v if v is not None else float("nan") for v in (_finite_or_none(d) for d in (dice_raw or []))],
            resumed_from=resumed_from,
        )
        del trainer
    return result


def _instrument(trainer: Any, progress: Progress, stats: _StepStats, t_start: float) -> None:
    """Time training steps and report each epoch, by wrapping methods on the instance.

    Instance attributes, not a subclass: the checkpoint must keep the stock trainer name.
    """
    original_step = trainer.train_step
    original_epoch_end = trainer.on_epoch_end

    def train_step(batch: dict) -> dict:
        t = time.perf_counter()
        stats.step_started(t)
        out = original_step(batch)
        stats.compute.append(time.perf_counter() - t)
        return out

    def on_epoch_end() -> None:
        original_epoch_end()
        stats.epoch_ended()
        lg = trainer.logger
        loss = _finite_or_none(lg.get_value("train_losses", step=-1))
        dice = [round(float(d), 3) for d in lg.get_value("dice_per_class_or_region", step=-1)]
        ep_time = lg.get_value("epoch_end_timestamps", step=-1) - lg.get_value("epoch_start_timestamps", step=-1)
        progress(
            f"epoch {trainer.current_epoch}/{trainer.num_epochs}: loss {loss if loss is None else round(loss, 4)}, "
            f"pseudo-Dice {dice}, epoch {ep_time:.1f} s, {stats.wall_per_iteration():.2f} s/it "
            f"({stats.compute_per_iteration():.2f} s compute), training {time.perf_counter() - t_start:.0f} s"
        )

    trainer.train_step = train_step
    trainer.on_epoch_end = on_epoch_end


@dataclass
class _StepStats:
    """Per-iteration timings. `wall` is start-to-start of consecutive steps within an epoch,
    so it includes loading and augmenting the batch (done in the training process when
    nnUNet_n_proc_DA=0); `compute` is forward + backward + optimiser step only. The first
    step of each epoch has no wall interval; the very first compute time (lazy init) is
    left out of the mean when there are others."""

    wall: list[float] = field(default_factory=list)
    compute: list[float] = field(default_factory=list)
    _last: float | None = None

    def step_started(self, t: float) -> None:
        if self._last is not None:
            self.wall.append(t - self._last)
        self._last = t

    def epoch_ended(self) -> None:
        self._last = None

    def wall_per_iteration(self) -> float:
        return float(np.mean(self.wall)) if self.wall else self.compute_per_iteration()

    def compute_per_iteration(self) -> float:
        c = self.compute[1:] if len(self.compute) > 1 else self.compute
        return float(np.mean(c)) if c else float("nan")
