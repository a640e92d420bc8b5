"""One status per gland, judged against anatomy: found, cut by the field of view, outside it,
not found, rejected.

The rules are tested twice: on the sample CT's true glands moved where no gland lies (no
network: the rule alone decides), and end to end with the shipped model on the scans the
issue describes: a brain-only CT (the sample's top 120 mm) and a CT ending at the upper jaw
(its top 162 mm). The expected anatomy they rest on is regenerated from the experts'
outlines where ../shared is present.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.defaultmodel.anatomy_stats import (DEFAULT_OUT, rounded, build, dumps, outline_set_row, outline_sets,
                                                    parotid_hu, summarise_sets, tissue_summary)
from GlandSegLib.glands import GLANDS
from GlandSegLib.segmentation.anatomy import ExpectedAnatomy, find_cranium
from GlandSegLib.segmentation.status import CUT, FOUND, NOT_FOUND, OUTSIDE, REJECTED, GlandAssessor

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CT = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"
PAROTIDS, SUBMANDIBULAR, LACRIMAL = (3, 4), (5, 6), (1, 2)


# ----------------------------------------------------------------------------- expected anatomy
def test_shipped_statistics_follow_from_their_rows():
    """The summary in expected_anatomy.json is exactly what its own per-set rows give."""
    data = json.loads(DEFAULT_OUT.read_text())
    assert len(data["sets"]) == 70
    assert summarise_sets(data["sets"]) == {k: data[k] for k in ("volumes_ml", "size_mm", "offsets_mm")}
    assert tissue_summary(data["parotid_median_hu_values"]) == data["parotid_median_hu"]
    v = data["volumes_ml"]
    assert v["parotid_r"]["n"] == 70 and v["submandibular_r"]["n"] < 70  # resected glands are left out
    assert v["lacrimal_l"]["p5"] < v["lacrimal_l"]["median"] < v["lacrimal_l"]["p95"]


def test_statistics_rows_are_the_outlines(shared_data):
    """Two outline sets (one with underscore names) and three OpenKBP patients, re-read."""
    data = json.loads(DEFAULT_OUT.read_text())
    stored = {(r["split"], r["rater"], r["case"]): r for r in data["sets"]}
    sets = outline_sets(shared_data / "tcia-hn-labels")
    picked = [s for s in sets if s[2] in ("0522c0659", "TCGA-CV-5977") and s[1] == "radiographer"]
    assert len(picked) == 2
    for split, rater, case, folder in picked:
        assert rounded({"split": split, "rater": rater, "case": case, **outline_set_row(folder)}) == stored[(split, rater, case)]
    with tempfile.TemporaryDirectory() as tmp:  # the first three patients, as the script orders them
        kbp = shared_data / "openkbp" / "train-pats"
        for d in sorted(d for d in kbp.iterdir() if (d / "ct.nrrd").is_file())[:3]:
            (Path(tmp) / d.name).symlink_to(d)
        values = [round(v, 1) for v in parotid_hu(Path(tmp))]
    assert values == data["parotid_median_hu_values"][: len(values)]


@pytest.mark.slow
def test_statistics_regenerate_byte_for_byte(shared_data):
    """The whole file from the outlines and OpenKBP (about 2.5 minutes on 2 cores)."""
    stats = build(shared_data / "tcia-hn-labels", shared_data / "openkbp" / "train-pats")
    assert dumps(stats) == DEFAULT_OUT.read_text()


# ----------------------------------------------------------------------------- the rules, on true glands
@pytest.fixture(scope="module")
def sample():
    return sitk.ReadImage(str(SAMPLE_CT)), sitk.ReadImage(str(SAMPLE_LABELS))


def _top(image: sitk.Image, mm: float) -> sitk.Image:
    """The image's top `mm` (LPS z; the sample is stored with z growing superior)."""
    top = image_top(image)
    k = image.TransformPhysicalPointToIndex([*image.GetOrigin()[:2], top - mm])[2]
    return image[:, :, max(k, 0):]


