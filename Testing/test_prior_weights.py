"""Per-gland prior weights: Bayes' prior correction on the probabilities, how a model carries
them, and how prior_calibration fits them (on synthetic probabilities whose answer is known,
and the real network on the sample CT)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.errors import ModelError
from GlandSegLib.segmentation.prior_weights import apply_prior_weights, weights_for_stage, weights_for_stage_one

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"


def _probs(rng, n=1000, classes=(0, 3, 5)) -> dict[int, np.ndarray]:
    raw = rng.random((len(classes), n)).astype(np.float32) ** 3
    raw /= raw.sum(axis=0)
    return {c: raw[i].copy() for i, c in enumerate(classes)}


def test_weights_follow_bayes_rule_and_keep_probabilities():
    rng = np.random.default_rng(0)
    p = _probs(rng)
    before = {k: v.copy() for k, v in p.items()}
    out = apply_prior_weights(p, {5: 4.0, 3: 0.5, 1: 9.0})  # 1 is not in the maps: ignored
    total = before[0] + 0.5 * before[3] + 4.0 * before[5]
    np.testing.assert_allclose(out[5], 4.0 * before[5] / total, rtol=1e-5)
    np.testing.assert_allclose(out[3], 0.5 * before[3] / total, rtol=1e-5)
    np.testing.assert_allclose(out[0], before[0] / total, rtol=1e-5)
    np.testing.assert_allclose(sum(out.values()), 1.0, rtol=1e-5)
    won_before = np.argmax(np.stack([before[c] for c in (0, 3, 5)]), axis=0) == 2
    won_after = np.argmax(np.stack([out[c] for c in (0, 3, 5)]), axis=0) == 2
    assert won_after.sum() > won_before.sum() and not (won_before & ~won_after).any()  # grows, never moves


def test_no_weights_leave_the_maps_untouched():
    p = _probs(np.random.default_rng(1))
    ids = {k: id(v) for k, v in p.items()}
    copy = {k: v.copy() for k, v in p.items()}
    for weights in ({}, {5: 1.0}):
        out = apply_prior_weights(p, weights)
        assert {k: id(v) for k, v in out.items()} == ids
        for k in p:
            assert np.array_equal(out[k], copy[k])


def test_a_stage_applies_only_its_own_glands_weights():
    assert weights_for_stage({1: 2.0, 2: 2.0, 5: 8.0, 6: 8.0, 3: 0.7}, "lacrimal") == {1: 2.0, 2: 2.0}
    assert weights_for_stage_one({1: 2.0, 2: 2.0, 5: 8.0, 6: 8.0, 3: 0.7}, ["lacrimal"]) == {5: 8.0, 6: 8.0, 3: 0.7}
    assert weights_for_stage_one({1: 2.0, 5: 8.0}, []) == {1: 2.0, 5: 8.0}  # a single-stage model keeps every weight


def _model_copy(tmp_path: Path, weights) -> Path:
    src = REPO / "Resources" / "models" / "glandseg-v4"
    dst = tmp_path / "m"
    shutil.copytree(src, dst)
    meta = json.loads((dst / "glandseg-model.json").read_text())
    meta["prior_weights"] = weights
    (dst / "glandseg-model.json").write_text(json.dumps(meta))
    return dst


@pytest.mark.parametrize("weights, message", [({"7": 2.0}, "not a gland"), ({"5": 0}, "positive"),
                                              ({"5": "x"}, "not label: number"), ([2.0], "must map"),
                                              ({"5": float("inf")}, "finite")])
def test_a_model_with_bad_weights_is_refused_at_load(tmp_path, weights, message):
    from GlandSegLib.models.registry import load_model_info

    with pytest.raises(ModelError, match=message):
        load_model_info(str(_model_copy(tmp_path, weights)))


def test_weights_are_part_of_the_models_identity(tmp_path):
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.confidence import model_fingerprint

    plain = load_model_info("glandseg-v4")
    weighted = load_model_info(str(_model_copy(tmp_path, {"5": 8, "6": 8})))
    assert weighted.prior_weights == {5: 8.0, 6: 8.0} and plain.prior_weights == {}
    # the same checkpoints with other weights are another model for the confidence reference
    assert model_fingerprint(weighted.metadata) != model_fingerprint(plain.metadata)


def _sample_model_crop(info) -> sitk.Image:
    """The sample CT's head crop on `info`'s model grid, as the pipeline cuts it."""
    from GlandSegLib.geometry import crop, model_grid, resample_to
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.segmentation.pipeline import find_head

    ct = read_ct(SAMPLE).image
    box = find_head(ct, "fast")
    return resample_to(crop(ct, box), model_grid(box, info.spacing_xyz))


def test_the_network_grows_a_weighted_gland_on_the_sample(tmp_path):
    """The real network on the sample crop: weighting the submandibular glands grows exactly
    them, and the lacrimal stage gets only the lacrimal weights."""
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    info = load_model_info(str(_model_copy(tmp_path, {"5": 8, "6": 8, "1": 3})))
    model_crop = _sample_model_crop(info)
    weighted = GlandPredictor(info, "cpu")
    raw = GlandPredictor(info, "cpu", prior_weights={})
    assert weighted.lacrimal.prior_weights == {1: 3.0} and raw.lacrimal.prior_weights == {}
    pw, pr = weighted.predict_probabilities(model_crop), raw.predict_probabilities(model_crop)

    def count(p, label):
        stack = np.stack([p[k] for k in sorted(p)])
        return int((np.asarray(sorted(p))[np.argmax(stack, axis=0)] == label).sum())

    for label in (5, 6):
        assert count(pw, label) > 1.1 * count(pr, label) > 0
    for label in (3, 4):
        assert count(pw, label) <= count(pr, label)  # only lose voxels the submandibular glands took
    np.testing.assert_allclose(sum(pw.values()), 1.0, atol=1e-4)


def test_lacrimal_weights_reach_the_lacrimal_stage_only(tmp_path):
    """A two-stage model's lacrimal weights belong to its lacrimal stage. Stage one's lacrimal
    voxels are erased when the stage's glands are merged, so weighting them in stage one
    would only take tissue from the other glands: with a large left lacrimal weight, stage
    one's weak lacrimal probability beside a submandibular gland once emptied that gland."""
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    info = load_model_info(str(_model_copy(tmp_path, {"1": 30, "2": 30, "5": 2})))
    assert "lacrimal" in info.stages
    model_crop = _sample_model_crop(info)
    weighted = GlandPredictor(info, "cpu")
    only_submandibular = GlandPredictor(info, "cpu", prior_weights={5: 2.0})
    assert weighted.prior_weights == {1: 30.0, 2: 30.0, 5: 2.0} and weighted.lacrimal.prior_weights == {1: 30.0, 2: 30.0}
    pw, ps = weighted.predict_probabilities(model_crop), only_submandibular.predict_probabilities(model_crop)
    for label in pw:
        np.testing.assert_array_equal(pw[label], ps[label])


