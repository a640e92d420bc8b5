"""`glandseg evaluate`: metrics on label maps whose true agreement is known by construction."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.cli import main
from GlandSegLib.cohort.evaluate import OUTPUT_FILES, collect, evaluate, evaluate_case
from GlandSegLib.glands import GLANDS
from GlandSegLib.cohort.metrics import SURFACE_TOLERANCE_MM, dice

SHAPE = (24, 40, 48)  # z, y, x
SPACING = (1.5, 1.5, 2.0)


def image(arr: np.ndarray, spacing=SPACING, origin=(-36.0, -30.0, 10.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    return img


def reference() -> np.ndarray:
    """Six boxes; right glands at smaller x (LPS), as on a patient."""
    a = np.zeros(SHAPE, np.uint8)
    for g in GLANDS:
        x0 = 4 if g.side == "R" else 30
        z0 = {"lacrimal": 18, "parotid": 8, "submandibular": 1}[g.organ]
        a[z0 : z0 + 5, 10:22, x0 : x0 + 12] = g.label
    return a


def test_identical_maps_agree_perfectly():
    ref = image(reference())
    rows = evaluate_case("c1", ref, ref)
    for r in rows:
        assert r["dice"] == 1.0 and r["hd95_mm"] == 0.0 and r["surface_dice"] == 1.0
        assert r["volume_error_percent"] == 0.0 and r["swapped"] is False
        assert r["apl_mm"] == 0.0  # nothing to redraw
        assert r["tolerance_mm"] == SURFACE_TOLERANCE_MM[GLANDS[r["label"] - 1].organ]


def test_a_shift_by_one_slice_gives_the_expected_numbers():
    ref = reference()
    pred = np.roll(ref, 1, axis=0)  # 2 mm towards the head
    rows = {r["gland"]: r for r in evaluate_case("c1", image(pred), image(ref))}
    p, q = rows["parotid_r"], rows["lacrimal_l"]
    assert p["dice"] == pytest.approx(dice(pred == 3, ref == 3), abs=1e-4) == pytest.approx(0.8)
    assert p["hd95_mm"] == pytest.approx(2.0)
    assert p["surface_dice"] == 1.0  # every surface point moved 2 mm: within the parotid tolerance (2.85 mm)
    assert p["volume_error_percent"] == 0.0
    assert q["dice"] == pytest.approx(0.8)
    far = {r["gland"]: r for r in evaluate_case("c1", image(np.roll(ref, 2, axis=0)), image(ref))}
    assert far["parotid_r"]["surface_dice"] < 1.0 and far["parotid_r"]["hd95_mm"] == pytest.approx(4.0)


def test_added_path_length_is_the_outline_to_redraw():
    """Prediction one slice (2 mm) too high: to correct it into the reference a user draws the
    reference's bottom slice anew (its whole 12 x 12 pixel outline at 1.5 mm: 72 mm less the
    four corners the iso-line cuts) and erases the top one (which adds nothing)."""
    ref = reference()
    rows = {r["gland"]: r for r in evaluate_case("c1", image(np.roll(ref, 1, axis=0)), image(ref))}
    outline = 4 * 12 * 1.5 - 4 * (1.5 - np.hypot(0.75, 0.75))
    for g in GLANDS:
        assert rows[g.key]["apl_mm"] == pytest.approx(outline, abs=0.1), g.key  # 70.2 mm
    empty = ref.copy()
    empty[ref == 5] = 0
    rows = {r["gland"]: r for r in evaluate_case("c1", image(empty), image(empty))}
    assert rows["submandibular_r"]["apl_mm"] is None and rows["submandibular_r"]["dice"] is None  # neither has it
    missed = {r["gland"]: r for r in evaluate_case("c1", image(empty), image(ref))}["submandibular_r"]
    assert missed["apl_mm"] == pytest.approx(5 * outline, abs=0.5)  # a gland the model missed: all five slices drawn


def test_left_right_swaps_are_flagged():
    ref = reference()
    pred = ref.copy()
    pred[ref == 3], pred[ref == 4] = 4, 3  # parotids exchanged
    rows = {r["gland"]: r for r in evaluate_case("c1", image(pred), image(ref))}
    assert rows["parotid_r"]["swapped"] and rows["parotid_l"]["swapped"]
    assert rows["parotid_r"]["dice"] == 0.0
    assert not rows["submandibular_r"]["swapped"]


def test_reference_on_another_grid_is_resampled_onto_the_prediction():
    """A 2x finer reference with the same physical content matches the prediction exactly."""
    ref = reference()
    fine = np.repeat(np.repeat(np.repeat(ref, 2, 0), 2, 1), 2, 2)
    fine_img = image(fine, spacing=tuple(s / 2 for s in SPACING),
                     origin=tuple(o - s / 4 for o, s in zip((-36.0, -30.0, 10.0), SPACING)))
    rows = evaluate_case("c1", image(ref), fine_img)
    assert all(r["dice"] == 1.0 for r in rows)


def test_hu_inside_predicted_and_reference_glands():
    ref = reference()
    ct = np.full(SHAPE, -50.0, np.float32)
    ct[ref == 3] = 40.0
    pred = ref.copy()
    pred[ref == 3] = 0
    pred[8:13, 10:22, 16:20] = 3  # right parotid predicted into the -50 HU surroundings
    rows = {r["gland"]: r for r in evaluate_case("c1", image(pred), image(ref), image(ct))}
    assert rows["parotid_r"]["hu_mean_ref"] == 40.0
    assert rows["parotid_r"]["hu_mean_pred"] == -50.0
    assert rows["parotid_r"]["hu_diff"] == -90.0


def _write(path, arr, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image(arr, **kw), str(path))


def test_folders_are_matched_by_case_id_and_reports_written(tmp_path):
    ref = reference()
    _write(tmp_path / "gt" / "a.nii.gz", ref)
    _write(tmp_path / "gt" / "b.nii.gz", ref)
    _write(tmp_path / "gt" / "only_ref.nii.gz", ref)
    _write(tmp_path / "pred" / "a" / "glands_labelmap.nii.gz", ref)  # as segment/batch write it
    _write(tmp_path / "pred" / "b_0000.nii.gz", np.roll(ref, 1, axis=0))  # nnU-Net style name
    ct = np.where(ref > 0, 40, -50).astype(np.int16)
    ct[:, :3, :] = -1000  # a CT in HU: some air and some bone
    ct[:, 3, :] = 700
    for c in ("a", "b"):
        _write(tmp_path / "ct" / f"{c}_0000.nii.gz", ct)
    assert set(collect(tmp_path / "pred", "prediction")) == {"a", "b"}
    result = evaluate(tmp_path / "pred", tmp_path / "gt", tmp_path / "out", ct=tmp_path / "ct", log=lambda m: None)
    assert result.summary["cases"] == ["a", "b"]
    assert result.unmatched["reference_only"] == ["only_ref"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)
    lines = (tmp_path / "out" / "metrics.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 2 * 6 and "hu_mean_pred" in lines[0] and "apl_mm" in lines[0].split(",")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["glands"]["Parotid_R"]["dice"]["n"] == 2
    assert summary["glands"]["Parotid_R"]["apl_mm"]["n"] == 2  # case a: 0 mm, case b: one slice to redraw, 70.2 mm
    assert summary["glands"]["Parotid_R"]["apl_mm"]["median"] == pytest.approx(70.2 / 2, abs=0.1)
    assert "APL mm median" in (tmp_path / "out" / "report.html").read_text()
    assert summary["glands"]["Parotid_R"]["dice"]["median"] == pytest.approx(0.9)
    assert (tmp_path / "out" / "boxplots.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Parotid_R" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("case,code,fragment", [
    ("missing_pred", 3, "no such prediction"),
    ("no_common_case", 4, "no case id"),
    ("output_exists", 8, "already holds an evaluation"),
    ("not_a_label_map", 4, "not a compressed NIfTI file (it holds unknown data)"),
])
def test_cli_errors_are_one_line_with_their_exit_code(tmp_path, capsys, case, code, fragment):
    ref = reference()
    _write(tmp_path / "gt" / "a.nii.gz", ref)
    _write(tmp_path / "pred" / ("z.nii.gz" if case == "no_common_case" else "a.nii.gz"), ref)
    out = tmp_path / "out"
    if case == "output_exists":
        out.mkdir()
        (out / "metrics.csv").write_text("old")
    if case == "not_a_label_map":
        (tmp_path / "pred" / "a.nii.gz").write_bytes(b"not an image at all")
    pred = tmp_path / ("nowhere" if case == "missing_pred" else "pred")
    rc = main(["evaluate", str(pred), str(tmp_path / "gt"), "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code
    assert len(err) == 1 and err[0].startswith("error:") and fragment in err[0], err


def test_two_single_files_are_one_case_whatever_their_names(tmp_path):
    ref = reference()
    _write(tmp_path / "glands_labelmap.nii.gz", ref)
    _write(tmp_path / "reference_pat7.nii.gz", ref)
    result = evaluate(tmp_path / "glands_labelmap.nii.gz", tmp_path / "reference_pat7.nii.gz", tmp_path / "out",
                      log=lambda m: None)
    assert result.summary["cases"] == ["reference_pat7"]
    assert all(r["dice"] == 1.0 for r in result.rows)
