"""Run an nnU-Net v2 model on a crop that is already on the model's grid.

nnU-Net's own loader (`initialize_from_trained_model_folder`) finds the trainer class by
name, which imports every trainer, including ones that need torchvision; with a CPU torch
that import fails. GlandSeg builds the network from the plans itself and hands it to
`nnUNetPredictor.manual_initialization`, so inference needs only stock nnunetv2 and never
imports torchvision. nnU-Net's mirroring is always off: left and right glands are different
classes. A model may ask for GlandSeg's own left-right mirroring instead (MIRROR_KEY): the
crop is predicted as it is and flipped left to right, and the flipped prediction's right and
left glands trade places before the two are averaged, which a mirror-trained model could not do.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from typing import Callable

import numpy as np
import SimpleITK as sitk

from GlandSegLib.models.checkpoint import load_checkpoint
from GlandSegLib.errors import DependencyError, ModelError
from GlandSegLib.glands import GLANDS, partner
from GlandSegLib.models.registry import ModelInfo
from GlandSegLib.segmentation.prior_weights import apply_prior_weights, weights_for_stage, weights_for_stage_one

ProgressFn = Callable[[float, str], None]

# Sliding-window step as a fraction of the patch: nnU-Net's 0.5 everywhere. 0.75 needs 12
# instead of 36 tiles on the head crop (CPU inference 4 s instead of 11 s), but its result
# differs from 0.5 by Dice 0.88-0.94 per gland (Testing/benchmark.py --compare-tile-steps),
# as much as the model's own error: accuracy first, speed on request (--tile-step 0.75).
DEFAULT_TILE_STEP = 0.5
TILE_STEP_RANGE = (0.1, 1.0)  # fractions of the patch; outside it, tiles skip voxels or crawl

# glandseg-model.json: {"inference": {"mirror_left_right": true}} asks for the mirrored second
# pass. It belongs to the model, not to a run: the prior weights are fitted on its probabilities.
# In a model's index it mirrors every stage; in a second stage's own index, that stage alone
# (the lacrimal stage's boxes can be mirrored without touching stage one's parotids).
MIRROR_KEY = "mirror_left_right"
# canonical label -> the label of the same organ on the other side (background stays)
MIRRORED_LABEL = {0: 0, **{g.label: partner(g).label for g in GLANDS}}


def choose_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DependencyError("--device cuda was requested but PyTorch sees no CUDA GPU (CPU-only torch build or no driver)")
    if requested not in ("cpu", "cuda"):
        raise DependencyError(f"unknown device {requested!r}; use auto, cpu or cuda")
    return requested


class GlandPredictor:
    """A loaded model, ready to predict crops; load once, predict many (batch, benchmark)."""

    def __init__(self, info: ModelInfo, device: str = "auto", *, trust_model: bool = False,
                 tile_step_size: float | None = None, prior_weights: Mapping[int, float] | None = None,
                 mirror: bool | None = None):
        """prior_weights: per-gland weights on the probabilities (prior_weights.py); None: the
        model's own (glandseg-model.json), {}: none, the network's raw probabilities.
        mirror: average with the left-right mirrored prediction (MIRROR_KEY), in every stage;
        None: as the model says, and a second stage also as its own index says; False for
        models that say nothing."""
        import torch
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        self.info = info
        self.device = choose_device(device)
        self.mirror = bool((info.metadata.get("inference") or {}).get(MIRROR_KEY, False)) if mirror is None else mirror
        glands = set(info.label_map.values())
        if self.mirror and {MIRRORED_LABEL[g] for g in glands} != glands:
            raise ModelError(f"{info.name}: mirrored inference needs each gland's partner on the other side, "
                             f"model has labels {sorted(glands)}")
        if tile_step_size is None:
            tile_step_size = DEFAULT_TILE_STEP
        if not TILE_STEP_RANGE[0] <= tile_step_size <= TILE_STEP_RANGE[1]:
            raise ValueError(f"tile step must be between {TILE_STEP_RANGE[0]:g} and {TILE_STEP_RANGE[1]:g} "
                             f"(a fraction of the patch), got {tile_step_size}")
        plans_manager = PlansManager(info.plans)
        cfg = plans_manager.get_configuration(info.configuration)
        parameters = []
        for fold in info.folds:
            ckpt = load_checkpoint(info.folder / f"fold_{fold}" / info.checkpoint, trust=trust_model)
            parameters.append(ckpt["network_weights"])
            trainer_name = str(ckpt.get("trainer_name", "nnUNetTrainer"))
        n_in = determine_num_input_channels(plans_manager, cfg, info.dataset_json)
        if n_in != 1:
            raise ModelError(f"model expects {n_in} input channels; GlandSeg gives it one CT")
        n_out = plans_manager.get_label_manager(info.dataset_json).num_segmentation_heads
        network = get_network_from_plans(cfg.network_arch_class_name, cfg.network_arch_init_kwargs,
                                         cfg.network_arch_init_kwargs_req_import, n_in, n_out,
                                         allow_init=True, deep_supervision=False)
        try:
            network.load_state_dict(parameters[0])
        except RuntimeError as exc:
            raise ModelError(f"checkpoint does not match the network in plans.json: {str(exc).splitlines()[0]}") from None
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints a CPU notice on stdout
            self.predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=False,
                                             perform_everything_on_device=self.device == "cuda",
                                             device=torch.device(self.device), verbose=False, allow_tqdm=False)
        self.predictor.manual_initialization(network, plans_manager, cfg, parameters, info.dataset_json,
                                             trainer_name, None)
        self._network = network
        self._patch = list(cfg.patch_size)
        self.prior_weights = dict(info.prior_weights if prior_weights is None else prior_weights)
        # a second stage (GlandSegLib.segmentation.lacrimal) loads with its model: load once, predict
        # many; each stage weights its own glands, stage one the rest
        self._stage_one_weights = weights_for_stage_one(self.prior_weights, info.stages)
        lacrimal = info.stages.get("lacrimal")
        self.lacrimal = GlandPredictor(lacrimal, self.device, trust_model=trust_model, tile_step_size=tile_step_size,
                                       prior_weights=weights_for_stage(self.prior_weights, "lacrimal"),
                                       mirror=mirror if mirror is not None else (True if self.mirror else None)) \
            if lacrimal is not None else None

    def n_tiles(self, shape_zyx: tuple[int, ...]) -> int:
        from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

        padded = [max(s, p) for s, p in zip(shape_zyx, self._patch)]
        steps = compute_steps_for_sliding_window(padded, self._patch, self.predictor.tile_step_size)
        return int(np.prod([len(s) for s in steps])) * len(self.info.folds) * (2 if self.mirror else 1)

    def predict_probabilities(self, crop: sitk.Image, progress: ProgressFn | None = None) -> dict[int, np.ndarray]:
        """Per canonical label (0 = background), its probability map (float32, z-y-x) on `crop`'s grid.

        `crop` must be on the model grid (identity direction, model spacing): its last array
        axis runs from the patient's right to left, so flipping it mirrors the patient.
        """
        data = sitk.GetArrayFromImage(crop).astype(np.float32, copy=False)[None]
        total = self.n_tiles(data.shape[1:])
        done = [0]

        def hook(_module, _inp, _out) -> None:
            done[0] += 1
            if progress is not None:
                progress(min(done[0] / total, 1.0), f"tile {done[0]}/{total}")

        handle = self._network.register_forward_hook(hook)
        try:
            spacing_zyx = list(reversed(crop.GetSpacing()))
            out = self._network_probabilities(data, spacing_zyx)
            if self.mirror:
                flipped = self._network_probabilities(np.ascontiguousarray(data[..., ::-1]), spacing_zyx)
                for canon, p in flipped.items():  # the flipped right gland is the left one
                    out[MIRRORED_LABEL[canon]] += p[..., ::-1]
                    out[MIRRORED_LABEL[canon]] *= 0.5
                del flipped
        finally:
            handle.remove()
        return apply_prior_weights(out, self._stage_one_weights)

    def _network_probabilities(self, data: np.ndarray, spacing_zyx: list[float]) -> dict[int, np.ndarray]:
        """The network's own probabilities per canonical label, before any prior weight."""
        _seg, probs = self.predictor.predict_single_npy_array(data, {"spacing": spacing_zyx}, None, None, True)
        out = {0: np.asarray(probs[0], dtype=np.float32)}
        for value, canon in self.info.label_map.items():
            out[canon] = np.asarray(probs[value], dtype=np.float32)
        ignored = [v for v in range(1, probs.shape[0]) if v not in self.info.label_map]
        if ignored:  # structures that are not glands still compete, as background
            out[0] = out[0] + probs[ignored].sum(axis=0).astype(np.float32)
        return out