def image_top(image: sitk.Image) -> float:
    return image.TransformIndexToPhysicalPoint([0, 0, image.GetSize()[2] - 1])[2] + image.GetSpacing()[2] / 2


def _assess(ct: sitk.Image, labels: sitk.Image) -> dict:
    judge = GlandAssessor(ct, ct, find_cranium(ct), ExpectedAnatomy.load())
    status = judge.assess(labels, [3, 4, 5, 6])
    status.update(judge.assess(labels, [1, 2]))
    return status


def _moved(labels: sitk.Image, label: int, shift_mm) -> sitk.Image:
    """`labels` with one gland moved by a physical offset (nearest neighbour)."""
    arr = sitk.GetArrayFromImage(labels)
    one = sitk.GetImageFromArray((arr == label).astype(np.uint8))
    one.CopyInformation(labels)
    t = sitk.TranslationTransform(3, [-float(v) for v in shift_mm])
    moved = sitk.GetArrayFromImage(sitk.Resample(one, labels, t, sitk.sitkNearestNeighbor, 0)) > 0
    arr[arr == label] = 0
    arr[moved] = label
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(labels)
    return out


def test_the_experts_glands_on_the_sample_are_all_found(sample):
    ct, labels = sample
    status = _assess(ct, labels)
    assert {lab: s.status for lab, s in status.items()} == {g.label: FOUND for g in GLANDS}


def test_a_gland_inside_the_brain_is_rejected(sample):
    ct, labels = sample
    moved = _moved(labels, 4, (-50, 30, 110))  # left parotid moved into the cerebrum
    s = _assess(ct, moved)[4]
    assert s.status == REJECTED and "inside the cranium" in s.reason, s


def test_a_gland_in_air_is_rejected(sample):
    ct, labels = sample
    s = _assess(ct, _moved(labels, 5, (-85, 0, 0)))[5]  # right submandibular pushed out beside the neck
    assert s.status == REJECTED and "air" in s.reason, s


def test_a_gland_far_from_its_place_is_rejected(sample):
    ct, labels = sample
    s = _assess(ct, _moved(labels, 6, (0, 0, 60)))[6]  # left submandibular lifted beside the nose
    assert s.status == REJECTED and "far from where it lies" in s.reason, s


def test_a_swapped_gland_is_judged_up_down_but_not_left_right(sample):
    """A left submandibular gland found where the right one lies (right one resected) is a
    left/right swap, reported as such and kept; the same segment 60 mm higher is rejected:
    a swap does not explain its height (the shipped model put such a fragment in a
    brain-only scan)."""
    ct, labels = sample
    arr = sitk.GetArrayFromImage(labels)
    xs = {lab: np.mean([labels.TransformIndexToPhysicalPoint([int(i), 0, 0])[0] for i in np.nonzero((arr == lab).any(axis=(0, 1)))[0]])
          for lab in (5, 6)}
    arr[arr == 5] = 0
    resected = sitk.GetImageFromArray(arr)
    resected.CopyInformation(labels)
    for lift, expected in ((0.0, FOUND), (60.0, REJECTED)):
        moved = _moved(resected, 6, (xs[5] - xs[6], 0.0, lift))
        judge = GlandAssessor(ct, ct, find_cranium(ct), ExpectedAnatomy.load())
        s = judge.assess(moved, [3, 4, 5, 6], swapped={6})[6]
        assert s.status == expected, (lift, s)
    assert "far from where it lies" in s.reason, s


