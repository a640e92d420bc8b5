"""`glandseg segment` paths users take: --box, a model whose labels come in another order,
and a left/right swap reaching report.json, report.csv and the terminal.

All runs segment the shipped sample CT inside one user box (the glands of the sample plus a
margin: six 64^3 tiles instead of 36, a few seconds each) through the command line
(GlandSegLib.cli.main, in-process), with the single-stage `glandseg-v2` (stage one of the
shipped glandseg-v3, so no lacrimal stage) as it is, and installed twice more as a team
would install its own nnU-Net results folder:

* team order: the original team's label order ({1: Glande_Lacrim_D, 2: Glande_Lacrim_G,
  3: Glnd_Submand_L, 4: Parotid_R, 5: Glnd_Submand_R, 6: Parotid_L}), its output channels
  permuted to match: the same network, so the same glands must come out, in GlandSeg's
  order. A pipeline that took label values by position would give other labels.
* mirrored names: the same weights with every right/left name exchanged: a model that
  mislabels sides, the predecessor's failure. Its result is the plain result with left and
  right exchanged, and the swap warning must reach the report and the terminal.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.cli import main
from GlandSegLib.cohort.metrics import dice
from GlandSegLib.glands import BY_LABEL, GLANDS

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"
BASE_MODEL = REPO / "Resources" / "models" / "glandseg-v2"
# LPS mm: the sample's parotid and submandibular glands (x -63..72, y -33..27, z -45..45) with
# a margin, centred on the patient's midline (x ~ 7); z reaches below the scan (-135.96) and
# must be clipped to it
BOX = (-83.0, -80.0, -150.0, 97.0, 46.0, 62.0)
TEAM_ORDER = {1: "Glande_Lacrim_D", 2: "Glande_Lacrim_G", 3: "Glnd_Submand_L", 4: "Parotid_R", 5: "Glnd_Submand_R", 6: "Parotid_L"}
TEAM_TO_CANONICAL = {1: 1, 2: 2, 3: 6, 4: 3, 5: 5, 6: 4}
MIRROR = {1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5}
SWAP = "possible left/right swap"


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


def results_folder(root: Path, names: dict[int, str], channel_of: dict[int, int]) -> Path:
    """An nnU-Net results folder as a team's training leaves it (no GlandSeg index), built from
    glandseg-v2: output channel v holds what glandseg-v2's channel channel_of[v] held, and is named names[v]."""
    import torch

    folder = root / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_compact"
    (folder / "fold_all").mkdir(parents=True)
    ds = json.loads((BASE_MODEL / "dataset.json").read_text())
    ignore = ds["labels"].get("ignore")
    ds["labels"] = {"background": 0, **{names[v]: v for v in sorted(names)}, **({"ignore": ignore} if ignore else {})}
    (folder / "dataset.json").write_text(json.dumps(ds))
    shutil.copy2(BASE_MODEL / "plans.json", folder / "plans.json")
    ckpt = torch.load(BASE_MODEL / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=True)
    order = [0] + [channel_of[v] for v in range(1, 7)]
    weights = ckpt["network_weights"]
    seg = [k for k in weights if k.startswith("decoder.seg_layers.")]
    assert seg and all(weights[k].shape[0] == 7 for k in seg)  # background + six glands
    for k in seg:
        weights[k] = weights[k][order].clone()
    torch.save(ckpt, folder / "fold_all" / "checkpoint_final.pth")
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from GlandSegLib.models.install import install_model
    from GlandSegLib.models.registry import load_model_info

    root = tmp_path_factory.mktemp("paths")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GLANDSEG_HOME", str(root / "home"))
        team = install_model(results_folder(root / "team", TEAM_ORDER, TEAM_TO_CANONICAL), "team-v0")
        mirror_names = {g.label: BY_LABEL[MIRROR[g.label]].tg263 for g in GLANDS}
        mirrored = install_model(results_folder(root / "mirrored", mirror_names, {v: v for v in range(1, 7)}), "mirrored-v0")
        team_map = load_model_info(str(team)).label_map
        out = {}
        for name, model in (("plain", BASE_MODEL), ("team", team), ("mirrored", mirrored)):
            target = root / name
            rc, stdout, stderr = run_cli("segment", str(SAMPLE), "-o", str(target), "--model", str(model), "--device", "cpu",
                                         "--progress", "none", "--box", *[str(v) for v in BOX])
            out[name] = SimpleNamespace(rc=rc, out=stdout, err=stderr, folder=target,
                                        report=json.loads((target / "report.json").read_text()) if rc == 0 else None,
                                        csv=list(csv.DictReader(io.StringIO((target / "report.csv").read_text()))) if rc == 0 else None,
                                        labels=sitk.GetArrayFromImage(sitk.ReadImage(str(target / "glands_labelmap.nii.gz"))) if rc == 0 else None)
    out["team_label_map"] = team_map
    return out


def found(run) -> list:
    return [g for g in GLANDS if (run.labels == g.label).any()]


def test_all_three_runs_succeed_and_find_the_parotids_and_submandibular_glands(runs):
    for name in ("plain", "team", "mirrored"):
        assert runs[name].rc == 0, (name, runs[name].err)
    keys = {g.key for g in found(runs["plain"])}
    assert {"parotid_r", "parotid_l", "submandibular_r", "submandibular_l"} <= keys, keys
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(SAMPLE_LABELS)))
    for label in (3, 4):  # inside a user box the model still finds the right organ
        d = dice(runs["plain"].labels == label, truth == label)
        assert d is not None and d >= 0.6, (label, d)


