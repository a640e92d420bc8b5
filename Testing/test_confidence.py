"""Per-gland confidence from the network's own probabilities, the review order, and the
uncertainty map: on synthetic probabilities whose answer is known, and on the sample CT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS
from GlandSegLib.segmentation.confidence import (model_fingerprint, reference_for, relative_confidence, review_order,
                                                 segment_confidence, uncertainty_percent)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"


def _grid(shape_zyx, spacing, origin=(0.0, 0.0, 0.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    img = sitk.Image([int(s) for s in shape_zyx[::-1]], sitk.sitkUInt8)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _ball(grid: sitk.Image, centre, radius: float) -> np.ndarray:
    """Voxels of `grid` whose centres lie within `radius` mm of a physical point."""
    z, y, x = np.indices(sitk.GetArrayViewFromImage(grid).shape)
    idx = np.stack([x.ravel(), y.ravel(), z.ravel()], 1).astype(float)
    d = np.array(grid.GetDirection()).reshape(3, 3)
    pts = np.asarray(grid.GetOrigin()) + (idx * np.asarray(grid.GetSpacing())) @ d.T
    return (np.linalg.norm(pts - np.asarray(centre), axis=1) <= radius).reshape(z.shape)


def _image(arr: np.ndarray, grid: sitk.Image) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(grid)
    return img


def _labels_and_probs(p_inside: float, p_shell: float, shell_mm: float = 0.0, prob_spacing=(1.0, 1.0, 1.0)):
    """A ball of label 3 on a 1 mm grid; its probability on another grid: p_inside in the ball,
    p_shell in a shell of shell_mm around it, 0 beyond."""
    lab_grid = _grid((40, 40, 40), (1.0, 1.0, 1.0))
    labels = _image(_ball(lab_grid, (20, 20, 20), 8).astype(np.uint8) * 3, lab_grid)
    n = [int(40 / s) for s in prob_spacing[::-1]]
    p_grid = _grid(n, prob_spacing, origin=tuple(s / 2 - 0.5 for s in prob_spacing))
    p = np.where(_ball(p_grid, (20, 20, 20), 8), p_inside, np.where(_ball(p_grid, (20, 20, 20), 8 + shell_mm), p_shell, 0.0))
    return labels, _image(p.astype(np.float32), p_grid)


def test_a_certain_segment_scores_one():
    labels, prob = _labels_and_probs(1.0, 0.0)
    c = segment_confidence(prob, labels, 3)
    assert c["expected_dice"] == pytest.approx(1.0) and c["mean_probability"] == pytest.approx(1.0)
    assert c["boundary_uncertain_share"] == 0.0
    assert segment_confidence(prob, labels, 4) is None  # absent gland: no confidence


def test_expected_dice_is_what_the_formula_says():
    """Inside p = 0.8, a 2 mm shell at p = 0.3: expected Dice = 2*0.8*|S| / (|S| + 0.8*|S| + 0.3*|shell|)."""
    labels, prob = _labels_and_probs(0.8, 0.3, shell_mm=2.0)
    s = int((sitk.GetArrayViewFromImage(labels) == 3).sum())
    shell = int((sitk.GetArrayViewFromImage(prob) == np.float32(0.3)).sum())
    c = segment_confidence(prob, labels, 3)
    assert c["expected_dice"] == pytest.approx(2 * 0.8 * s / (s + 0.8 * s + 0.3 * shell), abs=1e-3)
    assert c["mean_probability"] == pytest.approx(0.8, abs=1e-6)
    # the segment's outer boundary shell lies at p = 0.3 (certain enough not to count), its inner at 0.8
    assert c["boundary_uncertain_share"] == pytest.approx(0.5, abs=0.1)


def test_uncertain_probabilities_rank_below_certain_ones_on_a_coarser_grid():
    """As in the pipeline: the network's grid (2 mm) is coarser than the labels' (1 mm), so even
    a certain ball loses a little at its interpolated rim (0.87 for p = 1 here)."""
    certain = segment_confidence(*_labels_and_probs(0.98, 0.02, 4.0, (2.0, 2.0, 2.0))[::-1], 3)
    unsure = segment_confidence(*_labels_and_probs(0.55, 0.45, 4.0, (2.0, 2.0, 2.0))[::-1], 3)
    assert certain["expected_dice"] > 0.8
    assert unsure["expected_dice"] < certain["expected_dice"] - 0.2
    assert unsure["mean_probability"] < certain["mean_probability"]
    assert unsure["boundary_uncertain_share"] > certain["boundary_uncertain_share"]


def test_confidence_is_the_share_of_the_models_training_segments_it_was_less_sure_of():
    ref = {"median": 0.85, "sd": 0.02}
    assert relative_confidence(0.85, ref) == 0.5
    assert relative_confidence(0.85 - 0.02 * 1.645, ref) == pytest.approx(0.05, abs=0.001)
    assert relative_confidence(0.70, ref) < relative_confidence(0.80, ref) < relative_confidence(0.90, ref)
    # the same expected Dice means less for a gland the network is usually surer of
    assert relative_confidence(0.80, {"median": 0.90, "sd": 0.02}) < relative_confidence(0.80, {"median": 0.67, "sd": 0.02})


def test_the_shipped_model_has_a_reference_for_every_gland_and_no_other_weights_get_it():
    from GlandSegLib.models.registry import load_model_info

    info = load_model_info(None)
    ref = reference_for(info.metadata)
    assert ref is not None and ref["model"] == info.name
    assert set(ref["glands"]) == {g.key for g in GLANDS}
    for v in ref["glands"].values():
        assert 0 < v["median"] < 1 and v["sd"] > 0 and v["n"] >= 5
    from GlandSegLib.defaultmodel.confidence_reference import summarise

    assert summarise(ref["expected_dice"]) == ref["glands"]  # the shipped numbers follow from the values kept
    # OpenKBP outlines only the parotids: its lacrimal and submandibular segments do not count
    assert ref["glands"]["lacrimal_r"]["n"] == len(ref["expected_dice"]["tcia_test_phantoms"]["lacrimal_r"])
    other = json.loads(json.dumps(info.metadata))
    other["files"]["fold_all/checkpoint_final.pth"] = "0" * 64
    assert model_fingerprint(other) != model_fingerprint(info.metadata) and reference_for(other) is None
    mirrored = dict(info.metadata, inference={"mirror_left_right": True})  # same weights, run another way
    assert model_fingerprint(mirrored) != model_fingerprint(info.metadata) and reference_for(mirrored) is None


def test_review_order_puts_the_least_confident_written_segment_first():
    rows = [{"label": 3, "confidence": 0.9, "status": "found"}, {"label": 5, "confidence": 0.6, "status": "found"},
            {"label": 1, "confidence": 0.7, "status": "found, cut by the field of view"},
            {"label": 6, "confidence": 0.1, "status": "rejected"}, {"label": 2, "confidence": None, "status": "not found"}]
    assert review_order(rows) == [5, 1, 3]


def test_uncertainty_is_one_minus_the_winning_probability_in_percent():
    u = uncertainty_percent(np.array([1.0, 0.5, 1 / 7, 0.994], np.float32))
    assert u.dtype == np.uint8 and u.tolist() == [0, 50, 86, 1]


@pytest.fixture(scope="module")
def sample_result(tmp_path_factory):
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.segmentation.pipeline import segment

    out = tmp_path_factory.mktemp("conf") / "out"
    return segment(SAMPLE, out, predictor=GlandPredictor(load_model_info(None), "cpu"), uncertainty=True)


def test_sample_glands_carry_a_confidence_and_a_review_order(sample_result):
    report = json.loads((sample_result.outdir / "report.json").read_text())
    rows = report["glands"]
    assert [r["label"] for r in rows] == [g.label for g in GLANDS]  # the canonical order stays
    assert report["confidence_reference"]["model"] == report["model"]["name"]
    for r in rows:
        assert r["status"] == "found", r
        assert 0 <= r["confidence"] <= 1 and 0.5 < r["expected_dice"] <= 1 and 0.5 < r["mean_probability"] <= 1
        assert 0 <= r["boundary_uncertain_share"] <= 1
    order = report["review_order"]
    assert sorted(order) == [g.label for g in GLANDS]
    confs = [next(r["confidence"] for r in rows if r["label"] == lab) for lab in order]
    assert confs == sorted(confs)


def test_uncertainty_map_lies_on_the_ct_grid_and_peaks_at_gland_boundaries(sample_result):
    from scipy import ndimage

    out = sample_result.outdir
    report = json.loads((out / "report.json").read_text())
    assert report["uncertainty_map"]["file"] == "uncertainty.nii.gz"
    u_img, ct = sitk.ReadImage(str(out / "uncertainty.nii.gz")), sitk.ReadImage(str(SAMPLE))
    assert u_img.GetPixelID() == sitk.sitkUInt8 and u_img.GetSize() == ct.GetSize()
    assert np.allclose(u_img.GetOrigin(), ct.GetOrigin()) and np.allclose(u_img.GetDirection(), ct.GetDirection())
    u = sitk.GetArrayFromImage(u_img)
    lab = sitk.GetArrayFromImage(sample_result.labels)
    assert u.max() <= 100 and u.max() > 20
    for g in GLANDS:
        m = lab == g.label
        core = ndimage.binary_erosion(m, iterations=1)
        rim = ndimage.binary_dilation(m) & ~core
        if core.sum() > 20:
            assert u[rim].mean() > u[core].mean(), g.name
    # outside the head box the network never looked: 0 there (labels are background)
    box = report["crop_box"]
    far = ct.TransformPhysicalPointToIndex([box["lower_lps_mm"][0] - 5, box["lower_lps_mm"][1] + 50, box["lower_lps_mm"][2] + 100])
    assert u[far[2], far[1], far[0]] == 0


def test_cli_prints_the_review_order_and_drops_a_stale_uncertainty_map(sample_result):
    """`glandseg segment` over the folder of a run with --uncertainty, without it: the old map
    goes (it would describe labels that are no longer there); the terminal summary lists the
    glands least confident first, each with its volume, the experts' range and its status."""
    import subprocess
    import sys

    from GlandSegLib.cli.main import build_parser

    out = sample_result.outdir
    assert build_parser().parse_args(["segment", "ct.nii", "-o", "x", "--uncertainty"]).uncertainty
    assert (out / "uncertainty.nii.gz").is_file()
    proc = subprocess.run([sys.executable, "-m", "GlandSegLib.cli", "segment", str(SAMPLE), "-o", str(out), "--device", "cpu",
                           "--overwrite", "--progress", "none"], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "uncertainty.nii.gz").exists()
    report = json.loads((out / "report.json").read_text())
    assert "uncertainty_map" not in report
    names = {r["label"]: r["name"] for r in report["glands"]}
    lines = [ln for ln in proc.stdout.splitlines() if any(n in ln for n in names.values())]
    assert [next(lab for lab, n in names.items() if n in ln) for ln in lines] == report["review_order"]
    for ln, lab in zip(lines, report["review_order"]):
        row = next(r for r in report["glands"] if r["label"] == lab)
        assert ln.rstrip().endswith("found") and f"{row['volume_ml']:.2f} ml" in ln and f"{row['confidence']:.2f}" in ln
        assert f"{row['expert_volume_ml']['p5']:.2f}-{row['expert_volume_ml']['p95']:.2f} ml" in ln


def test_a_second_stage_run_another_way_is_another_model_for_the_reference():
    """A lacrimal stage asking for the mirrored pass changes its probabilities with the same
    checkpoints: the shipped reference must not apply to it, nor to the plain stage of a model
    shipped mirrored."""
    import dataclasses

    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import MIRROR_KEY

    info = load_model_info(None)
    stage = info.stages["lacrimal"]

    def with_stage(inference: dict | None):
        meta = {k: v for k, v in stage.metadata.items() if k != "inference"}
        return dataclasses.replace(info, stages={"lacrimal": dataclasses.replace(
            stage, metadata={**meta, "inference": inference} if inference else meta)})

    plain, mirrored = with_stage(None), with_stage({MIRROR_KEY: True})
    assert model_fingerprint(plain) == model_fingerprint(info.metadata)  # plain stages: the index says it all
    assert model_fingerprint(mirrored) != model_fingerprint(plain)
    assert reference_for(info) is not None
    other = plain if stage.metadata.get("inference") else mirrored
    assert reference_for(other) is None