def test_a_fragment_far_below_the_experts_volumes_is_kept_and_flagged(sample):
    """An under-segmented gland in its right place (what the model does to real submandibular
    glands) stays, so the reviewer grows it rather than drawing it from nothing."""
    ct, labels = sample
    arr = sitk.GetArrayFromImage(labels)
    zs = np.nonzero((arr == 3).any(axis=(1, 2)))[0]
    keep = zs[len(zs) // 2]
    arr[(arr == 3) & (np.arange(arr.shape[0])[:, None, None] != keep)] = 0  # one slice of the parotid
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(labels)
    s = _assess(ct, img)[3]
    assert s.status == FOUND and s.written, s
    assert any("far below the experts'" in n and "under-segmented" in n for n in s.notes), s.notes


def test_a_segment_far_above_the_experts_volumes_is_rejected(sample):
    """A "parotid" several times the largest expert's has leaked into its neighbours."""
    ct, labels = sample
    arr = sitk.GetArrayFromImage(labels)
    grown = ndimage.binary_dilation(arr == 3, iterations=12)
    arr[grown & (arr == 0)] = 3
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(labels)
    limit = ExpectedAnatomy.load().volumes["parotid_r"]
    s = _assess(ct, img)[3]
    assert s.status == REJECTED and "far above the experts' range" in s.reason, s
    assert s.candidate_ml > limit["p95"] ** 2 / limit["p5"], s


def test_on_a_brain_only_scan_the_salivary_glands_are_outside_the_field_of_view(sample):
    ct, labels = (_top(im, 120.0) for im in sample)
    status = _assess(ct, labels)
    for lab in PAROTIDS + SUBMANDIBULAR:
        assert status[lab].status == OUTSIDE and "the top of the brain" in status[lab].reason, status[lab]
    for lab in LACRIMAL:  # the orbits are in this scan
        assert status[lab].status == FOUND


def test_a_gland_touching_the_scans_edge_is_cut(sample):
    ct, labels = sample
    lab = sitk.GetArrayViewFromImage(labels)
    z_mid = float(np.mean([labels.TransformIndexToPhysicalPoint([0, 0, int(k)])[2] for k in np.nonzero((lab == 3).any(axis=(1, 2)))[0]]))
    cut = ct.TransformPhysicalPointToIndex([*ct.GetOrigin()[:2], z_mid])[2]
    status = _assess(ct[:, :, cut:], labels[:, :, cut:])
    assert status[3].status == CUT and "bottom" in status[3].reason
    assert status[5].status == OUTSIDE and status[6].status == OUTSIDE


# ----------------------------------------------------------------------------- end to end, shipped model
@pytest.fixture(scope="module")
def predictor():
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    return GlandPredictor(load_model_info(None), "cpu")


def _segment_top(sample, predictor, tmp_path, mm: float, **kwargs):
    from GlandSegLib.segmentation.pipeline import segment

    path = tmp_path / f"top{mm:.0f}.nii.gz"
    sitk.WriteImage(_top(sample[0], mm), str(path))
    res = segment(path, tmp_path / "out", predictor=predictor, **kwargs)
    return res, {g["label"]: g for g in res.report["glands"]}


def test_brain_only_ct_reports_no_gland_in_the_cranium_and_no_missing_salivary_gland(sample, predictor, tmp_path):
    res, rows = _segment_top(sample, predictor, tmp_path, 120.0)
    for lab in PAROTIDS + SUBMANDIBULAR:
        assert rows[lab]["status"] == OUTSIDE, rows[lab]
        assert rows[lab]["voxels"] == 0 and not any("not found" in w for w in rows[lab]["warnings"])
    labels = sitk.GetArrayFromImage(res.labels)
    assert not np.isin(labels, PAROTIDS + SUBMANDIBULAR).any()
    cranium = find_cranium(sitk.ReadImage(str(tmp_path / "top120.nii.gz")))
    for g in GLANDS:  # whatever is written lies outside the cranium
        assert cranium.share_inside(labels == g.label, res.labels) <= 0.5
    written = sitk.ReadImage(str(res.outdir / "glands_labelmap.nii.gz"))
    assert not np.isin(sitk.GetArrayViewFromImage(written), PAROTIDS + SUBMANDIBULAR).any()


def test_keep_rejected_writes_the_discarded_segments_and_says_so(sample, predictor, tmp_path):
    """For unusual anatomy the user may keep what the checks discard: the segment is written,
    its status still says why it would not have been."""
    res, rows = _segment_top(sample, predictor, tmp_path, 120.0, keep_rejected=True)
    kept = [lab for lab in PAROTIDS + SUBMANDIBULAR if rows[lab]["voxels"]]
    assert kept, "the brain-only scan gives the network's discarded segments to keep"
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(res.outdir / "glands_labelmap.nii.gz")))
    for lab in kept:
        assert rows[lab]["status"] in (OUTSIDE, REJECTED) and (written == lab).sum() == rows[lab]["voxels"]
        assert any("written anyway" in n for n in rows[lab]["status_notes"]), rows[lab]
    # keeping changes what is written, not what is found: the lacrimal stage still anchors on
    # accepted glands only (a kept "parotid" in the brain once moved its boxes off the orbits)
    (tmp_path / "plain").mkdir()
    _, plain = _segment_top(sample, predictor, tmp_path / "plain", 120.0)
    for lab in LACRIMAL:
        assert rows[lab]["status"] == plain[lab]["status"] == "found", (rows[lab], plain[lab])
        assert rows[lab]["voxels"] == plain[lab]["voxels"]


