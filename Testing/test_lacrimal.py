"""The lacrimal stage: where its boxes go, how its glands merge, how its model travels."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.errors import ModelError
from GlandSegLib.geometry import model_grid
from GlandSegLib.segmentation.lacrimal import (BOX_MM, SPACING_MM, label_centroid, lacrimal_box, merge_lacrimal,
                                               stage_boxes, stage_settings)
from GlandSegLib.models.registry import METADATA, file_table, load_model_info, resolve_model_folder
from GlandSegLib.defaultmodel.phantom import VARIANTS, reorient
from GlandSegLib.defaultmodel.train_lacrimal import assemble_two_stage, lacrimal_specs, measure_offsets, prepare_boxes

OFFSETS = {1: [15.0, -47.0, 73.0], 2: [-15.0, -47.0, 73.0]}


def _labels(spacing=(1.0, 1.0, 2.0), size=(120, 100, 60)) -> sitk.Image:
    """Right parotid (3) at -x, left parotid (4) at +x, a stage-one lacrimal (1) and a submandibular (5)."""
    a = np.zeros(size[::-1], np.uint8)
    a[10:20, 40:60, 10:25] = 3
    a[10:20, 40:60, 95:110] = 4
    a[40:42, 20:23, 30:33] = 1
    a[5:8, 30:35, 30:35] = 5
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    img.SetOrigin((-60.0, -50.0, -40.0))
    return img


@pytest.mark.parametrize("variant", VARIANTS)
def test_centroids_and_boxes_are_physical_under_every_storage(variant):
    plain = _labels()
    stored = reorient(plain, variant, is_label=True)
    for label in (3, 4):
        np.testing.assert_allclose(label_centroid(stored, label), label_centroid(plain, label), atol=1.6)
    right, left = label_centroid(stored, 3), label_centroid(stored, 4)
    assert right[0] < left[0]  # LPS: the patient's right is -x, whatever the storage
    boxes = stage_boxes(stored, OFFSETS)
    assert set(boxes) == {1, 2}
    np.testing.assert_allclose(boxes[1].center, right + OFFSETS[1], atol=1e-6)
    np.testing.assert_allclose(boxes[2].size, [BOX_MM] * 3)
    assert label_centroid(stored, 6) is None


def test_a_side_without_parotid_borrows_the_other_mirrored_and_the_box_is_one_patch():
    a = sitk.GetArrayFromImage(_labels())
    a[a == 4] = 0
    img = sitk.GetImageFromArray(a)
    img.CopyInformation(_labels())
    assert set(stage_boxes(img, OFFSETS)) == {1}
    # with the midline known, the missing side borrows the right parotid, mirrored
    right = label_centroid(img, 3)
    boxes = stage_boxes(img, OFFSETS, midline_x=0.0)
    np.testing.assert_allclose(boxes[2].center, [-right[0], right[1], right[2]] + np.array(OFFSETS[2]), atol=1e-6)
    grid = model_grid(lacrimal_box([0, 0, 0], OFFSETS[1]), [SPACING_MM] * 3)
    assert grid.GetSize() == (64, 64, 64)


def test_merge_replaces_stage_one_lacrimals_and_never_takes_another_gland():
    labels = _labels()
    box = lacrimal_box(label_centroid(labels, 3), [0.0, 0.0, 0.0])  # a box over the right parotid
    grid = model_grid(box, [SPACING_MM] * 3)
    prob = np.zeros(grid.GetSize()[::-1], np.float32)
    prob[20:44, 20:44, 20:44] = 0.9  # a 30 mm cube of "lacrimal" overlapping the parotid
    merged = sitk.GetArrayFromImage(merge_lacrimal(labels, {1: (grid, prob)}))
    before = sitk.GetArrayFromImage(labels)
    assert (merged == 3).sum() == (before == 3).sum()  # the parotid keeps every voxel
    assert (merged == 5).sum() == (before == 5).sum()
    assert not ((before == 1) & (merged == 1)).any()  # stage one's lacrimal is gone
    assert (merged == 1).sum() > 0 and (merged == 2).sum() == 0
    # the new voxels lie where the probability is, in physical space
    z, y, x = np.argwhere(merged == 1).mean(axis=0)
    centre = labels.TransformContinuousIndexToPhysicalPoint([float(x), float(y), float(z)])
    np.testing.assert_allclose(centre, grid.TransformContinuousIndexToPhysicalPoint([31.5] * 3), atol=4.0)
    # air (or padding past the scan) is never gland: half the grid as air keeps the other half only
    ct = np.full(before.shape, 40.0, np.float32)
    ct[:, :, : before.shape[2] // 4] = -1024.0
    in_air = sitk.GetArrayFromImage(merge_lacrimal(labels, {1: (grid, prob)}, ct))
    assert 0 < (in_air == 1).sum() < (merged == 1).sum() and not ((in_air == 1) & (ct < -300)).any()


def test_a_thin_gland_keeps_every_piece_on_a_coarse_ct_grid_and_an_island_is_dropped():
    """One gland is one component where the stage predicted it (1.25 mm), not on the CT grid:
    a 3 mm oblique plate sampled at 4.6 x 4.6 x 3 mm falls into face-connected pieces, and
    keeping the largest of those lost most of a real gland (OpenKBP pt_55: 0.38 of 0.83 ml)."""
    from scipy import ndimage

    labels = sitk.Image([30, 30, 40], sitk.sitkUInt8)
    labels.SetSpacing((4.6, 4.6, 3.0))
    labels.SetOrigin((-69.0, -69.0, -60.0))
    grid = model_grid(lacrimal_box([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]), [SPACING_MM] * 3)
    z, y, x = np.mgrid[0:64, 0:64, 0:64].astype(np.float32) * SPACING_MM
    across = (x + 0.6 * y + 0.3 * z) / np.sqrt(1.45)  # mm along the plate's oblique normal
    plate = (np.abs(across - 40) < 1.5) & (np.abs(z - 40) < 8) & (np.abs(x - 30) < 14)
    prob = np.where(plate, 0.9, 0.05).astype(np.float32)
    island = prob.copy()
    island[5:9, 5:9, 5:9] = 0.9  # 5 mm of "gland" far from the plate
    assert ndimage.label(island > 0.5)[1] == 2 and ndimage.label(plate)[1] == 1

    merged = sitk.GetArrayFromImage(merge_lacrimal(labels, {1: (grid, island)})) == 1
    assert np.array_equal(merged, sitk.GetArrayFromImage(merge_lacrimal(labels, {1: (grid, prob)})) == 1)  # island gone
    assert ndimage.label(merged)[1] >= 2  # the plate is in pieces on this grid ...
    voxel_ml, plate_ml = 4.6 * 4.6 * 3.0 / 1000, plate.sum() * SPACING_MM ** 3 / 1000
    assert merged.sum() * voxel_ml == pytest.approx(plate_ml, rel=0.15)  # ... and every piece is written


def test_merge_onto_an_oblique_grid_keeps_the_side():
    labels = reorient(_labels(), "oblique10", is_label=True)
    box = lacrimal_box(label_centroid(labels, 4), [0.0, 0.0, 40.0])
    grid = model_grid(box, [SPACING_MM] * 3)
    prob = np.full(grid.GetSize()[::-1], 0.8, np.float32)
    merged = merge_lacrimal(labels, {2: (grid, prob)})
    c = label_centroid(merged, 2)
    assert c is not None and c[0] > label_centroid(labels, 3)[0]
    assert label_centroid(merged, 1) is None


def test_stage_settings_refuse_a_plain_model():
    with pytest.raises(ValueError, match="not a lacrimal stage"):
        stage_settings({"name": "x"})
    offsets, box, spacing = stage_settings({"stage": {"kind": "lacrimal", "offsets_mm": {"1": [1, 2, 3]}, "box_mm": 80,
                                                      "spacing_mm": 1.25}})
    assert offsets == {1: [1.0, 2.0, 3.0]} and (box, spacing) == (80.0, 1.25)


def _stage_copy(src, dest, kind="lacrimal"):
    """A copy of a shipped one-stage model indexed as a stage (same network, any weights)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("evaluation.json"))
    index = json.loads((dest / METADATA).read_text())
    index["stage"] = {"kind": kind, "offsets_mm": {"1": OFFSETS[1], "2": OFFSETS[2]}, "box_mm": BOX_MM, "spacing_mm": SPACING_MM}
    index["files"] = file_table(dest)
    (dest / METADATA).write_text(json.dumps(index))
    return dest