def probabilities_to_labels(probs: dict[int, np.ndarray], model_crop: sitk.Image, target: sitk.Image) -> sitk.Image:
    """Labels on `target`'s grid: each gland's probability resampled linearly, then argmax.

    Interpolating probabilities rather than labels gives smooth boundaries on the finer CT
    grid instead of staircase blocks from the coarser model grid.
    """
    return labels_and_max_probability(probs, model_crop, target)[0]


def labels_and_max_probability(probs: dict[int, np.ndarray], model_crop: sitk.Image,
                               target: sitk.Image) -> tuple[sitk.Image, np.ndarray]:
    """probabilities_to_labels, plus the winning probability per voxel (float32, z-y-x, on
    `target`'s grid; 1 outside the model's crop), which the argmax computes anyway: the
    network's certainty, for the uncertainty map. One float32 map of the target at a time."""
    def on_target(p: np.ndarray, outside: float) -> np.ndarray:
        img = sitk.GetImageFromArray(p)
        img.CopyInformation(model_crop)
        return sitk.GetArrayFromImage(sitk.Resample(img, target, sitk.Transform(), sitk.sitkLinear, outside, sitk.sitkFloat32))

    best = on_target(probs[0], 1.0)  # outside the model's crop: certainly background
    labels = np.zeros(best.shape, dtype=np.uint8)
    for canon, p in probs.items():
        if canon == 0:
            continue
        q = on_target(p, 0.0)
        better = q > best
        labels[better] = canon
        np.maximum(best, q, out=best)
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(target)
    return out, best
