"""Training side, for real: raw dataset -> plans -> one short CPU training -> export.

One module-scoped pipeline run on four tiny synthetic cases (about a minute on two cores)
feeds the assertions; the cheap checks (validation, axis order, environment handling)
run on their own. The synthetic cases are blobs, not phantoms, so this file depends only
on the training modules and nnunetv2.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS, IGNORE_LABEL
from GlandSegLib.training.nnunet_env import FOLDER_VARIABLES, NnUNetFolders, nnunet_environment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET_ID = 987
# anisotropic on purpose, and a non-cubic patch: catches any (x, y, z) / (z, y, x) mix-up
SPACING_XYZ = (2.0, 2.0, 3.0)
PATCH_XYZ = (32, 24, 16)
FEATURES = (4, 8, 16)
SHAPE_ZYX = (20, 30, 36)


def blob_case(seed: int, spacing=SPACING_XYZ, shape_zyx=SHAPE_ZYX) -> tuple[sitk.Image, sitk.Image]:
    """A box of soft tissue with six spheres, right glands at smaller x (LPS), like the real ones."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape_zyx)
    ct = rng.normal(30, 15, shape_zyx).astype(np.float32)
    ct[:, :, :2] = -1000
    lab = np.zeros(shape_zyx, np.uint8)
    level = {"lacrimal": 0.8, "parotid": 0.5, "submandibular": 0.2}
    radius = {"lacrimal": 2.0, "parotid": 4.0, "submandibular": 3.0}
    for g in GLANDS:
        cx = (0.3 if g.side == "R" else 0.7) * shape_zyx[2] + rng.integers(-1, 2)
        cy = 0.5 * shape_zyx[1] + rng.integers(-1, 2)
        cz = level[g.organ] * shape_zyx[0]
        r = radius[g.organ]
        m = ((x - cx) ** 2 + (y - cy) ** 2) / r**2 + (z - cz) ** 2 / (r * 2 / 3) ** 2 <= 1
        lab[m] = g.label
        ct[m] = 70 + 8 * g.label
    ct_img = sitk.GetImageFromArray(ct)
    ct_img.SetSpacing(spacing)
    ct_img.SetOrigin((-30.0, -40.0, -25.0))
    lab_img = sitk.GetImageFromArray(lab)
    lab_img.CopyInformation(ct_img)
    return ct_img, lab_img


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Write (one case partly unsupervised: ignore label), plan, preprocess, train 1 epoch x 2
    iterations, resume 1 more epoch, export, then fine-tune a new training from the export."""
    from GlandSegLib.models.export import export_model
    from GlandSegLib.training.dataset import write_raw_dataset
    from GlandSegLib.training.planning import plan_and_preprocess
    from GlandSegLib.training.trainer import train

    env_before = {k: os.environ.get(k) for k in FOLDER_VARIABLES}
    work = tmp_path_factory.mktemp("nnunet_work")
    folders = NnUNetFolders.under(work)
    lines: list[str] = []
    with nnunet_environment(folders, n_proc=1, n_proc_da=0, torch_threads=2):
        cases = [(f"blob{i}", *blob_case(i)) for i in range(4)]
        partial = sitk.GetArrayFromImage(cases[3][2])
        partial[:, :, -8:][partial[:, :, -8:] == 0] = IGNORE_LABEL  # a region this case does not supervise
        partial_img = sitk.GetImageFromArray(partial)
        partial_img.CopyInformation(cases[3][2])
        cases[3] = (cases[3][0], cases[3][1], partial_img)
        raw = write_raw_dataset(cases, folders.raw, DATASET_ID, "TrainTest", SPACING_XYZ, "blobs for tests",
                                         ignore_label=True)
        plan = plan_and_preprocess(DATASET_ID, "3d_compact", SPACING_XYZ, PATCH_XYZ, FEATURES, 2, progress=lines.append)
    # training passes its folders explicitly, outside any context
    first = train(DATASET_ID, "3d_compact", "all", epochs=1, iterations_per_epoch=2, device="cpu",
                           progress=lines.append, folders=folders, torch_threads=2)
    resumed = train(DATASET_ID, "3d_compact", "all", epochs=2, iterations_per_epoch=2, device="cpu",
                             continue_training=True, progress=lines.append, folders=folders, torch_threads=2)
    dest = export_model(resumed.output_folder, work / "models" / "test-model", "test-model", fold="all",
                               card={"summary": "test", "training": {"epochs": 2, "iterations_per_epoch": 2}})
    resumed_weights = work / "resumed_checkpoint_final.pth"  # the fine-tuning below writes the same fold folder
    shutil.copy2(resumed.checkpoint, resumed_weights)
    tuned = train(DATASET_ID, "3d_compact", "all", epochs=1, iterations_per_epoch=1, device="cpu",
                           progress=lines.append, folders=folders, torch_threads=2,
                           initial_weights=dest / "fold_all" / "checkpoint_final.pth")
    return types.SimpleNamespace(raw=raw, plan=plan, first=first, resumed=resumed, tuned=tuned, dest=dest, lines=lines,
                                 resumed_weights=resumed_weights,
                                 folders=folders, env_before=env_before)


def test_nnunet_lists_the_cases_without_forking(tmp_path, monkeypatch):
    """dataset.json lists every case, so nnU-Net never looks for them with its fork()ed
    Pool(12): forking a process that runs threads (torch, Slicer, pytest) can leave a child
    stuck on a lock forever, which once hung this suite in plan_and_preprocess."""
    import nnunetv2.utilities.utils as nnunet_utils

    from GlandSegLib.training.dataset import write_raw_dataset

    def no_pool(*a, **k):
        raise AssertionError("nnU-Net listed the cases with a forked Pool")

    monkeypatch.setattr(nnunet_utils, "Pool", no_pool)
    cases = [(f"blob{i}", *blob_case(i)) for i in (2, 0, 1)]
    raw = write_raw_dataset(cases, tmp_path, 986, "ListTest", SPACING_XYZ, "blobs")
    found = nnunet_utils.get_filenames_of_train_images_and_targets(str(raw))
    assert list(found) == ["blob0", "blob1", "blob2"]
    for case_id, entry in found.items():
        assert entry["images"] == [str(raw / "imagesTr" / f"{case_id}_0000.nii.gz")]
        assert entry["label"] == str(raw / "labelsTr" / f"{case_id}.nii.gz")
        assert Path(entry["label"]).is_file() and Path(entry["images"][0]).is_file()


def test_raw_dataset_layout_and_labels(pipeline):
    raw = pipeline.raw
    ds = json.loads((raw / "dataset.json").read_text())
    assert ds["channel_names"] == {"0": "CT"}
    assert list(ds["labels"].items()) == ([("background", 0)] + [(g.tg263, g.label) for g in sorted(GLANDS, key=lambda g: g.label)]
                                          + [("ignore", IGNORE_LABEL)])
    assert ds["numTraining"] == 4
    assert ds["glandseg"]["crop"]["spacing_mm"] == list(SPACING_XYZ)
    assert ds["glandseg"]["crop"]["direction"] == "identity"
    for i in range(4):
        assert (raw / "imagesTr" / f"blob{i}_0000{ds['file_ending']}").is_file()
        lab = sitk.ReadImage(str(raw / "labelsTr" / f"blob{i}{ds['file_ending']}"))
        assert lab.GetSpacing() == pytest.approx(SPACING_XYZ)
        assert set(np.unique(sitk.GetArrayViewFromImage(lab))) == {0, 1, 2, 3, 4, 5, 6} | ({IGNORE_LABEL} if i == 3 else set())


def test_plans_have_compact_configuration(pipeline):
    plans = json.loads(pipeline.plan.plans_file.read_text())
    cfg = plans["configurations"]["3d_compact"]
    assert cfg["inherits_from"] == "3d_fullres"
    # plans order: array (z, y, x) permuted by transpose_forward
    tf = plans["transpose_forward"]
    assert cfg["spacing"] == [list(SPACING_XYZ[::-1])[i] for i in tf]
    assert cfg["patch_size"] == [list(PATCH_XYZ[::-1])[i] for i in tf]
    assert cfg["batch_size"] == 2
    arch = cfg["architecture"]["arch_kwargs"]
    assert arch["features_per_stage"] == list(FEATURES)
    assert arch["n_stages"] == len(FEATURES) == len(arch["strides"]) == len(arch["kernel_sizes"])
    assert len(arch["n_conv_per_stage_decoder"]) == len(FEATURES) - 1
    for axis, edge in enumerate(cfg["patch_size"]):
        assert edge % int(np.prod([s[axis] for s in arch["strides"]])) == 0
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    assert "normalization_schemes" not in cfg  # inherited, not overridden
    pre = pipeline.folders.preprocessed / pipeline.plan.dataset_name / cfg["data_identifier"]
    assert cfg["data_identifier"] == "nnUNetPlans_3d_compact" and pre.is_dir()
    assert not (pipeline.folders.preprocessed / pipeline.plan.dataset_name / "nnUNetPlans_3d_fullres").exists()


def test_training_ran_and_resumed(pipeline):
    first, resumed = pipeline.first, pipeline.resumed
    assert first.output_folder.name == "nnUNetTrainerNoMirroring__nnUNetPlans__3d_compact"
    assert first.epochs_run == 1 and first.final_train_loss is not None and np.isfinite(first.final_train_loss)
    assert resumed.resumed_from == "checkpoint_final.pth"
    assert resumed.epochs_run == 1  # epoch 2 only
    assert any("epoch 2/2" in line for line in pipeline.lines)


def test_fine_tuning_starts_from_given_weights(pipeline):
    import torch

    assert pipeline.tuned.resumed_from is None and pipeline.tuned.epochs_run == 1
    assert any(line.startswith("network initialised from") for line in pipeline.lines)
    start = torch.load(pipeline.dest / "fold_all" / "checkpoint_final.pth", weights_only=True)["network_weights"]
    after = torch.load(pipeline.tuned.checkpoint, weights_only=False)["network_weights"]
    # one step away from the exported weights, not a fresh random network (that would differ by ~100%)
    moved = sum(float((after[k].float() - v.float()).abs().sum()) for k, v in start.items())
    size = sum(float(v.float().abs().sum()) for v in start.values())
    assert 0 < moved / size < 0.2


def test_fine_tuning_refuses_weights_of_another_network(pipeline, tmp_path):
    from GlandSegLib.training.trainer import train
    from GlandSegLib.models.registry import load_model_info

    shipped = load_model_info(None)  # a 5-stage network; the test plans build a 3-stage one
    with pytest.raises(ValueError, match="does not fit this network"):
        train(DATASET_ID, "3d_compact", "all", epochs=1, iterations_per_epoch=1, device="cpu",
                       progress=lambda m: None, folders=pipeline.folders, torch_threads=2,
                       initial_weights=shipped.folder / "fold_all" / shipped.checkpoint)


def test_exported_checkpoint_is_stripped_and_safe(pipeline):
    import torch

    ck_path = pipeline.dest / "fold_all" / "checkpoint_final.pth"
    ck = torch.load(ck_path, map_location="cpu", weights_only=True)
    assert set(ck) == {"network_weights", "trainer_name", "inference_allowed_mirroring_axes", "init_args"}
    assert "optimizer_state" not in ck and "grad_scaler_state" not in ck and "logging" not in ck
    assert ck["trainer_name"] == "nnUNetTrainerNoMirroring"
    assert ck["inference_allowed_mirroring_axes"] is None
    assert ck["init_args"] == {"configuration": "3d_compact", "fold": "all"}
    assert all(isinstance(v, torch.Tensor) for v in ck["network_weights"].values())
    assert all(v.dtype == torch.float32 for v in ck["network_weights"].values() if v.is_floating_point())
    # the weights are the trained ones
    full = torch.load(pipeline.resumed_weights, map_location="cpu", weights_only=False)
    for k, v in full["network_weights"].items():
        assert torch.equal(ck["network_weights"][k], v.float())
    # shared tensors stay shared: no bigger than the weights themselves (plus pickle overhead)
    unique = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in ck["network_weights"].values()}
    assert ck_path.stat().st_size < sum(unique.values()) * 1.1 + 200_000


def test_export_index_and_checksums(pipeline):
    from GlandSegLib.models.registry import METADATA as INDEX_FILE
    from GlandSegLib.models.registry import file_table, verify_checksums

    dest = pipeline.dest
    index = json.loads((dest / INDEX_FILE).read_text())
    # the training's file list stays behind; the labels and crop recipe travel
    exported = json.loads((dest / "dataset.json").read_text())
    assert "dataset" not in exported and "glandseg" in exported
    assert "dataset" in json.loads((pipeline.raw / "dataset.json").read_text())
    assert index["format"] == 1 and index["name"] == "test-model"
    assert index["configuration"] == "3d_compact" and index["folds"] == ["all"]
    assert index["trainer"] == "nnUNetTrainerNoMirroring" and index["plans"] == "nnUNetPlans"
    assert index["spacing_mm"] == list(SPACING_XYZ)
    assert index["patch_size"] == list(PATCH_XYZ)
    assert index["crop"] == {"locator": "fast", "spacing_mm": list(SPACING_XYZ)}
    assert index["training"] == {"epochs": 2, "iterations_per_epoch": 2}
    expected = {"dataset.json", "plans.json", "fold_all/checkpoint_final.pth", "model_card.md"}
    assert set(index["files"]) == expected
    assert index["files"] == file_table(dest)
    verify_checksums(dest, index)
    ds = json.loads((dest / "dataset.json").read_text())
    assert [ds["labels"][g.tg263] for g in GLANDS] == [g.label for g in GLANDS]
    assert [k for k in ds["labels"] if k != "background"] == [g.tg263 for g in sorted(GLANDS, key=lambda g: g.label)] + ["ignore"]
    plans = json.loads((dest / "plans.json").read_text())
    assert "3d_compact" in plans["configurations"] and "continue_training" not in plans
    assert "Glnd_Lacrimal_R" in (dest / "model_card.md").read_text()
    # no temporary folders left beside the model
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]


def test_export_detects_tampering_and_refuses_overwrite(pipeline, tmp_path):
    import shutil

    from GlandSegLib.errors import ModelError
    from GlandSegLib.models.export import export_model
    from GlandSegLib.models.registry import METADATA, verify_checksums

    copy = tmp_path / "copy"
    shutil.copytree(pipeline.dest, copy)
    with (copy / "plans.json").open("a") as f:
        f.write(" ")
    with pytest.raises(ModelError, match="changed"):
        verify_checksums(copy, json.loads((copy / METADATA).read_text()))
    with pytest.raises(FileExistsError):
        export_model(pipeline.resumed.output_folder, pipeline.dest, "again")


TORCHVISION_PROBE = """
import importlib.abc, json, sys
attempts = []
class Watch(importlib.abc.MetaPathFinder):  # records every attempt, even one that fails
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torchvision", "timm"):
            attempts.append(name)
        return None