def test_the_box_is_used_as_given_clipped_to_the_scan(runs):
    ct = sitk.ReadImage(str(SAMPLE))
    report = runs["plain"].report
    lo, hi = np.array(BOX[:3]), np.array(BOX[3:])
    # the sample is stored with identity direction: its bounds are origin - half a voxel .. last voxel + half
    sp, origin, size = np.array(ct.GetSpacing()), np.array(ct.GetOrigin()), np.array(ct.GetSize())
    bounds_lo, bounds_hi = origin - sp / 2, origin + (size - 0.5) * sp
    assert np.allclose(report["crop_box"]["lower_lps_mm"], np.maximum(lo, bounds_lo), atol=0.01)
    assert np.allclose(report["crop_box"]["upper_lps_mm"], np.minimum(hi, bounds_hi), atol=0.01)
    assert report["crop_box"]["lower_lps_mm"][2] > BOX[2]  # clipped, not taken blindly
    assert report["crop_box"]["method"] == "user" and report["locator"] == "user box"
    assert report["crop_box"]["midline_x_mm"] == pytest.approx((BOX[0] + BOX[3]) / 2, abs=0.01)
    # nothing is segmented outside the box: every labelled voxel lies inside it
    labels = runs["plain"].labels
    idx = np.argwhere(labels > 0)[:, ::-1].astype(float)
    pts = origin + idx * sp
    assert len(pts) and np.all(pts >= lo - sp) and np.all(pts <= hi + sp)


@pytest.mark.parametrize("box,fragment", [
    ((400.0, 400.0, 400.0, 500.0, 500.0, 500.0), "outside the image"),
    ((10.0, 10.0, 10.0, 0.0, 20.0, 20.0), "min < max"),
])
def test_a_box_outside_the_image_or_inverted_is_a_one_line_error(tmp_path, box, fragment):
    rc, _, err = run_cli("segment", str(SAMPLE), "-o", str(tmp_path / "out"), "--model", str(BASE_MODEL), "--device", "cpu",
                         "--progress", "none", "--box", *[str(v) for v in box])
    lines = err.strip().splitlines()
    assert rc == 4, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], err
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_model_with_the_team_label_order_gives_the_same_glands(runs):
    assert runs["team_label_map"] == TEAM_TO_CANONICAL
    plain, team = runs["plain"], runs["team"]
    assert not [w for w in team.report["warnings"] if "does not segment" in w or "ignored" in w]
    for g in GLANDS:
        a, b = plain.labels == g.label, team.labels == g.label
        assert a.any() == b.any(), g.name
        if a.any():  # the same network: identical up to float rounding in the permuted channels
            assert dice(a, b) >= 0.999, (g.name, dice(a, b))
    assert [r["label"] for r in team.report["glands"]] == [1, 2, 3, 4, 5, 6]


def test_a_mirrored_result_is_the_plain_one_with_sides_exchanged(runs):
    plain, mirrored = runs["plain"], runs["mirrored"]
    for g in found(plain):
        d = dice(mirrored.labels == MIRROR[g.label], plain.labels == g.label)
        assert d is not None and d >= 0.999, (g.name, d)


def test_the_swap_warning_reaches_report_csv_and_terminal(runs):
    mirrored = runs["mirrored"]
    rows = {r["label"]: r for r in mirrored.report["glands"]}
    flagged = [g for g in found(mirrored) if g.organ != "lacrimal"]  # stage one's lacrimal voxels are few and unreliable
    assert {g.label for g in flagged} == {3, 4, 5, 6}
    csv_rows = {int(r["label"]): r for r in mirrored.csv}
    for g in flagged:
        row = rows[g.label]
        swaps = [w for w in row["warnings"] if SWAP in w]
        assert len(swaps) == 2, (g.name, row["warnings"])  # against the midline and against its partner
        other = "left" if g.side == "R" else "right"
        assert swaps[0].startswith(f"{g.name} lies on the patient's {other} of the midline")
        assert row["laterality_ok"] is False
        assert all(w in mirrored.report["warnings"] for w in swaps)
        assert SWAP in csv_rows[g.label]["warnings"] and g.name in csv_rows[g.label]["warnings"]
        for w in swaps:  # on the terminal, one line each
            assert f"warning: {w}" in mirrored.err.splitlines(), w
    assert all(rows[g.label]["laterality_ok"] for g in GLANDS if not (mirrored.labels == g.label).any())


def test_a_correct_result_carries_no_swap_warning_anywhere(runs):
    plain = runs["plain"]
    assert all(r["laterality_ok"] for r in plain.report["glands"])
    texts = [json.dumps(plain.report), (plain.folder / "report.csv").read_text(), plain.out, plain.err]
    assert not any("swap" in t for t in texts)
    # right glands at smaller LPS x than their partners, in the report's own centroids
    rows = {r["label"]: r for r in plain.report["glands"]}
    for right, left in ((3, 4), (5, 6)):
        assert rows[right]["centroid_lps_mm"][0] < plain.report["crop_box"]["midline_x_mm"] < rows[left]["centroid_lps_mm"][0]


def test_the_terminal_summary_lists_every_gland_with_the_reported_volume(runs):
    plain = runs["plain"]
    lines = plain.out.splitlines()
    assert lines[0] == f"wrote {plain.folder}"
    for row in plain.report["glands"]:
        line = next(ln for ln in lines if ln.strip().startswith(row["name"]))
        if row["voxels"]:
            assert f" {row['volume_ml']:.2f} ml" in line and f" {row['hu_mean']:.1f} " in line, line
        else:
            assert "not found" in line, line
