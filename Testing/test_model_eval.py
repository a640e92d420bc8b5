"""The shipped model's published metrics are recomputed on a small subset, by the same script."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS
from GlandSegLib.segmentation.inference import GlandPredictor
from GlandSegLib.cohort.metrics import dice
from GlandSegLib.defaultmodel.model_eval import (CARD_HEADING, EVALUATION, HELDOUT_SEED_BASE, card_section, evaluate_openkbp,
                                    evaluate_phantoms, score_case, write_into_model)
from GlandSegLib.defaultmodel.real_ct import (POSITION_REGION_SD, centroids_mm, evaluate_pddca, expert_volumes,
                                             orbit_roof_above_parotid_mm, pddca_truth, position_plausibility,
                                             position_reference)
from GlandSegLib.models.registry import load_model_info


@pytest.fixture(scope="module")
def predictor():
    return GlandPredictor(load_model_info(None), "cpu")


def test_score_case_matches_a_direct_computation():
    a = np.zeros((20, 20, 20), np.uint8)
    a[5:10, 5:10, 5:10] = 3
    b = np.zeros_like(a)
    b[6:11, 5:10, 5:10] = 3
    pa, pb = sitk.GetImageFromArray(a), sitk.GetImageFromArray(b)
    s = score_case(pa, pb, [3])
    assert s["parotid_r"]["dice"] == pytest.approx(dice(a == 3, b == 3))
    assert s["parotid_r"]["hd95_mm"] == pytest.approx(1.0)


def _labelmap(direction, blobs: dict[int, tuple[int, int, int]], size=(40, 40, 40), spacing=(2.0, 3.0, 2.5)):
    """A labelmap with one 3-voxel cube per label, centred on the given (i, j, k) index."""
    arr = np.zeros(tuple(reversed(size)), np.uint8)
    for label, (i, j, k) in blobs.items():
        arr[k - 1:k + 2, j - 1:j + 2, i - 1:i + 2] = label
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin((-30.0, 12.0, 250.0))
    img.SetDirection(direction)
    return img


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1),  # LPS, head first
                                       (-1, 0, 0, 0, -1, 0, 0, 0, 1),  # RAS storage
                                       (1, 0, 0, 0, 1, 0, 0, 0, -1),  # feet first (OpenKBP's)
                                       tuple(sitk.VersorTransform((0.3, 0.2, 1.0), 0.35).GetMatrix())])  # oblique
def test_gland_centres_are_physical_points(direction):
    """A centre is where the gland lies in the patient, whatever the storage: the physical point
    of its voxels' mean index."""
    img = _labelmap(direction, {3: (10, 20, 30), 6: (25, 7, 12)})
    centres = centroids_mm(img)
    assert set(centres) == {"parotid_r", "submandibular_l"}
    for key, idx in (("parotid_r", (10, 20, 30)), ("submandibular_l", (25, 7, 12))):
        assert centres[key] == pytest.approx(img.TransformIndexToPhysicalPoint(idx), abs=0.01)


def test_gland_position_against_the_experts_anatomy():
    """A gland placed at the experts' mean offset from its parotid is inside their region; moved
    4 SDs on one axis it is not; a gland without its parotid outlined is not judged."""
    ref = position_reference()
    assert set(ref) == {g.key for g in GLANDS if g.organ != "parotid"}
    for key, r in ref.items():
        assert r["reference"] == "parotid_" + key[-1] and r["n"] >= 60
        assert 0.85 <= r["experts_inside"] <= 1.0 and 3 < r["experts_distance_mm_median"] < 20
    # the experts' anatomy in LPS: the submandibular gland lies medial, anterior and below the
    # parotid; the lacrimal gland medial, anterior and above it
    sub_r, lac_l = ref["submandibular_r"]["mean_mm"], ref["lacrimal_l"]["mean_mm"]
    assert sub_r[0] > 0 and sub_r[1] < 0 and sub_r[2] < -20 and lac_l[0] < 0 and lac_l[1] < 0 and lac_l[2] > 40
    parotid = [-60.0, 30.0, -100.0]
    at_mean = [p + m for p, m in zip(parotid, sub_r)]
    off = list(at_mean)
    off[1] += 4 * ref["submandibular_r"]["sd_mm"][1]
    found = {"a": {"submandibular_r": at_mean}, "b": {"submandibular_r": off}, "c": {"submandibular_r": at_mean}}
    outlined = {"a": {"parotid_r": parotid}, "b": {"parotid_r": parotid}, "c": {"parotid_l": [60.0, 30.0, -100.0]}}
    row = position_plausibility(found, outlined, ref)["submandibular_r"]
    assert row["n"] == 2 and row["inside_expert_region"] == 1 and row["outside"] == ["b"]
    assert row["distance_mm_median"] == pytest.approx(2 * ref["submandibular_r"]["sd_mm"][1], abs=0.1)
    assert 4 > POSITION_REGION_SD > 2


