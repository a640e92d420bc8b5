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
    # the human reference is the radiographer on the same scan, against the same truth
    human = result["human_radiographer_vs_oncologist"]
    assert set(human) <= {g.key for g in GLANDS} and all(0 <= h["dice_median"] <= 1 for h in human.values())


def test_card_section_and_checksums_follow_the_evaluation(tmp_path):
    import shutil

    from GlandSegLib.models.registry import load_model_info as load

    folder = tmp_path / "m"
    shutil.copytree(load_model_info(None).folder, folder)
    result = json.loads((folder / EVALUATION).read_text())
    result["openkbp"]["summary"]["parotid_r"]["dice_median"] = 0.123
    write_into_model(folder, result)
    card = (folder / "model_card.md").read_text()
    assert card.count(CARD_HEADING) == 1 and "| parotid_r | " in card and "0.123" in card
    assert card.endswith(card_section(result))
    assert json.loads((folder / EVALUATION).read_text())["openkbp"]["summary"]["parotid_r"]["dice_median"] == 0.123
    assert load(str(folder)).name  # checksums refreshed: the folder still verifies


def test_openkbp_parotids_are_scored(predictor, tmp_path, shared_data):
    folder = shared_data / "openkbp" / "validation-pats"
    published = json.loads((predictor.info.folder / EVALUATION).read_text()).get("openkbp")
    result = evaluate_openkbp(predictor, folder, tmp_path, limit=2)
    assert set(result["summary"]) <= {"parotid_r", "parotid_l"} and result["summary"]
    plaus = result["lacrimal_plausibility"]  # no lacrimal truth on OpenKBP: found counts and volumes
    assert set(plaus) == {g.name for g in GLANDS if g.organ == "lacrimal"}
    assert all(v["patients"] == 2 and 0 <= v["found"] <= 2 for v in plaus.values())
    if published and "lacrimal_plausibility" in published:
        for name, v in plaus.items():  # the first two patients' findings are part of the published counts
            assert v["found"] <= published["lacrimal_plausibility"][name]["found"]
    if published:
        for case, scores in result["cases"].items():
            for key, row in scores.items():
                assert row["dice"] == pytest.approx(published["cases"][case][key]["dice"], abs=0.02)
