"""Cropped cases -> nnU-Net v2 raw dataset -> compact CPU plans -> training.

Why this module drives nnU-Net through its Python classes instead of `nnUNetv2_*`:

* nnU-Net finds trainers by name (`recursive_find_trainer_class_by_name`), which imports
  every trainer module, among them the primus trainers -> timm -> torchvision; PyPI's
  torchvision does not import beside torch 2.13 CPU. Importing
  `nnUNetTrainerNoMirroring` directly avoids that, and so does building the fingerprint
  extractor, planner and preprocessor classes directly.
* The stock NoMirroring trainer is used as is (only its schedule attributes are set), so a
  checkpoint names a trainer every nnunetv2 installation has. Mirroring must stay off:
  the labels are sided (right/left), and mirrored training teaches the network that a
  gland and its partner are the same thing.
* nnU-Net's own plans are kept (fingerprint, CT normalisation, 3d_fullres) and a small
  "3d_compact" configuration that inherits from 3d_fullres is added, because the default
  3d_fullres network is far too slow to train on two CPU cores.

Cases arrive already cropped and resampled by GlandSeg's inference recipe (head box ->
identity-direction LPS grid at the model spacing), so the compact configuration's spacing
equals the crop spacing and nnU-Net's own resampling does nothing. `plan_and_preprocess`
refuses a dataset whose images are at another spacing rather than silently resampling.

Axis order: GlandSeg speaks SimpleITK order (x, y, z); nnU-Net's plans store spacing and
patch size in array order (z, y, x) permuted by `transpose_forward`. The conversion is
done here and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from .glands import GLANDS, IGNORE_LABEL
from .nnunet_env import (
    N_PROC_DA_VARIABLE,
    NnUNetFolders,
    nnunet_environment,
    override_env,
    require_folders,
)

TRAINER_NAME = "nnUNetTrainerNoMirroring"
PLANS_IDENTIFIER = "nnUNetPlans"
DEFAULT_CONFIGURATION = "3d_compact"
# The CPU default, measured on the 2-core development machine (train_default's docstring
# has the numbers): 64^3 voxels of 2 mm = 128 mm of context, enough for a patch centred on
# a parotid to reach the midline (~58 mm away), which is what tells right from left; thin
# features keep a training step near 1.1 s and a CPU inference tile near 0.3 s.
DEFAULT_SPACING: tuple[float, float, float] = (2.0, 2.0, 2.0)
DEFAULT_PATCH: tuple[int, int, int] = (64, 64, 64)
DEFAULT_FEATURES: tuple[int, ...] = (8, 16, 32, 64, 128)
DEFAULT_BATCH = 2
# ~40 minutes on that machine including case preparation (about 1.3 s per iteration)
DEFAULT_EPOCHS = 50
DEFAULT_ITERATIONS = 30
LOCATOR = "fast"
RAW_FILE_ENDING = ".nii.gz"
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- helpers


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    if not _CASE_ID.match(name):
        raise ValueError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


def label_table(ignore_label: bool = False) -> dict[str, int]:
    """dataset.json's `labels`: background, then the six glands by TG-263 name in label order,
    then nnU-Net's "ignore" where some cases supervise only part of the image."""
    labels: dict[str, int] = {"background": 0}
    for g in sorted(GLANDS, key=lambda g: g.label):
        labels[g.tg263] = g.label
    if ignore_label:
        labels["ignore"] = IGNORE_LABEL
    return labels


def xyz_to_plans_order(values_xyz: Sequence[float], transpose_forward: Sequence[int]) -> list[float]:
    """SimpleITK (x, y, z) -> nnU-Net plans order: array order (z, y, x), then transposed."""
    zyx = list(values_xyz)[::-1]
    return [zyx[i] for i in transpose_forward]


def plans_order_to_xyz(values: Sequence[float], transpose_backward: Sequence[int]) -> list[float]:
    """Inverse of `xyz_to_plans_order`."""
    zyx = [values[i] for i in transpose_backward]
    return zyx[::-1]