def test_published_phantom_metrics_are_reproduced(predictor, tmp_path, shared_data):
    published = json.loads((predictor.info.folder / EVALUATION).read_text())["heldout_phantoms"]
    result = evaluate_phantoms(predictor, shared_data / "tcia-hn-labels", tmp_path, limit=1)
    assert result["seeds"] == [HELDOUT_SEED_BASE] and result["split"] == "validation"
    (scan, again), = result["cases"].items()
    first = published["cases"][scan]
    assert set(again) == set(first)
    for g in GLANDS:
        if g.key in first:
            assert again[g.key]["dice"] == pytest.approx(first[g.key]["dice"], abs=0.02), g.key
    # the human reference is the radiographer on the same scan, against the same truth: recomputed
    # here from the two raters' NRRD masks (one scan, so the median is that scan's Dice)
    human = result["human_radiographer_vs_oncologist"]
    direct = _rater_dice(shared_data / "tcia-hn-labels" / "nrrds" / "validation", scan)
    assert set(human) == set(direct) and direct
    for key, d in direct.items():
        assert human[key]["n_cases"] == 1 and human[key]["dice_median"] == pytest.approx(d, abs=1e-3), key


def _rater_dice(split: Path, scan: str) -> dict[str, float]:
    """Dice of the radiographer's mask against the oncologist's, per gland either outlined, read
    straight from the NRRD files (`Parotid-Lt.nrrd`; some cases write `Parotid_Lt.nrrd`)."""
    names = {"lacrimal": "Lacrimal", "parotid": "Parotid", "submandibular": "Submandibular"}
    out = {}
    for g in GLANDS:
        masks = []
        for rater in ("oncologist", "radiographer"):
            files = [f for sep in "-_" for f in (split / rater / scan).rglob(f"{names[g.organ]}{sep}{g.side}t.nrrd")]
            masks.append(sitk.GetArrayFromImage(sitk.ReadImage(str(files[0]))) > 0 if files else None)
        present = [m for m in masks if m is not None]
        if not present:
            continue
        a, b = (m if m is not None else np.zeros_like(present[0]) for m in masks)
        if not (a.any() or b.any()):
            continue  # resected: agreement on absence is not a score
        out[g.key] = 2.0 * float(np.logical_and(a, b).sum()) / float(a.sum() + b.sum())
    return out


def test_card_section_and_checksums_follow_the_evaluation(tmp_path):
    import shutil

    from GlandSegLib.models.registry import load_model_info as load

    folder = tmp_path / "m"
    shutil.copytree(load_model_info(None).folder, folder)
    result = json.loads((folder / EVALUATION).read_text())
    result["openkbp"]["summary"]["parotid_r"]["dice_median"] = 0.123
    result["prior_weights"] = {"5": 5.6, "6": 5.6}
    write_into_model(folder, result)
    card = (folder / "model_card.md").read_text()
    assert card.count(CARD_HEADING) == 1 and "| parotid_r | " in card and "0.123" in card
    assert "submandibular_r x5.6, submandibular_l x5.6" in card  # the card says which weights were measured
    assert card.endswith(card_section(result))
    assert json.loads((folder / EVALUATION).read_text())["openkbp"]["summary"]["parotid_r"]["dice_median"] == 0.123
    assert load(str(folder)).name  # checksums refreshed: the folder still verifies