# ----------------------------------------------------------------------------- prior_calibration


def _ball_case(balls: list[tuple[int, int, float, float | None]], width: int = 60) -> dict:
    """A case of glands as balls on one line (label, centre x, prob_radius, truth_radius or
    None when not outlined), each with a probability falling off linearly with distance:
    above 0.5 inside prob_radius, near 0.1 four voxels further."""
    shape = (40, 40, width)
    z, y, x = np.indices(shape)
    probs = np.zeros((len(balls) + 1,) + shape, np.float32)
    truth = np.zeros(shape, np.uint8)
    for k, (label, cx, prob_radius, truth_radius) in enumerate(balls, start=1):
        d = np.sqrt((z - 20) ** 2 + (y - 20) ** 2 + (x - cx) ** 2)
        probs[k] = np.clip(0.5 - (d - prob_radius) * 0.1, 0.0, 1.0)
        if truth_radius is not None:
            truth[d <= truth_radius] = label
    probs[0] = 1.0 - probs[1:].sum(axis=0)
    return {"patient": "synthetic", "labels": [0] + [b[0] for b in balls], "probs": probs.astype(np.float16),
            "voxel_ml": 0.008, "truth": truth, "top_above_parotid_mm": 0.0, "roof_mm": 67.5, "lacrimal": {}}


def test_calibration_grows_an_undersized_gland_to_the_experts_median_and_fits_dice_where_outlined():
    from GlandSegLib.defaultmodel.prior_calibration import curve, fit, gland_volumes_and_dice

    # a right parotid (3, outlined) and right submandibular gland (5, not outlined), both too small
    cases = [_ball_case([(3, 15, 6.0, 8.0), (5, 45, 6.0, None)]) for _ in range(3)]
    ball_ml = lambda r: 4 / 3 * np.pi * r ** 3 * 0.008  # noqa: E731
    experts = {g: {"median_ml": ball_ml(8.0)} for g in ("submandibular_r", "submandibular_l", "lacrimal_r", "lacrimal_l",
                                                          "parotid_r", "parotid_l")}
    fitted = fit(cases, experts)
    w_sub = float(fitted["weights"]["5"])
    assert "6" not in fitted["weights"]  # no left gland in the probabilities: nothing to fit, its weight stays 1
    raw = gland_volumes_and_dice(cases[0], "submandibular", 1.0)["submandibular_r"]["volume_ml"]
    grown = gland_volumes_and_dice(cases[0], "submandibular", w_sub)["submandibular_r"]["volume_ml"]
    assert raw < 0.6 * experts["submandibular_r"]["median_ml"]
    assert abs(np.log(grown / experts["submandibular_r"]["median_ml"])) < 0.15
    # the parotid is outlined: its weight maximises Dice, which a larger ball than the 0.5 contour needs
    rows = curve(cases, "parotid")
    best = max(rows, key=lambda r: r["parotid_r"]["dice_median"])
    assert float(fitted["weights"]["3"]) == best["weight"] > 1.0
    assert best["parotid_r"]["dice_median"] > rows[[r["weight"] for r in rows].index(1.0)]["parotid_r"]["dice_median"]
    assert "1" not in fitted["weights"]  # no lacrimal stage probabilities: nothing to fit, weight stays 1