def unet_topology(spacing: Sequence[float], patch_size: Sequence[int], n_stages: int) -> tuple[list[list[int]], list[list[int]]]:
    """(kernel_sizes, strides) for a plain U-Net with `n_stages` on this patch.

    Follows nnU-Net's rules in a simple explicit form so the caller decides the depth:
    an axis is pooled only while its spacing is at most twice the finest current spacing
    (anisotropic data pools the fine axes first) and its edge stays even and >= 3 voxels;
    kernels are 1 along an axis still more than twice coarser than the finest one.
    Raises ValueError when the patch cannot carry that many stages.
    """
    sp = np.asarray(spacing, dtype=float)
    edge = np.asarray(patch_size, dtype=int)
    kernels: list[list[int]] = []
    strides: list[list[int]] = [[1] * len(sp)]
    for stage in range(n_stages):
        finest = sp.min()
        kernels.append([3 if s <= 2 * finest else 1 for s in sp])
        if stage == n_stages - 1:
            break
        stride = [2 if (s <= 2 * finest and e % 2 == 0 and e // 2 >= 3) else 1 for s, e in zip(sp, edge)]
        if not any(v == 2 for v in stride):
            raise ValueError(
                f"patch {list(patch_size)} at spacing {list(spacing)} cannot be pooled {n_stages - 1} times; "
                f"use a larger patch (divisible by {2 ** (n_stages - 1)}) or fewer stages"
            )
        strides.append(stride)
        sp = sp * np.asarray(stride)
        edge = edge // np.asarray(stride)
    return kernels, strides


def _check_case(case_id: str, ct: sitk.Image, labels: sitk.Image, crop_spacing: Sequence[float],
                ignore_label: bool = False) -> None:
    if not _CASE_ID.match(case_id):
        raise ValueError(f"case id {case_id!r} must be letters, digits, '_' or '-'")
    if ct.GetDimension() != 3 or labels.GetDimension() != 3:
        raise ValueError(f"{case_id}: images must be 3D")
    if ct.GetSize() != labels.GetSize():
        raise ValueError(f"{case_id}: CT size {ct.GetSize()} != label size {labels.GetSize()}")
    for what, a, b in (("spacing", ct.GetSpacing(), labels.GetSpacing()), ("origin", ct.GetOrigin(), labels.GetOrigin())):
        if not np.allclose(a, b, atol=1e-4):
            raise ValueError(f"{case_id}: CT {what} {a} != label {what} {b}")
    if not np.allclose(ct.GetSpacing(), crop_spacing, atol=1e-4):
        raise ValueError(f"{case_id}: spacing {ct.GetSpacing()} is not the crop spacing {tuple(crop_spacing)}; prepare cases with resample_box")
    for img in (ct, labels):
        if not np.allclose(img.GetDirection(), _IDENTITY, atol=1e-6):
            raise ValueError(f"{case_id}: direction must be identity (LPS model grid); prepare cases with resample_box")
    values = np.unique(sitk.GetArrayViewFromImage(labels))
    allowed = {0, *(g.label for g in GLANDS), *((IGNORE_LABEL,) if ignore_label else ())}
    extra = sorted({int(v) for v in values} - allowed)
    if extra:
        raise ValueError(f"{case_id}: label values {extra} are not GlandSeg labels {sorted(allowed)}")


# --------------------------------------------------------------------------- raw dataset


def write_raw_dataset(
    cases: Iterable[tuple[str, sitk.Image, sitk.Image]],
    raw_root: str | os.PathLike[str],
    dataset_id: int,
    name: str,
    crop_spacing: Sequence[float],
    description: str,
    *,
    locator: str = LOCATOR,
    file_ending: str = RAW_FILE_ENDING,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    ignore_label: bool = False,
) -> Path:
    """Write already-cropped cases as an nnU-Net v2 raw dataset; return its folder.

    Each case is (case_id, ct, labels) on the same identity-direction grid at
    `crop_spacing` (x, y, z mm). CT is stored as float32 (it was linearly resampled),
    labels as uint8. dataset.json names the glands by TG-263 in label order and records
    the crop recipe in a "glandseg" block, so the exported model can say how its inputs
    must be prepared. Images go through nnU-Net's SimpleITKIO, which keeps geometry.
    ignore_label: cases may mark unsupervised voxels with IGNORE_LABEL (partial labels).
    """
    if file_ending not in (".nii.gz", ".nrrd", ".mha"):
        raise ValueError(f"unsupported file ending {file_ending!r}")
    spacing = [float(s) for s in crop_spacing]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"crop spacing must be three positive numbers, got {crop_spacing}")
    raw_root = Path(raw_root)
    folder = raw_root / dataset_folder_name(dataset_id, name)
    others = [p for p in raw_root.glob(f"Dataset{int(dataset_id):03d}_*") if p != folder] if raw_root.is_dir() else []
    if others:
        raise FileExistsError(f"dataset id {dataset_id} is already used by {others[0]}")
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} exists (pass overwrite=True to replace it)")
        shutil.rmtree(folder)
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    images_dir.mkdir(parents=True)
    labels_dir.mkdir()

    seen: set[str] = set()
    for case_id, ct, labels in cases:
        if case_id in seen:
            raise ValueError(f"duplicate case id {case_id!r}")
        _check_case(case_id, ct, labels, spacing, ignore_label)
        seen.add(case_id)
        sitk.WriteImage(sitk.Cast(ct, sitk.sitkFloat32), str(images_dir / f"{case_id}_0000{file_ending}"), useCompression=True)
        sitk.WriteImage(sitk.Cast(labels, sitk.sitkUInt8), str(labels_dir / f"{case_id}{file_ending}"), useCompression=True)
    if not seen:
        raise ValueError("no training cases")

    dataset_json: dict[str, Any] = {
        "name": name,
        "description": description,
        "channel_names": {"0": "CT"},
        "labels": label_table(ignore_label),
        "numTraining": len(seen),
        "file_ending": file_ending,
        # explicit: the plans record it and inference reads with the same class
        "overwrite_image_reader_writer": "SimpleITKIO",
        "glandseg": {
            "format": 1,
            "crop": {
                "locator": locator,
                "spacing_mm": spacing,
                "direction": "identity",
                "space": "LPS",
                "ct_interpolation": "linear",
                "label_interpolation": "nearest",
                "functions": ["GlandSegLib.headbox.locate_head", "GlandSegLib.geometry.resample_box"],
            },
            "glands": [{"label": g.label, "key": g.key, "tg263": g.tg263, "name": g.name} for g in GLANDS],
            **(extra or {}),
        },
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
    return folder


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class PlanResult:
    dataset_name: str
    plans_file: Path
    configuration: str
    spacing_mm: list[float]  # x, y, z
    patch_size: list[int]  # x, y, z
    batch_size: int
    features_per_stage: list[int]
    n_cases: int
    seconds_fingerprint: float
    seconds_planning: float
    seconds_preprocessing: float


def _folders_context(folders: NnUNetFolders | str | os.PathLike[str] | None, **kwargs: Any) -> AbstractContextManager[Any]:
    """Enter nnunet_environment for explicit folders; with None, use what is already set."""
    if folders is None:
        require_folders()
        return nullcontext(None)
    return nnunet_environment(folders, **kwargs)


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the body only (None: leave as is)."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def compact_configuration(
    fullres: dict[str, Any],
    *,
    configuration: str,
    plans_identifier: str,
    spacing_plans: list[float],
    patch_plans: list[int],
    features_per_stage: Sequence[int],
    batch_size: int,
) -> dict[str, Any]:
    """The plans entry for the compact configuration (inherits everything else from 3d_fullres)."""
    n_stages = len(features_per_stage)
    kernels, strides = unet_topology(spacing_plans, patch_plans, n_stages)
    architecture = deepcopy(fullres["architecture"])
    architecture["arch_kwargs"].update(
        {
            "n_stages": n_stages,
            "features_per_stage": [int(f) for f in features_per_stage],
            "kernel_sizes": kernels,
            "strides": strides,
            "n_conv_per_stage": [2] * n_stages,
            "n_conv_per_stage_decoder": [2] * (n_stages - 1),
        }
    )
    return {
        "inherits_from": "3d_fullres",
        # own data identifier: its preprocessed data must not be mistaken for 3d_fullres'
        "data_identifier": f"{plans_identifier}_{configuration}",
        "spacing": [float(s) for s in spacing_plans],
        "patch_size": [int(p) for p in patch_plans],
        "batch_size": int(batch_size),
        # batch Dice: with foreground oversampling most patches miss the small lacrimal
        # glands; pooling the Dice over the batch keeps their loss term defined
        "batch_dice": True,
        "architecture": architecture,
    }


