"""Checkpoints are loaded without running code from them."""

import os

import numpy as np
import pytest
import torch

from GlandSegLib.models.checkpoint import load_checkpoint
from GlandSegLib.errors import ModelError


class _Payload:
    """Unpickling this creates a file: the classic pickle attack."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {"w": torch.zeros(2)}, "extra": _Payload(str(marker))}, path)
    with pytest.raises(ModelError) as err:
        load_checkpoint(path)
    assert not marker.exists()
    assert "system" in str(err.value) and "--trust-model" in str(err.value)


def test_trusting_a_model_is_explicit(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "c.pth"
    torch.save({"network_weights": {}, "extra": _Payload(str(marker))}, path)
    load_checkpoint(path, trust=True)
    assert marker.exists()  # that is what --trust-model means, hence the warning in its help


def test_a_stock_nnunet_checkpoint_loads_safely(tmp_path):
    """What nnU-Net saves: tensors, numpy scalars in the log, a torch.device, plain containers."""
    ckpt = {
        "network_weights": {"conv.weight": torch.randn(2, 1, 3, 3, 3)},
        "optimizer_state": {"state": {}, "param_groups": [{"lr": 0.01}]},
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5), np.float32(0.6)], "epoch_end_timestamps": [1.0]},
        "_best_ema": np.float64(0.7),
        "current_epoch": 3,
        "init_args": {"plans": {}, "configuration": "3d_fullres", "fold": 0, "dataset_json": {}, "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainerNoMirroring",
        "inference_allowed_mirroring_axes": None,
    }
    path = tmp_path / "c.pth"
    torch.save(ckpt, path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["network_weights"]["conv.weight"], ckpt["network_weights"]["conv.weight"])
    assert loaded["trainer_name"] == "nnUNetTrainerNoMirroring"


@pytest.mark.parametrize("content", [b"", b"garbage" * 10])
def test_corrupt_checkpoints_get_a_clear_error(tmp_path, content):
    path = tmp_path / "c.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="corrupt|not an nnU-Net"):
        load_checkpoint(path)


def test_a_checkpoint_without_weights_is_refused(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"something": torch.zeros(1)}, path)
    with pytest.raises(ModelError, match="network_weights"):
        load_checkpoint(path)
