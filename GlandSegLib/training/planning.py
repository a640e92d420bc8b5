"""nnU-Net's own plans, plus a small "3d_compact" configuration a CPU can train.

nnU-Net's fingerprint, CT normalisation and 3d_fullres are kept; 3d_compact inherits from
3d_fullres with a smaller patch and fewer features, because the default network is far too
slow on two CPU cores. The planner and preprocessor classes are built directly (no lookup by
name, see trainer.py). Its spacing equals the crop spacing, so nnU-Net's own resampling does
nothing; `plan_and_preprocess` refuses images at another spacing rather than resample them.

Axis order: GlandSeg speaks SimpleITK order (x, y, z); nnU-Net's plans store spacing and
patch size in array order (z, y, x) permuted by `transpose_forward`. The conversion is done
here and nowhere else.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from GlandSegLib.training.defaults import (
    DEFAULT_BATCH,
    DEFAULT_CONFIGURATION,
    DEFAULT_FEATURES,
    DEFAULT_PATCH,
    DEFAULT_SPACING,
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
    with folders_context(folders, n_proc=num_processes):
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