def test_two_stage_folder_loads_verifies_and_refuses_tampering(tmp_path):
    base = resolve_model_folder("glandseg-v2")
    stage = _stage_copy(base, tmp_path / "stage")
    out = assemble_two_stage(base, stage, tmp_path / "two", "two-stage-test")
    info = load_model_info(str(out))
    assert info.name == "two-stage-test" and set(info.stages) == {"lacrimal"}
    assert info.stages["lacrimal"].metadata["stage"]["box_mm"] == BOX_MM
    assert not (out / "evaluation.json").exists()  # the base's numbers do not describe the new model
    with pytest.raises(FileExistsError):
        assemble_two_stage(base, stage, out, "again")

    ck = out / "lacrimal" / "fold_all" / "checkpoint_final.pth"
    data = bytearray(ck.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ck.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        load_model_info(str(out))


def test_a_two_stage_base_gives_its_stage_one_only(tmp_path):
    """Retraining the shipped model's lacrimal stage: the base's own stage and its prior
    weights (fitted on that stage) stay behind; its stage one and its card's stage-one part come."""
    base = resolve_model_folder("glandseg-v2")
    first = assemble_two_stage(base, _stage_copy(base, tmp_path / "old"), tmp_path / "first", "first")
    index = json.loads((first / METADATA).read_text())
    index["prior_weights"] = {"1": 4.0, "2": 22.0, "3": 0.7}
    (first / METADATA).write_text(json.dumps(index))
    new = _stage_copy(base, tmp_path / "new")
    (new / "model_card.md").write_text("# the retrained stage\n")
    index = json.loads((new / METADATA).read_text())
    index["files"] = file_table(new)
    (new / METADATA).write_text(json.dumps(index))

    out = assemble_two_stage(first, new, tmp_path / "second", "second")
    info = load_model_info(str(out))
    assert info.name == "second" and info.metadata["base_model"] == "first"
    assert (out / "lacrimal" / "model_card.md").read_text() == "# the retrained stage\n"
    assert info.prior_weights == {} and "prior_calibration" not in info.metadata
    card = (out / "model_card.md").read_text()
    assert card.startswith("# second\n") and card.count("## Stage one") == 1 and "Two stages: `first`" in card


@pytest.mark.parametrize("problem", ["outside", "missing", "not-a-stage"])
def test_bad_stage_entries_are_refused(tmp_path, problem):
    base = resolve_model_folder("glandseg-v2")
    stage = _stage_copy(base, tmp_path / "stage", kind="lacrimal" if problem != "not-a-stage" else "other")
    out = assemble_two_stage(base, stage, tmp_path / "two", "t")
    index = json.loads((out / METADATA).read_text())
    if problem == "outside":
        index["stages"] = {"lacrimal": "../stage"}
    elif problem == "missing":
        shutil.rmtree(out / "lacrimal")
        index["stages"] = {"lacrimal": "lacrimal"}
    index["files"] = file_table(out)
    (out / METADATA).write_text(json.dumps(index))
    with pytest.raises(ModelError, match={"outside": "outside", "missing": "missing", "not-a-stage": "not a 'lacrimal' stage"}[problem]):
        load_model_info(str(out))


def test_offsets_from_the_expert_outlines_point_medially_up_and_forward(shared_data):
    offsets = measure_offsets(shared_data / "tcia-hn-labels", "test")
    right, left = np.array(offsets[1]), np.array(offsets[2])
    assert 5 < right[0] < 25 and -25 < left[0] < -5  # medial: towards +x on the right, -x on the left
    assert -60 < right[1] < -35 and -60 < left[1] < -35  # anterior
    assert 60 < right[2] < 85 and 60 < left[2] < 85  # superior
    with pytest.raises(FileNotFoundError):
        measure_offsets(shared_data / "nothing-here")


def test_lacrimal_training_specs_are_seeded_and_from_the_training_split(shared_data):
    root = shared_data / "tcia-hn-labels"
    a = lacrimal_specs(root, 2, seed=0)
    assert a == lacrimal_specs(root, 2, seed=0) and a != lacrimal_specs(root, 2, seed=1)
    assert len(a) == 56 and all("/test/" in s.path.replace("\\", "/") for s in a)
    assert {s.rater for s in a} == {"oncologist", "radiographer"}
    assert max(abs(v) for s in a for j in s.jitter_mm for v in j) <= 6.0


def test_randomised_appearance_keeps_the_case_list_and_repaints_a_share_of_the_boxes(shared_data):
    """--randomise-appearance changes how a share of the phantoms look, never which scans,
    raters, seeds or box placements the stage trains on (0 is glandseg-v3's list)."""
    import dataclasses

    root = shared_data / "tcia-hn-labels"
    plain, mixed = lacrimal_specs(root, 2, seed=0), lacrimal_specs(root, 2, seed=0, randomised=0.5)
    assert {s.appearance for s in plain} == {"standard"}
    assert sum(s.appearance == "randomised" for s in mixed) == len(mixed) // 2
    assert [dataclasses.replace(s, appearance="standard") for s in mixed] == plain
    spec = next(s for s in mixed if s.appearance == "randomised")
    offsets = measure_offsets(root, "test")
    painted = prepare_boxes(spec, offsets)
    standard = prepare_boxes(dataclasses.replace(spec, appearance="standard"), offsets)
    for (_, ct_r, lab_r, info), (_, ct_s, lab_s, _) in zip(painted, standard):
        assert info["appearance"] == "randomised"
        assert np.array_equal(sitk.GetArrayViewFromImage(lab_r), sitk.GetArrayViewFromImage(lab_s))  # same gland
        assert not np.allclose(sitk.GetArrayViewFromImage(ct_r), sitk.GetArrayViewFromImage(ct_s), atol=5.0)


def test_training_boxes_hold_the_lacrimal_of_their_side(shared_data):
    root = shared_data / "tcia-hn-labels"
    spec = lacrimal_specs(root, 2, seed=0)[1]  # oblique storage, 0.8 x 0.8 x 3 mm
    boxes = prepare_boxes(spec, measure_offsets(root, "test"))
    assert [b[0] for b in boxes] == [spec.case_id + "_R", spec.case_id + "_L"]
    for (_, ct, lab, info), side in zip(boxes, (1, 2)):
        assert ct.GetSize() == (64, 64, 64) and ct.GetSpacing() == pytest.approx([SPACING_MM] * 3)
        values = np.unique(sitk.GetArrayViewFromImage(lab))
        assert set(values.tolist()) == {0, side}
        assert info["lacrimal_voxels"] > 150  # ~0.65 ml at 1.25 mm


def test_a_two_stage_model_installs_from_a_zip_with_its_stage(tmp_path):
    import zipfile

    from GlandSegLib.models.install import install_model

    base = resolve_model_folder("glandseg-v2")
    out = assemble_two_stage(base, _stage_copy(base, tmp_path / "stage"), tmp_path / "team-two", "team-two")
    zpath = tmp_path / "team-two.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in out.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(out.parent).as_posix())
    target = install_model(zpath)
    info = load_model_info("team-two")
    assert info.folder == target and set(info.stages) == {"lacrimal"}
    assert info.stages["lacrimal"].folder == target / "lacrimal"
    assert "lacrimal/fold_all/checkpoint_final.pth" in info.metadata["files"]


@pytest.mark.slow
def test_the_recipe_runs_end_to_end_on_one_phantom(shared_data, tmp_path):
    """train_lacrimal's main on one phantom, one short epoch: a loadable two-stage model."""
    from GlandSegLib.defaultmodel.train_lacrimal import main

    out = tmp_path / "tiny-v3"
    rc = main(["--base", "glandseg-v2", "--out", str(out), "--work", str(tmp_path / "work"),
               "--outlines", str(shared_data / "tcia-hn-labels"), "--limit", "1", "--epochs", "1",
               "--iterations", "2", "--init", "glandseg-v2", "--jobs", "1", "--threads", "2"])
    assert rc == 0
    info = load_model_info(str(out))
    assert info.name == "tiny-v3" and set(info.stages) == {"lacrimal"}
    stage = info.stages["lacrimal"].metadata
    assert stage["stage"]["box_mm"] == BOX_MM and stage["spacing_mm"] == [SPACING_MM] * 3
    assert stage["training"]["total_iterations"] == 2 and stage["crop"]["locator"].startswith("stage one's parotid")
    assert main(["--base", "glandseg-v2", "--out", str(out), "--work", str(tmp_path / "w2"),
                 "--outlines", str(shared_data / "tcia-hn-labels")]) == 8  # never overwrites unasked


def test_each_gland_keeps_its_largest_component():
    from GlandSegLib.segmentation.postprocess import keep_largest_component

    a = np.zeros((20, 20, 40), np.uint8)
    a[2:8, 2:8, 2:8] = 1
    a[12:14, 12:14, 2:4] = 1  # an island of the right lacrimal
    a[2:8, 2:8, 20:30] = 3
    a[12:14, 12:14, 30:32] = 3  # and one of the right parotid
    img = sitk.GetImageFromArray(a)
    every = sitk.GetArrayFromImage(keep_largest_component(img))
    assert (every == 1).sum() == 216 and (every == 3).sum() == 360
