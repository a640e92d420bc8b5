"""The default model's training set: which cases, seeded, and cropped exactly as inference crops."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import IGNORE_LABEL
from GlandSegLib.defaultmodel.train_default import SPACING, openkbp_specs, outline_specs, prepare_case


def test_outline_specs_are_seeded_and_use_the_training_split_only(shared_data):
    root = shared_data / "tcia-hn-labels"
    a, b = outline_specs(root, 3, seed=0), outline_specs(root, 3, seed=0)
    assert a == b and outline_specs(root, 3, seed=1) != a
    assert len(a) == 28 * 3 and len({s.case_id for s in a}) == len(a)
    assert all("/test/" in s.path.replace("\\", "/") for s in a)  # validation scans are held out
    assert {s.rater for s in a} == {"oncologist", "radiographer"}
    assert {s.field for s in a} == {"head", "headneck", "wholebody"}
    assert sum(s.variant == "lps" for s in a) == len(a) // 2


def test_openkbp_specs_refuse_the_held_out_split(shared_data):
    assert len(openkbp_specs(shared_data / "openkbp" / "train-pats")) == 170
    with pytest.raises(ValueError, match="held out"):
        openkbp_specs(shared_data / "openkbp" / "validation-pats")


@pytest.mark.parametrize("source", ["outline", "openkbp"])
def test_prepared_cases_sit_on_the_model_grid(shared_data, source):
    spec = (outline_specs(shared_data / "tcia-hn-labels", 2, seed=0)[1] if source == "outline"
            else openkbp_specs(shared_data / "openkbp" / "train-pats")[0])
    case_id, ct, lab, info = prepare_case(spec, SPACING)
    assert case_id == spec.case_id and "skipped" not in info
    assert ct.GetSpacing() == pytest.approx(SPACING) and lab.GetSize() == ct.GetSize()
    assert ct.GetDirection() == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    values = set(np.unique(sitk.GetArrayViewFromImage(lab)).tolist())
    if source == "outline":  # every gland the rater outlined, nothing unsupervised
        assert {3, 4} <= values <= {0, 1, 2, 3, 4, 5, 6}
    else:  # parotids, certain background, and the unknown rest of the body
        assert values == {0, 3, 4, IGNORE_LABEL}
    assert info["gland_voxels"][2] > 0 and info["gland_voxels"][3] > 0


@pytest.mark.parametrize("share", [0.0, 0.25, 0.5, 1.0])
def test_a_randomised_share_is_spread_evenly_so_a_short_run_keeps_it(share):
    from GlandSegLib.defaultmodel.train_default import appearance_of

    kinds = [appearance_of(i, share) for i in range(40)]
    assert kinds.count("randomised") == round(40 * share)
    assert [appearance_of(i, share) for i in range(8)].count("randomised") == round(8 * share)  # --limit 8


@pytest.mark.parametrize("module", ["train_default", "train_lacrimal"])
def test_both_recipes_refuse_a_randomised_share_outside_0_to_1(module, capsys):
    import importlib

    parse = importlib.import_module(f"GlandSegLib.defaultmodel.{module}").parse_args
    base = ["--out", "o", "--work", "w", "--outlines", "x"] + (["--base", "glandseg-v2"] if module == "train_lacrimal" else [])
    assert parse(base + ["--randomise-appearance", "0.5"]).randomise_appearance == 0.5
    with pytest.raises(SystemExit):
        parse(base + ["--randomise-appearance", "1.5"])
    assert "between 0 and 1" in capsys.readouterr().err

def test_pseudo_labels_join_an_openkbp_case_where_it_says_nothing(shared_data, tmp_path):
    """A pseudo-label file beside one patient: its gland lands in that case's training crop by
    physical position, the outlined parotids and certain background stay, other patients
    are untouched."""
    from GlandSegLib.defaultmodel.pseudo_labels import FILE_NAME
    from GlandSegLib.glands import gland

    train = shared_data / "openkbp" / "train-pats"
    plain = openkbp_specs(train)[0]
    _, ct, lab, _ = prepare_case(plain, SPACING)
    before = sitk.GetArrayFromImage(lab)
    sub_r = gland("submandibular", "R").label
    # a block of "gland" over the middle of the crop, on a coarser grid of its own
    pseudo = sitk.Image([20, 20, 20], sitk.sitkUInt8) + sub_r
    pseudo.SetSpacing((3.0, 3.0, 3.0))
    centre = ct.TransformContinuousIndexToPhysicalPoint([s / 2 for s in ct.GetSize()])
    pseudo.SetOrigin([c - 30.0 for c in centre])
    (tmp_path / plain.path.split("/")[-1]).mkdir()
    sitk.WriteImage(pseudo, str(tmp_path / plain.path.split("/")[-1] / FILE_NAME))

    specs = openkbp_specs(train, tmp_path)
    assert specs[0].pseudo_labels and not any(s.pseudo_labels for s in specs[1:])
    _, ct2, lab2, info = prepare_case(specs[0], SPACING)
    after = sitk.GetArrayFromImage(lab2)
    assert info["pseudo_labels"] and ct2.GetSize() == ct.GetSize()
    assert info["gland_voxels"][sub_r - 1] > 0
    changed = after != before
    assert changed.any() and (before[changed] == IGNORE_LABEL).all() and (after[changed] == sub_r).all()
    assert np.array_equal(after == 3, before == 3) and np.array_equal(after == 4, before == 4)