def test_ct_ending_at_the_upper_jaw_cuts_the_parotids_and_leaves_out_the_submandibular_glands(sample, predictor, tmp_path):
    ct, truth = sample
    bottom = image_top(ct) - 162.0
    t = sitk.GetArrayViewFromImage(truth)
    z = lambda lab, f: f(truth.TransformIndexToPhysicalPoint([0, 0, int(k)])[2] for k in np.nonzero((t == lab).any(axis=(1, 2)))[0])
    # the scenario: the scan ends inside the parotids, above the submandibular glands' tops
    assert all(z(lab, min) < bottom < z(lab, max) for lab in PAROTIDS) and all(z(lab, max) < bottom for lab in SUBMANDIBULAR)
    res, rows = _segment_top(sample, predictor, tmp_path, 162.0)
    for lab in SUBMANDIBULAR:
        assert rows[lab]["status"] == OUTSIDE and rows[lab]["voxels"] == 0, rows[lab]
    for lab in PAROTIDS:
        assert rows[lab]["status"] == CUT, rows[lab]
        assert any("cut by the field of view" in w for w in rows[lab]["warnings"])
    with open(res.outdir / "report.csv") as f:
        header = f.readline().strip().split(",")
    assert {"status", "status_reason", "confidence", "expert_volume_p5_ml"} <= set(header)


def test_labels_are_unchanged_where_nothing_is_rejected(sample, predictor):
    """The sample: every gland found, and the labels are exactly those of the plain pipeline
    (argmax, largest component, lacrimal stage with its own component choice) on the same probabilities."""
    from GlandSegLib.geometry import crop, model_grid, resample_to
    from GlandSegLib.segmentation.assessment import assess_glands
    from GlandSegLib.segmentation.headbox import locate_head
    from GlandSegLib.segmentation.inference import probabilities_to_labels
    from GlandSegLib.segmentation.lacrimal import lacrimal_stage
    from GlandSegLib.segmentation.postprocess import keep_largest_component

    ct = sample[0]
    box = locate_head(ct)
    ct_crop = crop(ct, box)
    model_crop = resample_to(ct_crop, model_grid(box, predictor.info.spacing_xyz))
    probs = predictor.predict_probabilities(model_crop)
    plain = keep_largest_component(probabilities_to_labels(probs, model_crop, ct_crop))
    plain = lacrimal_stage(ct, ct_crop, plain, predictor.lacrimal, box.midline_x)[0]  # its own component choice
    assessed = assess_glands(ct, ct_crop, model_crop, probs, predictor, box.midline_x)
    assert all(s.status == FOUND for s in assessed.status.values()) and len(assessed.status) == 6
    assert np.array_equal(sitk.GetArrayViewFromImage(assessed.labels), sitk.GetArrayViewFromImage(plain))
    assert assessed.rejected is None and NOT_FOUND not in {s.status for s in assessed.status.values()}