sys.meta_path.insert(0, Watch())
if __name__ == "__main__":
    import numpy as np, SimpleITK as sitk
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.training.nnunet_env import NnUNetFolders
    from GlandSegLib.training.trainer import train
    work, dataset_id, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    result = train(dataset_id, "3d_compact", "all", epochs=1, iterations_per_epoch=1, device="cpu",
                   progress=lambda m: None, folders=NnUNetFolders.under(work), torch_threads=1)
    info = load_model_info(model)
    crop = sitk.GetImageFromArray(np.zeros(info.patch_size, np.float32))
    crop.SetSpacing(info.spacing_xyz)
    probs = GlandPredictor(info, "cpu").predict_probabilities(crop)
    print(json.dumps({"attempts": sorted(set(attempts)), "loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torchvision", "timm")),
                      "trained": result.checkpoint.is_file(), "labels": sorted(probs)}))
"""


def test_torchvision_never_imported(pipeline, tmp_path):
    """Training and inference never import torchvision or timm (see GlandSegLib.training.trainer).
    Checked in a fresh interpreter, so no other test's imports can hide an import or skip the
    check: one more short training on this module's preprocessed data, and inference of the
    exported model, while an import hook records every attempt, even one that fails."""
    import subprocess

    work = NnUNetFolders.under(tmp_path / "probe")
    shutil.copytree(pipeline.folders.raw, work.raw)
    shutil.copytree(pipeline.folders.preprocessed, work.preprocessed)
    script = tmp_path / "probe.py"
    script.write_text(TORCHVISION_PROBE)
    env = dict(os.environ, nnUNet_n_proc_DA="0", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    for k in FOLDER_VARIABLES:
        env.pop(k, None)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "probe"), str(DATASET_ID), str(pipeline.dest)],
                          capture_output=True, text=True, env=env, cwd=str(REPO), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["trained"] and report["labels"] == [0, 1, 2, 3, 4, 5, 6]  # both really ran
    assert report["attempts"] == [] and report["loaded"] == [], report


def test_environment_restored(pipeline):
    assert {k: os.environ.get(k) for k in FOLDER_VARIABLES} == pipeline.env_before


# ----------------------------------------------------------------- cheap checks


def test_nnunet_environment_switches_and_restores(tmp_path, monkeypatch):
    from nnunetv2 import paths

    monkeypatch.delenv("nnUNet_raw", raising=False)
    # an older nnunetv2 keeps plain strings in module globals: simulate one
    fake = types.ModuleType("nnunetv2._glandseg_fake_paths")
    fake.nnUNet_raw = "/stale"  # type: ignore[attr-defined]
    fake.default_num_processes = 8  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    with nnunet_environment(tmp_path / "a", n_proc=3, torch_threads=0) as a:
        assert os.fspath(paths.nnUNet_raw) == str(a.raw) == os.environ["nnUNet_raw"]
        assert fake.nnUNet_raw == str(a.raw) and fake.default_num_processes == 3
        with nnunet_environment(tmp_path / "b", torch_threads=0) as b:
            assert os.fspath(paths.nnUNet_preprocessed) == str(b.preprocessed)
            assert fake.nnUNet_raw == str(b.raw)
        assert os.fspath(paths.nnUNet_raw) == str(a.raw) and fake.nnUNet_raw == str(a.raw)
        assert a.raw.is_dir() and a.preprocessed.is_dir() and a.results.is_dir()
    assert "nnUNet_raw" not in os.environ
    assert fake.nnUNet_raw == "/stale" and fake.default_num_processes == 8


def test_write_raw_dataset_refuses_off_recipe_cases(tmp_path):
    from GlandSegLib.training.dataset import write_raw_dataset

    ct, lab = blob_case(0)
    with pytest.raises(ValueError, match="crop spacing"):
        write_raw_dataset([("a", ct, lab)], tmp_path, 11, "X", (1.0, 1.0, 1.0), "d")
    tilted = sitk.Image(ct)
    tilted.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    tilted_lab = sitk.Image(lab)
    tilted_lab.CopyInformation(tilted)
    with pytest.raises(ValueError, match="identity"):
        write_raw_dataset([("a", tilted, tilted_lab)], tmp_path, 12, "X", SPACING_XYZ, "d")
    bad = sitk.Image(lab)
    bad[0, 0, 0] = 9
    with pytest.raises(ValueError, match="label values"):
        write_raw_dataset([("a", ct, bad)], tmp_path, 13, "X", SPACING_XYZ, "d")
    partial = sitk.Image(lab)
    partial[0, 0, 0] = IGNORE_LABEL
    with pytest.raises(ValueError, match="label values"):  # only a dataset declared partial may carry it
        write_raw_dataset([("a", ct, partial)], tmp_path, 15, "X", SPACING_XYZ, "d")
    write_raw_dataset([("a", ct, lab)], tmp_path, 14, "X", SPACING_XYZ, "d")
    with pytest.raises(FileExistsError):
        write_raw_dataset([("a", ct, lab)], tmp_path, 14, "X", SPACING_XYZ, "d")
    with pytest.raises(FileExistsError, match="already used"):
        write_raw_dataset([("a", ct, lab)], tmp_path, 14, "Y", SPACING_XYZ, "d")


def test_axis_order_and_topology():
    from GlandSegLib.training.planning import plans_order_to_xyz, unet_topology, xyz_to_plans_order

    assert xyz_to_plans_order([1, 2, 3], [0, 1, 2]) == [3, 2, 1]
    assert xyz_to_plans_order([1, 2, 3], [2, 0, 1]) == [1, 3, 2]
    for tf, tb in (([0, 1, 2], [0, 1, 2]), ([2, 0, 1], [1, 2, 0]), ([1, 0, 2], [1, 0, 2])):
        assert plans_order_to_xyz(xyz_to_plans_order([1, 2, 3], tf), tb) == [1, 2, 3]
    kernels, strides = unet_topology([2.0, 2.0, 2.0], [48, 48, 48], 5)
    assert strides == [[1, 1, 1]] + [[2, 2, 2]] * 4 and kernels == [[3, 3, 3]] * 5
    kernels, strides = unet_topology([5.0, 1.0, 1.0], [16, 64, 64], 4)
    assert kernels[0] == [1, 3, 3] and strides[1] == [1, 2, 2]  # thick slices: pool in-plane first
    with pytest.raises(ValueError):
        unet_topology([2.0, 2.0, 2.0], [20, 20, 20], 5)