def test_openkbp_parotids_are_scored(predictor, tmp_path, shared_data):
    folder = shared_data / "openkbp" / "validation-pats"
    published = json.loads((predictor.info.folder / EVALUATION).read_text()).get("openkbp")
    result = evaluate_openkbp(predictor, folder, tmp_path, limit=2, outlines=shared_data / "tcia-hn-labels")
    assert set(result["summary"]) <= {"parotid_r", "parotid_l"} and result["summary"]
    # every gland's volume found is kept and set against the experts' range
    plaus = result["volume_plausibility"]
    assert set(plaus) == {g.key for g in GLANDS}
    for key, v in plaus.items():
        vols = [result["volumes_ml"][p][key] for p in result["volumes_ml"]]
        if "lacrimal" not in key:
            assert v["patients_in_view"] == 2 and v["found"] == sum(x > 0 for x in vols)
        e = v["experts"]
        assert v["inside_expert_range"] == sum(e["p05_ml"] <= x <= e["p95_ml"] for x in vols if x > 0)
    # every gland found is placed against the outlined parotid of its side
    where = result["position_plausibility"]
    for key, v in where.items():
        side = "parotid_" + key[-1]
        beside = [p for p in result["centroids_mm"] if key in result["centroids_mm"][p]
                  and side in result["outlined_parotid_centroids_mm"][p]]
        assert v["n"] == len(beside) and v["inside_expert_region"] + len(v["outside"]) == v["n"]
    # lacrimal glands are counted only where the scan reaches the orbit roof
    roof = result["orbit_roof_above_parotid_mm"]["p95_mm"]
    reaching = [p for p, mm in result["scan_top_above_parotid_mm"].items() if mm is not None and mm >= roof]
    assert plaus["lacrimal_r"]["patients_in_view"] == len(reaching)
    if published:
        for case, scores in result["cases"].items():
            for key, row in scores.items():
                assert row["dice"] == pytest.approx(published["cases"][case][key]["dice"], abs=0.02)


def test_expert_reference_from_the_outlines(shared_data):
    """The TCIA experts' volumes and orbit-roof height, as the issue tracker quotes them."""
    vols = expert_volumes(shared_data / "tcia-hn-labels")
    assert vols["submandibular_r"]["median_ml"] == pytest.approx(9.3, abs=0.05)
    assert vols["submandibular_l"]["p05_ml"] == pytest.approx(6.1, abs=0.05)
    assert vols["lacrimal_r"]["median_ml"] == pytest.approx(0.64, abs=0.01)
    assert vols["parotid_r"]["n"] == 70 and vols["submandibular_r"]["n"] < 70  # resected glands left out
    roof = orbit_roof_above_parotid_mm(shared_data / "tcia-hn-labels")
    assert 30 < roof["median_mm"] < roof["p95_mm"] < 100


def test_pddca_truth_and_published_real_ct_figures(predictor, tmp_path, shared_data):
    """The real planning CT: its outlines land on the CT as documented, and the published
    figures are what the model gives now (measurement only: nothing is tuned on it)."""
    from GlandSegLib.geometry import voxel_volume_ml
    from GlandSegLib.io.images import read_ct

    case = shared_data / "pddca-0522c0001"
    ct = read_ct(case / "ct-dicom").image
    truth = pddca_truth(case, ct)
    counts = np.bincount(sitk.GetArrayViewFromImage(truth).ravel(), minlength=7)
    ml = {g.key: counts[g.label] * voxel_volume_ml(ct) for g in GLANDS if g.organ != "lacrimal"}
    assert ml["parotid_r"] == pytest.approx(11.8, abs=0.1) and ml["submandibular_l"] == pytest.approx(6.7, abs=0.1)
    hu = sitk.GetArrayViewFromImage(ct)[sitk.GetArrayViewFromImage(truth) == 6]
    assert 60 < hu.mean() < 90  # the outlines sit on gland tissue (README: 75 HU), not shifted onto fat or bone
    published = json.loads((predictor.info.folder / EVALUATION).read_text()).get("pddca")
    result = evaluate_pddca(predictor, case, tmp_path)
    assert set(result["glands"]) == {"parotid_r", "parotid_l", "submandibular_r", "submandibular_l"}
    for key, row in result["glands"].items():
        assert row["truth_volume_ml"] == pytest.approx(ml[key], abs=0.05)
        if published:
            assert row["dice"] == pytest.approx(published["glands"][key]["dice"], abs=0.02), key
