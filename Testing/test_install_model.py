"""Model archives are untrusted: zip slip, links, bombs and tampering are refused or detected."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
import torch

from GlandSegLib.models import install
from GlandSegLib.errors import ModelError, OutputExistsError
from GlandSegLib.glands import GLANDS
from GlandSegLib.models.install import install_model, installed_models_dir, remove_model
from GlandSegLib.models.registry import load_model_info


def _model_folder(root: Path, *, optimizer: bool = True) -> Path:
    """A minimal nnU-Net results folder as nnU-Net writes it (optimizer state included)."""
    folder = root / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    labels = {"background": 0, **{g.tg263: g.label for g in GLANDS}}
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    (folder / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {"spacing": [2.0, 2.0, 2.0], "patch_size": [48, 48, 48]}}}))
    ckpt = {"network_weights": {"w": torch.ones(3)}, "trainer_name": "nnUNetTrainerNoMirroring",
            "init_args": {"configuration": "3d_fullres", "fold": 0}, "inference_allowed_mirroring_axes": None}
    if optimizer:
        ckpt["optimizer_state"] = {"state": {0: {"momentum_buffer": torch.zeros(1000)}}}
    torch.save(ckpt, folder / "fold_0" / "checkpoint_final.pth")
    return folder


def _zip(folder: Path, zip_path: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
        for info, data in extra:
            zf.writestr(info, data)
    return zip_path


def test_nnunet_results_folder_installs_with_stripped_checkpoint_and_checksums(tmp_path):
    src = _model_folder(tmp_path)
    target = install_model(src, "teammodel")
    assert target == installed_models_dir() / "teammodel"
    ckpt = torch.load(target / "fold_0" / "checkpoint_final.pth", weights_only=True)
    assert "optimizer_state" not in ckpt and torch.equal(ckpt["network_weights"]["w"], torch.ones(3))
    info = load_model_info("teammodel")
    assert info.configuration == "3d_fullres" and info.folds == ["0"]
    assert set(info.metadata["files"]) == {"dataset.json", "plans.json", "fold_0/checkpoint_final.pth"}
    with pytest.raises(OutputExistsError):
        install_model(src, "teammodel")
    remove_model("teammodel")
    assert not target.exists()


def test_zip_installs(tmp_path):
    src = _model_folder(tmp_path / "m")
    target = install_model(_zip(src, tmp_path / "team.zip"))
    assert target.name == "team" and load_model_info("team").label_map == {g.label: g.label for g in GLANDS}


def test_tampered_installed_model_is_detected(tmp_path):
    target = install_model(_model_folder(tmp_path), "m1")
    plans = target / "plans.json"
    plans.write_text(plans.read_text().replace("48", "64"))
    with pytest.raises(ModelError, match="changed since the model was installed"):
        load_model_info("m1")


@pytest.mark.parametrize("entry", ["../evil.txt", "/tmp/evil_abs.txt", "a/../../evil2.txt", "C:/evil.txt"])
def test_zip_slip_is_refused_and_nothing_is_written_outside(tmp_path, entry):
    src = _model_folder(tmp_path / "m")
    z = _zip(src, tmp_path / "slip.zip", [(entry, b"owned")])
    with pytest.raises(ModelError, match="refused"):
        install_model(z)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil_abs.txt").exists()
    assert not (installed_models_dir().parent / "evil.txt").exists()
    assert [p.name for p in installed_models_dir().iterdir()] == []


def test_symlink_entries_are_refused(tmp_path):
    src = _model_folder(tmp_path / "m")
    link = zipfile.ZipInfo("nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = _zip(src, tmp_path / "link.zip", [(link, b"/etc/passwd")])
    with pytest.raises(ModelError, match="symbolic link"):
        install_model(z)


def test_zip_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(install, "MAX_UNPACKED_BYTES", 5 * 2**20)
    src = _model_folder(tmp_path / "m")
    z = _zip(src, tmp_path / "bomb.zip", [("filler.bin", b"\0" * (20 * 2**20))])
    assert z.stat().st_size < 2**20  # compresses to almost nothing
    with pytest.raises(ModelError, match="unpack"):
        install_model(z)


def test_unsafe_checkpoint_in_a_model_is_refused(tmp_path):
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    src = _model_folder(tmp_path)
    ck = src / "fold_0" / "checkpoint_final.pth"
    torch.save({"network_weights": {}, "evil": Payload()}, ck)
    with pytest.raises(ModelError, match="trust-model"):
        install_model(src, "evil")
    assert not (tmp_path / "ran").exists()
    assert not (installed_models_dir() / "evil").exists()


def test_not_a_model_and_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a readable zip"):
        install_model(tmp_path / "x.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no nnU-Net model"):
        install_model(tmp_path / "empty")


def test_every_model_the_repository_ships_still_verifies():
    """A shipped model's files (card included) are checksummed: an edit without a refreshed file
    table makes the model refuse to load, for users and for training that starts from it."""
    from GlandSegLib.models.registry import REPO_ROOT

    folders = sorted(p.parent for p in (REPO_ROOT / "Resources" / "models").glob("*/glandseg-model.json"))
    assert len(folders) >= 2
    for folder in folders:
        assert load_model_info(str(folder)).folder == folder
