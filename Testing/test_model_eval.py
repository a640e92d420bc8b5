"""The shipped model's published metrics are recomputed on a small subset, by the same script."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS
from GlandSegLib.inference import GlandPredictor
from GlandSegLib.metrics import dice
from GlandSegLib.model_eval import HELDOUT_SEED_BASE, evaluate_openkbp, evaluate_phantoms, score_case
from GlandSegLib.models import load_model_info

EVALUATION = "evaluation.json"


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


def test_published_phantom_metrics_are_reproduced(predictor, tmp_path):
    published = json.loads((predictor.info.folder / EVALUATION).read_text())
    result = evaluate_phantoms(predictor, 1, tmp_path)
    assert result["seeds"] == [HELDOUT_SEED_BASE]
    first = published["heldout_phantoms"]["cases"][0]
    again = result["cases"][0]
    for g in GLANDS:
        if g.key in first:
            assert again[g.key]["dice"] == pytest.approx(first[g.key]["dice"], abs=0.02), g.key


def test_openkbp_parotids_are_scored(predictor, tmp_path, shared_data):
    folder = shared_data / "openkbp" / "validation-pats"
    published = json.loads((predictor.info.folder / EVALUATION).read_text()).get("openkbp")
    result = evaluate_openkbp(predictor, folder, tmp_path, limit=2)
    assert set(result["summary"]) <= {"parotid_r", "parotid_l"} and result["summary"]
    if published:
        for case, scores in result["cases"].items():
            for key, row in scores.items():
                assert row["dice"] == pytest.approx(published["cases"][case][key]["dice"], abs=0.02)
