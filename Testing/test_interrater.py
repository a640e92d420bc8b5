"""Oncologist vs radiographer agreement on the TCIA outlines: the human ceiling for the glands.

The per-case rows are checked against metrics computed directly on the full-size masks read
with SimpleITK (not through phantom.py's cropped reader), and medians over a few scans
against the ranges known for human raters (field notes: Dice lacrimal ~0.7, parotid and
submandibular ~0.87; HD95 2.5-4.9 mm; surface Dice 0.88-0.93).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.defaultmodel import interrater
from GlandSegLib.glands import BY_KEY, GLANDS
from GlandSegLib.cohort.metrics import SURFACE_TOLERANCE_MM, dice, hd95, surface_dice
from GlandSegLib.names import match_gland
from GlandSegLib.defaultmodel.phantom import list_outline_cases

from conftest import REPO

# 0522c0659 names its files with underscores; in TCGA-CV-7243 only the oncologist outlined the
# right submandibular gland; in TCGA-CV-A6JO both left both submandibular glands out (resected).
DIRECT_CASES = ("0522c0659", "TCGA-CV-7243")
SUBSET = ("0522c0014", "0522c0519", "0522c0576", "TCGA-CV-5978")


@pytest.fixture(scope="module")
def tcia(shared_data):
    root = shared_data / "tcia-hn-labels"
    if not root.is_dir():
        pytest.skip(f"TCIA outline set not found at {root}")
    return root


@pytest.fixture(scope="module")
def cases(tcia) -> dict:
    return {c.name: c for c in list_outline_cases(tcia, "all")}


def full_masks(case_dir, rater: str) -> tuple[dict[int, np.ndarray], tuple[float, float, float]]:
    """The six glands, full size, read straight from the files (not through phantom.py)."""
    folder = case_dir.parent.parent / rater / case_dir.name / "segmentations"
    out, spacing = {}, None
    for f in sorted(folder.glob("*.nrrd")):
        g = match_gland(f.stem)
        if g is not None:
            img = sitk.ReadImage(str(f))
            out[g.label] = sitk.GetArrayFromImage(img) > 0
            spacing = tuple(float(v) for v in img.GetSpacing()[::-1])
    return out, spacing


def gland_box(*masks: np.ndarray) -> tuple[slice, ...]:
    """All glands' joint bounding box (plus 5 voxels): metrics there equal those on the full grid."""
    union = np.any(masks, axis=0)
    idx = [np.flatnonzero(union.any(axis=tuple(j for j in range(3) if j != k))) for k in range(3)]
    return tuple(slice(max(int(i[0]) - 5, 0), int(i[-1]) + 6) for i in idx)


@pytest.mark.parametrize("name", DIRECT_CASES)
def test_rows_match_a_direct_computation(cases, name):
    rows = {r["gland"]: r for r in interrater.case_rows(cases[name])}
    a, sp = full_masks(cases[name], "oncologist")
    b, _ = full_masks(cases[name], "radiographer")
    assert set(a) == set(b) == {g.label for g in GLANDS}  # every file found, whatever its spelling
    label = GLANDS[3].label  # one pair on the full 512 x 512 x N grid, the rest on the glands' box
    assert rows[GLANDS[3].key]["hd95_mm"] == pytest.approx(hd95(a[label], b[label], sp), abs=1e-9)
    box = gland_box(*a.values(), *b.values())
    a, b = {k: v[box] for k, v in a.items()}, {k: v[box] for k, v in b.items()}
    for g in GLANDS:
        ma, mb = a[g.label], b[g.label]
        if not ma.any() and not mb.any():
            assert g.key not in rows  # absent for both raters: no score
            continue
        r = rows[g.key]
        assert r["dice"] == pytest.approx(dice(ma, mb), abs=1e-12)
        assert r["surface_dice"] == pytest.approx(surface_dice(ma, mb, sp, SURFACE_TOLERANCE_MM[g.organ]), abs=1e-12)
        expected = hd95(ma, mb, sp)
        assert (r["hd95_mm"] is None) if expected is None else r["hd95_mm"] == pytest.approx(expected, abs=1e-9)
        assert r["volume_ml_oncologist"] == pytest.approx(ma.sum() * np.prod(sp) / 1000, abs=1e-3)
    if name == "TCGA-CV-7243":
        r = rows["submandibular_r"]
        assert r["only_in"] == "oncologist" and r["dice"] == 0.0 and r["hd95_mm"] is None and r["surface_dice"] == 0.0


def test_glands_nobody_outlined_are_skipped(cases):
    keys = {r["gland"] for r in interrater.case_rows(cases["TCGA-CV-A6JO"])}
    assert keys == {"lacrimal_r", "lacrimal_l", "parotid_r", "parotid_l"}


def test_medians_over_a_few_scans_are_those_of_human_raters(cases):
    rows = interrater.agreement(cases=[cases[n] for n in SUBSET])
    summary = interrater.summarise(rows)
    assert set(summary) == {g.key for g in GLANDS}
    plausible_dice = {"lacrimal": (0.4, 0.9), "parotid": (0.75, 0.95), "submandibular": (0.7, 0.97)}
    for key, s in summary.items():
        organ = BY_KEY[key].organ
        assert 1 <= s["n_cases"] <= len(SUBSET)
        lo, hi = plausible_dice[organ]
        assert lo < s["dice_median"] < hi, (key, s)
        assert 0.5 < s["hd95_mm_median"] < 12.0, (key, s)
        assert 0.6 < s["surface_dice_median"] <= 1.0, (key, s)
        assert s["dice_q25"] <= s["dice_median"] <= s["dice_q75"]
    # the small lacrimal glands agree least, as in the field notes
    assert max(summary[k]["dice_median"] for k in ("lacrimal_r", "lacrimal_l")) < min(
        summary[k]["dice_median"] for k in ("parotid_r", "parotid_l"))


def test_summary_counts_one_rater_glands_and_skips_undefined_distances():
    row = lambda gland, d, h, s, only=None: {"gland": gland, "dice": d, "hd95_mm": h, "surface_dice": s, "only_in": only}
    rows = [row("parotid_l", 0.8, 3.0, 0.9), row("parotid_l", 0.9, 2.0, 0.95), row("parotid_l", 0.0, None, 0.0, "oncologist")]
    s = interrater.summarise(rows)
    assert s["parotid_l"]["n_cases"] == 3 and s["parotid_l"]["n_one_rater_only"] == 1
    assert s["parotid_l"]["dice_median"] == pytest.approx(0.8)  # the disagreement on presence counts as 0
    assert s["parotid_l"]["dice_median_both_outlined"] == pytest.approx(0.85)
    assert s["parotid_l"]["hd95_mm_median"] == pytest.approx(2.5)  # undefined where one rater has nothing
    assert s["lacrimal_r"]["n_cases"] == 0 and s["lacrimal_r"]["dice_median"] is None


def test_command_line_writes_the_json(tcia, tmp_path):
    out = tmp_path / "interrater.json"
    proc = subprocess.run([sys.executable, "-m", "GlandSegLib.defaultmodel.interrater", "--out", str(out), "--root", str(tcia),
                           "--split", "validation", "--limit", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["n_scans"] == 1 and set(data["summary"]) == {g.key for g in GLANDS}
    assert {r["case"] for r in data["cases"]} == {"0522c0014"} and all(r["split"] == "validation" for r in data["cases"])
    assert "parotid_r" in proc.stdout