def plan_and_preprocess(
    dataset_id: int,
    configuration: str = DEFAULT_CONFIGURATION,
    spacing: Sequence[float] = DEFAULT_SPACING,
    patch_size: Sequence[int] = DEFAULT_PATCH,
    features_per_stage: Sequence[int] = DEFAULT_FEATURES,
    batch_size: int = DEFAULT_BATCH,
    *,
    folders: NnUNetFolders | str | os.PathLike[str] | None = None,
    num_processes: int | None = None,
    plans_identifier: str = PLANS_IDENTIFIER,
    progress: Progress = print,
    preprocess: Sequence[str] | None = None,
) -> PlanResult:
    """Fingerprint, plan 3d_fullres, add the compact configuration, preprocess only that.

    spacing (mm) and patch_size (voxels) are in (x, y, z) order. The dataset's images must
    already be at `spacing` (see module docstring). Runs inside `folders` when given
    (entering nnunet_environment), else in the nnU-Net folders already set.
    preprocess: the configurations to preprocess (default: only `configuration`); e.g.
    ["3d_fullres"] to train nnU-Net's own configuration without preprocessing the compact one.
    """
    if configuration in ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"):
        raise ValueError(f"{configuration!r} is an nnU-Net default configuration; choose another name")
    if len(spacing) != 3 or len(patch_size) != 3:
        raise ValueError("spacing and patch_size need three values (x, y, z)")
    with _folders_context(folders, n_proc=num_processes):
        # deferred imports: nnunetv2 must see the folders first; these paths avoid
        # nnU-Net's name-based class search where it could reach torchvision
        from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import (
            DatasetFingerprintExtractor,
        )
        from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import (
            ExperimentPlanner,
        )
        from nnunetv2.preprocessing.preprocessors.default_preprocessor import (
            DefaultPreprocessor,
        )
        from nnunetv2.utilities.dataset_name_id_conversion import (
            convert_id_to_dataset_name,
        )

        n_proc = int(os.environ.get("nnUNet_def_n_proc", "1")) if num_processes is None else max(1, num_processes)
        dataset_name = str(convert_id_to_dataset_name(dataset_id))
        preprocessed = require_folders().preprocessed / dataset_name

        t0 = time.perf_counter()
        fpe = DatasetFingerprintExtractor(dataset_id, n_proc, verbose=False)
        fpe.show_progress_bar = False
        fingerprint = fpe.run(overwrite_existing=True)
        t1 = time.perf_counter()
        progress(f"fingerprint of {len(fingerprint['spacings'])} cases: {t1 - t0:.1f} s")

        expected_zyx = [float(s) for s in list(spacing)[::-1]]
        for case_spacing in fingerprint["spacings"]:
            if not np.allclose(case_spacing, expected_zyx, atol=1e-3):
                raise ValueError(
                    f"a case has spacing {list(case_spacing)[::-1]} (x, y, z) but the configuration asks for {list(spacing)}; "
                    "write cases through resample_box at the model spacing so nnU-Net does not resample"
                )

        # The planner estimates memory with torch.set_num_threads(nnUNet_n_proc_DA), which
        # raises for 0, the value training on CPU wants: give planning at least one.
        n_da = max(1, int(os.environ.get(N_PROC_DA_VARIABLE, "1") or 1))
        with override_env(**{N_PROC_DA_VARIABLE: str(n_da)}):
            planner = ExperimentPlanner(dataset_id, preprocessor_name="DefaultPreprocessor", plans_name=plans_identifier)
            plans = planner.plan_experiment()
        if "3d_fullres" not in plans["configurations"]:
            raise RuntimeError("nnU-Net planned no 3d_fullres configuration (are the images 3D?)")
        plans_file = preprocessed / f"{plans_identifier}.json"
        plans = json.loads(plans_file.read_text())
        transpose_forward = plans["transpose_forward"]
        spacing_plans = xyz_to_plans_order([float(s) for s in spacing], transpose_forward)
        patch_plans = [int(p) for p in xyz_to_plans_order([int(p) for p in patch_size], transpose_forward)]
        plans["configurations"][configuration] = compact_configuration(
            plans["configurations"]["3d_fullres"],
            configuration=configuration,
            plans_identifier=plans_identifier,
            spacing_plans=spacing_plans,
            patch_plans=patch_plans,
            features_per_stage=features_per_stage,
            batch_size=batch_size,
        )
        _write_json_atomic(plans_file, plans)
        t2 = time.perf_counter()
        progress(f"plans: {configuration} spacing {list(spacing)} mm, patch {list(patch_size)}, features {list(features_per_stage)}, batch {batch_size}: {t2 - t1:.1f} s")

        pre = DefaultPreprocessor(verbose=False)
        pre.show_progress_bar = False
        for name in preprocess or [configuration]:
            pre.run(dataset_id, name, plans_identifier, num_processes=n_proc)
        t3 = time.perf_counter()
        progress(f"preprocessed {', '.join(preprocess or [configuration])}: {t3 - t2:.1f} s")

    return PlanResult(
        dataset_name=dataset_name,
        plans_file=plans_file,
        configuration=configuration,
        spacing_mm=[float(s) for s in spacing],
        patch_size=[int(p) for p in patch_size],
        batch_size=int(batch_size),
        features_per_stage=[int(f) for f in features_per_stage],
        n_cases=len(fingerprint["spacings"]),
        seconds_fingerprint=t1 - t0,
        seconds_planning=t2 - t1,
        seconds_preprocessing=t3 - t2,
    )


def _write_json_atomic(path: Path, content: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=4) + "\n")
    os.replace(tmp, path)


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
    from .checkpoint import load_checkpoint

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

    with _folders_context(folders, n_proc_da=n_proc_da, torch_threads=torch_threads), _torch_threads(
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
