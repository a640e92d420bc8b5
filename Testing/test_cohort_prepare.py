"""`glandseg prepare` on a synthetic cohort as a hospital would hand it over (cohort_helpers.py).

What is proven: RTSTRUCT contours rasterize onto the CT grid like the labels they were
drawn from; labels are identified by name in any convention (the old team's order, per
gland masks, a labelmap with a names json, --roi-map); overlaps are resolved by the
documented rule and counted; a missing gland is reported, not fatal; every case is
cropped by the inference recipe with its physical geometry kept; the hold-out split is
seeded; the data report flags what it should and names no patient.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cohort_helpers import OLD_TEAM, PATIENT_NAME, PREPARE_SPACING, cohort, prepared_dataset, roi_map_file, truth  # noqa: E402

from GlandSegLib.cli import main  # noqa: E402
from GlandSegLib.cohort.cases import RoiMap, discover_cohort, load_case, resolve_overlaps  # noqa: E402
from GlandSegLib.cohort.datareport import find_anomalies, robust_z  # noqa: E402
from GlandSegLib.geometry import resample_box  # noqa: E402
from GlandSegLib.glands import BY_KEY, GLANDS  # noqa: E402
from GlandSegLib.segmentation.headbox import HeadBox, locate_head  # noqa: E402
from GlandSegLib.cohort.metrics import dice  # noqa: E402
from GlandSegLib.cohort.prepare import case_record, holdout_split  # noqa: E402

SPACING = tuple(float(s) for s in PREPARE_SPACING)


@pytest.fixture(scope="module")
def sources():
    return {s.case_id: s for s in discover_cohort(cohort(), RoiMap.load(roi_map_file()))}


@pytest.fixture(scope="module")
def loaded(sources):
    roi_map = RoiMap.load(roi_map_file())
    return {cid: load_case(src, roi_map) for cid, src in sources.items()}


def test_each_patient_folder_is_recognised(sources):
    assert {cid: s.kind for cid, s in sources.items()} == {
        "pat01": "dicom-rtstruct", "pat02": "dicom-rtstruct", "pat03": "dicom-rtstruct", "pat04": "masks", "pat05": "labelmap"}
    assert sources["pat05"].names_json is not None and len(sources["pat04"].labels) == 7


def test_structures_that_are_not_glands_are_listed_as_ignored(loaded):
    assert loaded["pat04"].structures["Brainstem"] is None
    assert sum(v is not None for v in loaded["pat04"].structures.values()) == 6


@pytest.mark.parametrize("cid", ["pat01", "pat02", "pat03"])
def test_rtstruct_masks_agree_with_the_source_labels(loaded, cid):
    """The old team's ROI names and numbers, rasterized onto the CT grid: same glands, same voxels."""
    case = loaded[cid]
    got = sitk.GetArrayFromImage(case.labels)
    ref = sitk.GetArrayFromImage(sitk.Resample(truth(cid), case.ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    for g in GLANDS:
        if g.key in case.missing:
            continue
        d = dice(got == g.label, ref == g.label)
        if g.organ in ("parotid", "submandibular"):
            assert d > 0.9, (g.key, d)
        else:
            assert d > 0.8, (g.key, d)


def test_labels_come_from_names_not_from_their_order(loaded):
    """pat01's ROI 3 is Glnd_Submand_L and ROI 4 Parotid_R; they land on GlandSeg's 6 and 3."""
    case = loaded["pat01"]
    assert case.structures == {OLD_TEAM[k]: BY_KEY[v].key for k, v in
                               {1: "lacrimal_r", 2: "lacrimal_l", 3: "submandibular_l", 4: "parotid_r",
                                5: "submandibular_r", 6: "parotid_l"}.items()}


@pytest.mark.parametrize("cid", ["pat04", "pat05"])
def test_masks_and_named_labelmaps_give_the_source_labels_exactly(loaded, cid):
    assert np.array_equal(sitk.GetArrayFromImage(loaded[cid].labels), sitk.GetArrayFromImage(truth(cid)))
    assert loaded[cid].missing == [] and loaded[cid].overlaps == {}


def test_overlap_goes_to_the_smaller_gland_and_is_counted(loaded):
    case = loaded["pat02"]
    ref = sitk.GetArrayFromImage(truth("pat02"))
    sub = ref == 5
    zs = np.nonzero(sub.any(axis=(1, 2)))[0]
    expected = int(sub[zs[len(zs) // 2]:].sum())  # the upper half the Parotid_R ROI was drawn over
    assert case.overlaps == {"parotid_r+submandibular_r": pytest.approx(expected, rel=0.05)}
    got = sitk.GetArrayFromImage(case.labels)
    assert dice(got == 5, sub) > 0.9  # the submandibular gland kept its voxels
    assert set(np.unique(got)) <= {0, 1, 2, 3, 4, 5, 6}  # no summed, invalid values
    assert any("overlap rule" in w for w in case.warnings)


def test_resolve_overlaps_rule_and_ties():
    big = np.zeros((1, 4, 4), bool)
    big[0, :3, :3] = True
    small = np.zeros_like(big)
    small[0, 2:, 2:] = True
    labels, counts = resolve_overlaps({3: big, 5: small}, big.shape)
    assert labels[0, 2, 2] == 5 and counts == {"parotid_r+submandibular_r": 1}
    twin = np.zeros_like(big)
    twin[0, :3, :3] = True
    labels, _ = resolve_overlaps({4: twin, 3: big}, big.shape)  # equal size: lower label wins
    assert labels[0, 0, 0] == 3


def test_missing_gland_is_reported_and_roi_map_extends_the_names(sources, loaded):
    case = loaded["pat03"]
    assert case.missing == ["lacrimal_l"]
    assert case.structures["Structure_7"] == "parotid_l" and case.structures["BODY"] is None
    without_map = load_case(sources["pat03"], RoiMap())
    assert without_map.missing == ["lacrimal_l", "parotid_l"]
    ignoring = load_case(sources["pat03"], RoiMap({"Parotid_R": None}))
    assert "parotid_r" in ignoring.missing


def test_roi_map_values_are_checked():
    assert RoiMap({"a": "Parotid_L", "b": 5, "c": "left parotid gland"}).to_dict() == {
        "a": "parotid_l", "b": "submandibular_r", "c": "parotid_l"}
    from GlandSegLib.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="not a gland"):
        RoiMap({"x": "spleen"})


def test_holdout_split_is_seeded_and_bounded():
    ids = [f"c{i:02d}" for i in range(20)]
    a = holdout_split(ids, 0.1, 0)
    assert a == holdout_split(list(reversed(ids)), 0.1, 0) and len(a) == 2
    assert any(holdout_split(ids, 0.1, s) != a for s in range(1, 6))
    assert holdout_split(ids[:4], 0.1, 0) != [] and len(holdout_split(ids[:2], 0.9, 0)) == 1
    assert holdout_split(ids, 0.0, 0) == []


# --------------------------------------------------------------------------- the dataset


@pytest.fixture(scope="module")
def dataset():
    return prepared_dataset()


def test_dataset_layout_and_dataset_json(dataset):
    ds = json.loads((dataset / "dataset.json").read_text())
    prep = ds["glandseg"]["prepare"]
    assert prep["test_cases"] == holdout_split([f"pat{i:02d}" for i in range(1, 6)], 0.2, 0) == ["pat03"]
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == [f"{c}_0000.nii.gz" for c in prep["train_cases"]]
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == [f"{c}.nii.gz" for c in prep["train_cases"]]
    assert [p.name for p in (dataset / "imagesTs").iterdir()] == ["pat03_0000.nii.gz"]
    assert [p.name for p in (dataset / "labelsTs").iterdir()] == ["pat03.nii.gz"]
    assert ds["numTraining"] == 4 and ds["numTest"] == 1
    assert ds["labels"] == {"background": 0, **{g.tg263: g.label for g in GLANDS}}
    assert ds["glandseg"]["crop"]["spacing_mm"] == list(SPACING)
    assert ds["glandseg"]["crop"]["functions"] == ["GlandSegLib.segmentation.headbox.locate_head", "GlandSegLib.geometry.resample_box"]
    assert prep["roi_map"] == {"Structure_7": "parotid_l"} and prep["summary"]["cases"] == 4
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")], "staging left behind"


@pytest.mark.parametrize("cid,folder", [("pat01", "Tr"), ("pat03", "Ts"), ("pat05", "Tr")])
def test_cases_are_cropped_with_the_inference_recipe_keeping_physical_geometry(dataset, loaded, cid, folder):
    case = loaded[cid]
    box = locate_head(case.ct)
    expect_ct = resample_box(case.ct, box, SPACING)
    expect_lab = resample_box(case.labels, box, SPACING, is_label=True)
    ct = sitk.ReadImage(str(dataset / f"images{folder}" / f"{cid}_0000.nii.gz"))
    lab = sitk.ReadImage(str(dataset / f"labels{folder}" / f"{cid}.nii.gz"))
    for img in (ct, lab):
        assert img.GetSize() == expect_ct.GetSize()
        assert np.allclose(img.GetOrigin(), expect_ct.GetOrigin(), atol=1e-3)  # LPS mm, not reset
        assert np.allclose(img.GetSpacing(), SPACING) and np.allclose(img.GetDirection(), np.eye(3).ravel())
    assert np.linalg.norm(lab.GetOrigin()) > 50  # a real position, far from a reset (0, 0, 0)
    assert np.array_equal(sitk.GetArrayFromImage(lab), sitk.GetArrayFromImage(expect_lab))
    assert np.allclose(sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(expect_ct), atol=0.5)


def test_data_report_files_and_content(dataset):
    html = (dataset / "report.html").read_text()
    for name in ("report_volumes.png", "report_hu.png"):
        assert (dataset / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert name in html
    assert "parotid_r+submandibular_r" in html and "lacrimal_l" in html
    rows = list(csv.DictReader((dataset / "report.csv").open()))
    assert len(rows) == 5 * 6
    pat03 = {r["gland"]: r for r in rows if r["case_id"] == "pat03"}
    assert pat03["lacrimal_l"]["present"] == "False" and pat03["parotid_l"]["split"] == "test"
    assert float(pat03["parotid_l"]["volume_ml"]) > 5
    assert -100 < float(pat03["submandibular_r"]["hu_mean"]) < 150


def test_no_patient_name_or_birth_date_in_anything_written(dataset):
    family = PATIENT_NAME.split("^")[0]
    for p in dataset.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".html", ".csv"):
            text = p.read_text()
            assert family not in text and "19500101" not in text, p


def test_dry_run_reports_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "raw" / "Dataset903_Dry"
    rc = main(["prepare", str(cohort()), "-o", str(out), "--dry-run", "--roi-map", str(roi_map_file()),
               "--spacing", *PREPARE_SPACING])
    captured = capsys.readouterr()
    assert rc == 0
    assert "would write" in captured.out and "4 training, 1 hold-out" in captured.out
    assert "overlap" in captured.out and "missing" in captured.out
    assert not (tmp_path / "raw").exists()


# --------------------------------------------------------------------------- anomalies


def _record(case, box: HeadBox) -> dict:
    rec = case_record(case, box, (1, 1, 1))
    rec["split"] = "train"
    return rec


def test_field_of_view_cutting_a_gland_and_missing_top_of_head_are_flagged(loaded):
    """pat04 cut at the left parotid's centre (x) and 20 mm above the lacrimal glands (z)."""
    case = loaded["pat04"]
    box = locate_head(case.ct)
    lab = sitk.GetArrayFromImage(case.labels)
    xs = np.nonzero((lab == 4).any(axis=(0, 1)))[0]
    zl = np.nonzero((lab == 1).any(axis=(1, 2)))[0]
    cut_x, cut_z = int(xs.mean()), int(zl.max()) + 6  # 6 slices x 3 mm above the lacrimal glands' top
    from GlandSegLib.cohort.cases import LoadedCase

    ct = case.ct[:cut_x, :, :cut_z]
    labels = case.labels[:cut_x, :, :cut_z]
    rec = _record(LoadedCase(case.source, ct, labels, {}, [], {}, []), box)
    assert rec["glands"]["parotid_l"]["touches_image_border"]
    assert not rec["glands"]["parotid_r"]["touches_image_border"]
    assert any("top of head missing" in f for f in rec["flags"])
    from GlandSegLib.geometry import centroid_lps

    cz = centroid_lps(lab == 3, case.labels)[2]
    small = HeadBox(box.lower, np.array([box.upper[0], box.upper[1], cz]), midline_x=box.midline_x)
    rec2 = _record(case, small)  # a box cutting through the glands
    assert rec2["glands"]["parotid_r"]["touches_crop_border"]
    kinds = {(a["gland"], a["kind"]) for a in find_anomalies([rec, rec2])}
    assert ("parotid_l", "image-border") in kinds and ("", "top-of-head-missing") in kinds
    assert ("parotid_r", "crop-border") in kinds


def test_glands_on_the_wrong_side_are_flagged(loaded):
    case = loaded["pat05"]
    box = locate_head(case.ct)
    arr = sitk.GetArrayFromImage(case.labels)
    swapped = arr.copy()
    swapped[arr == 3], swapped[arr == 4] = 4, 3
    img = sitk.GetImageFromArray(swapped)
    img.CopyInformation(case.labels)
    from GlandSegLib.cohort.cases import LoadedCase

    rec = _record(LoadedCase(case.source, case.ct, img, {}, [], {}, []), box)
    assert rec["glands"]["parotid_r"]["wrong_side"] and rec["glands"]["parotid_l"]["wrong_side"]
    assert not rec["glands"]["submandibular_r"]["wrong_side"]
    assert {a["gland"] for a in find_anomalies([rec]) if a["kind"] == "wrong-side"} == {"parotid_r", "parotid_l"}


def test_volume_outliers_by_robust_z():
    assert np.allclose(robust_z([1, 2, 3]), [-0.6745, 0, 0.6745])
    records = []
    for i, v in enumerate([20, 22, 24, 21, 23, 95]):
        glands = {g.key: {"present": True, "volume_ml": float(v if g.key == "parotid_l" else 5)} for g in GLANDS}
        records.append({"case_id": f"c{i}", "glands": glands, "box": {}, "flags": [], "missing": [], "overlaps": {}})
    found = [(a["case_id"], a["gland"]) for a in find_anomalies(records) if a["kind"] == "volume-outlier"]
    assert found == [("c5", "parotid_l")]
    assert records[0]["glands"]["parotid_r"]["volume_robust_z"] == 0.0  # no spread: no outliers


# --------------------------------------------------------------------------- CLI errors


@pytest.mark.parametrize("case,code,fragment", [
    ("missing_cohort", 3, "no such cohort"),
    ("bad_output_name", 4, "DatasetNNN_Name"),
    ("output_exists", 8, "exists"),
    ("id_taken", 8, "already used"),
    ("roi_map_missing", 3, "no such ROI map"),
    ("roi_map_not_json", 4, "not valid JSON"),
    ("roi_map_bad_gland", 4, "not a gland"),
    ("bad_holdout", 4, "--holdout"),
    ("empty_cohort", 4, "no patient folders"),
    ("no_usable_case", 4, "no usable training case"),
    ("bad_fold_usage", 2, "--holdout"),
])
def test_cli_errors_are_one_line_with_their_exit_code(tmp_path, capsys, case, code, fragment):
    raw = tmp_path / "raw"
    out = raw / "Dataset904_Err"
    args = ["prepare", str(cohort()), "-o", str(out), "--dry-run"]
    if case == "missing_cohort":
        args[1] = str(tmp_path / "nowhere")
    elif case == "bad_output_name":
        args[3] = str(raw / "Glands")
    elif case == "output_exists":
        out.mkdir(parents=True)
        args.remove("--dry-run")
    elif case == "id_taken":
        (raw / "Dataset904_Other").mkdir(parents=True)
        args.remove("--dry-run")
    elif case.startswith("roi_map"):
        rm = tmp_path / "map.json"
        if case == "roi_map_not_json":
            rm.write_text("{oops")
        elif case == "roi_map_bad_gland":
            rm.write_text(json.dumps({"Structure_7": "thyroid"}))
        args += ["--roi-map", str(rm)]
    elif case == "bad_holdout":
        args += ["--holdout", "1.5"]
    elif case == "empty_cohort":
        (tmp_path / "empty").mkdir()
        args[1] = str(tmp_path / "empty")
    elif case == "no_usable_case":
        bad = tmp_path / "bad" / "p1"
        bad.mkdir(parents=True)
        (bad / "notes.txt").write_text("no images here")
        args[1] = str(tmp_path / "bad")
        args.remove("--dry-run")
    elif case == "bad_fold_usage":
        args += ["--holdout", "ten"]
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("error")]
    assert rc == code, err
    assert len(err) == 1 and fragment in err[0], err