def test_each_side_gets_the_weight_that_brings_its_own_gland_to_the_experts_median():
    """Two submandibular glands, the left one given less probability by the network: a common
    weight would leave one side off the experts' median; per side, each reaches it, and the
    undersized side gets the larger weight."""
    from GlandSegLib.defaultmodel.prior_calibration import fit, gland_volumes_and_dice

    case = _ball_case([(5, 18, 6.0, None), (6, 58, 4.0, None)], width=80)  # right at 6 voxels, left at 4
    target = 4 / 3 * np.pi * 8.0 ** 3 * 0.008
    experts = {g: {"median_ml": target} for g in ("submandibular_r", "submandibular_l", "lacrimal_r", "lacrimal_l",
                                                    "parotid_r", "parotid_l")}
    fitted = fit([case], experts)
    w_r, w_l = float(fitted["weights"]["5"]), float(fitted["weights"]["6"])
    assert w_l > w_r > 1.0
    found = gland_volumes_and_dice(case, "submandibular", {5: w_r, 6: w_l})
    for key in ("submandibular_r", "submandibular_l"):
        assert abs(np.log(found[key]["volume_ml"] / target)) < 0.15, (key, found[key])
    for row in fitted["curves"]["submandibular"]:  # any common weight misses one side
        gaps = [abs(np.log(max(row[k]["volume_ml_median"], 1e-6) / target)) for k in ("submandibular_r", "submandibular_l")]
        assert max(gaps) > 0.15, row


def test_calibration_counts_what_the_pipeline_would_segment():
    """The fit's shortcut (one organ's glands against their strongest competitor) gives the
    same glands as the pipeline's way: prior weights on the probabilities, argmax, largest
    component per gland."""
    from GlandSegLib.defaultmodel.prior_calibration import gland_volumes_and_dice
    from GlandSegLib.segmentation.postprocess import keep_largest_component

    rng = np.random.default_rng(3)
    labels = [0, 1, 2, 3, 4, 5, 6]
    raw = ndimage_smooth(rng.random((7, 24, 28, 32)).astype(np.float32))
    raw[0] *= 2.0
    raw /= raw.sum(axis=0)
    truth = (np.argmax(raw, axis=0) == 5).astype(np.uint8) * 5
    case = {"labels": labels, "probs": raw.astype(np.float16), "voxel_ml": 0.008, "truth": truth, "lacrimal": {}}
    p32 = case["probs"].astype(np.float32)
    for w5, w6 in ((0.5, 0.5), (1.0, 1.0), (4.0, 4.0), (2.0, 8.0), (8.0, 0.5)):  # powers of two: exact in float32
        fast = gland_volumes_and_dice(case, "submandibular", {5: w5, 6: w6})
        probs = apply_prior_weights({k: p32[i].copy() for i, k in enumerate(labels)}, {5: w5, 6: w6})
        lab = np.asarray(labels, np.uint8)[np.argmax(np.stack([probs[k] for k in labels]), axis=0)]
        img = sitk.GetImageFromArray(lab)
        kept = sitk.GetArrayFromImage(keep_largest_component(img))
        for g, key in ((5, "submandibular_r"), (6, "submandibular_l")):
            assert fast[key]["volume_ml"] == pytest.approx((kept == g).sum() * 0.008), (w5, w6, key)
        hit = ((kept == 5) & (truth == 5)).sum()
        assert fast["submandibular_r"]["dice"] == pytest.approx(2 * hit / ((kept == 5).sum() + (truth == 5).sum()))


def ndimage_smooth(a: np.ndarray) -> np.ndarray:
    """Blobs rather than noise: each class map smoothed, so glands have components."""
    from scipy import ndimage

    return np.stack([ndimage.gaussian_filter(c, 2.0) ** 4 for c in a])
