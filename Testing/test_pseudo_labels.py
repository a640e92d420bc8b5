"""Real-CT pseudo-labels: which voxels a plausible gland supervises, which it leaves alone, and
that they merge onto a training crop by physical position, never over what OpenKBP outlines."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.defaultmodel.pseudo_labels import BAND_MM, CORE_MM, SHELL_MM, label_map, merge, plausible
from GlandSegLib.defaultmodel.real_ct import POSITION_REGION_SD
from GlandSegLib.glands import IGNORE_LABEL, gland

SUB_R, SUB_L = gland("submandibular", "R").label, gland("submandibular", "L").label
PAROTID_R = gland("parotid", "R").label


def sphere(shape, centre_zyx, radius_mm, spacing_zyx) -> np.ndarray:
    z, y, x = np.indices(shape)
    d = [(a - c) * s for a, c, s in zip((z, y, x), centre_zyx, spacing_zyx)]
    return d[0] ** 2 + d[1] ** 2 + d[2] ** 2 <= radius_mm ** 2


@pytest.mark.parametrize("spacing_zyx", [(2.0, 2.0, 2.0), (3.0, 1.0, 2.0)])
def test_core_band_and_shell_are_measured_in_millimetres(spacing_zyx):
    shape, centre, radius = (40, 60, 50), (20, 30, 25), 10.0
    gl = sphere(shape, centre, radius, spacing_zyx)
    out = label_map({SUB_R: gl}, spacing_zyx)
    z, y, x = np.indices(shape)
    r = np.sqrt(sum(((a - c) * s) ** 2 for a, c, s in zip((z, y, x), centre, spacing_zyx)))
    # distances from the sphere's surface, with a voxel's slack for the discrete sphere
    slack = max(spacing_zyx)
    assert (out[r <= radius - CORE_MM - slack] == SUB_R).all()
    assert not (out[r > radius] == SUB_R).any()
    # along each axis through the centre the core ends CORE_MM inside the surface, to within a voxel
    for axis, s in enumerate(spacing_zyx):
        line = np.moveaxis(out, axis, 0)[(slice(None),) + tuple(c for i, c in enumerate(centre) if i != axis)]
        extent = np.abs(np.flatnonzero(line == SUB_R) - centre[axis]).max() * s
        assert abs(extent - (radius - CORE_MM)) <= s, (axis, extent)
    assert (out[(r > radius + slack) & (r <= radius + BAND_MM - slack)] == IGNORE_LABEL).all()
    assert (out[(r > radius + BAND_MM + slack) & (r <= radius + SHELL_MM - slack)] == 0).all()
    assert (out[r > radius + SHELL_MM + slack] == IGNORE_LABEL).all()


def test_a_neighbours_band_is_never_called_background():
    sp = (2.0, 2.0, 2.0)
    shape = (30, 30, 60)
    right = sphere(shape, (15, 15, 18), 8.0, sp)
    left = sphere(shape, (15, 15, 30), 8.0, sp)  # surfaces 8 mm apart: each band lies in the other's shell
    out = label_map({SUB_R: right, SUB_L: left}, sp)
    for mask in (right, left):
        band = ndimage.distance_transform_edt(~mask, sampling=sp) <= BAND_MM
        assert not (out[band] == 0).any()
    assert (out == SUB_R).any() and (out == SUB_L).any()


def test_label_map_refuses_nothing_to_label():
    with pytest.raises(ValueError):
        label_map({}, (2.0, 2.0, 2.0))


def test_only_a_plausible_gland_is_taken():
    expert = {"p05_ml": 5.5, "p95_ml": 13.3}
    reference = {"reference": "parotid_r", "mean_mm": [10.0, -20.0, -40.0], "sd_mm": [4.0, 5.0, 6.0]}
    parotid = [-60.0, 0.0, 0.0]
    where = [-50.0, -20.0, -40.0]  # exactly where the experts' lie
    assert plausible(8.0, where, parotid, expert, reference) is None
    assert "volume" in plausible(3.0, where, parotid, expert, reference)
    assert "volume" in plausible(20.0, where, parotid, expert, reference)
    assert "not outlined" in plausible(8.0, where, None, expert, reference)
    # just inside and just outside the 95% region along z (POSITION_REGION_SD x 6 mm)
    inside = [-50.0, -20.0, -40.0 + 0.99 * POSITION_REGION_SD * 6.0]
    outside = [-50.0, -20.0, -40.0 + 1.01 * POSITION_REGION_SD * 6.0]
    assert plausible(8.0, inside, parotid, expert, reference) is None
    assert "SD" in plausible(8.0, outside, parotid, expert, reference)


def _image(arr: np.ndarray, spacing, origin, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def test_merge_fills_only_what_the_partial_labels_leave_open_by_physical_position():
    # partial labels on a 1 mm crop: a parotid block, certain background, ignore elsewhere
    lab = np.full((30, 30, 30), IGNORE_LABEL, np.uint8)
    lab[:, :, :5] = 0  # air
    lab[10:20, 10:20, 10:15] = PAROTID_R
    labels = _image(lab, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    # pseudo-labels on a coarser 2 mm grid shifted by 10 mm in x, flipped storage in z
    ps = np.full((15, 15, 15), IGNORE_LABEL, np.uint8)
    ps[:, :, :] = SUB_R  # gland everywhere it covers: only covered, open voxels may change
    pseudo = _image(ps, (2.0, 2.0, 2.0), (10.0, 0.0, 28.0), (1, 0, 0, 0, 1, 0, 0, 0, -1))
    out = sitk.GetArrayFromImage(merge(labels, pseudo))
    assert (out[10:20, 10:20, 10:15] == PAROTID_R).all()  # an outline always wins
    assert (out[:, :, :5] == 0).all()  # the air too
    ones = sitk.Image(pseudo.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(pseudo)
    covered = sitk.GetArrayFromImage(sitk.Resample(ones, labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) == 1
    open_ = lab == IGNORE_LABEL
    assert (out[covered & open_] == SUB_R).all()
    assert (out[~covered & open_] == IGNORE_LABEL).all()  # beyond the pseudo-labels: still no statement
    assert covered[:, :, 10:].any() and not covered[:, :, :9].any()  # the x shift was applied
    assert merge(labels, pseudo).GetOrigin() == labels.GetOrigin()
    assert (sitk.GetArrayFromImage(labels) == lab).all()  # the input is not modified


def test_the_held_out_ct_are_refused_before_any_model_is_loaded(tmp_path, capsys):
    from GlandSegLib.defaultmodel.pseudo_labels import main

    with pytest.raises(SystemExit) as exc:
        main(["--model", "no-such-model", "--openkbp", str(tmp_path / "validation-pats"), "--outlines", str(tmp_path),
              "--out", str(tmp_path / "out")])
    assert exc.value.code == 2 and "held out" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_models_that_made_a_folder_are_read_from_every_shard_summary(tmp_path):
    """A model card names the labelling model, not the builder's folder; shards each write a summary."""
    import json

    from GlandSegLib.defaultmodel.pseudo_labels import labelling_models

    with pytest.raises(FileNotFoundError, match="no pseudo_labels"):
        labelling_models(tmp_path)
    (tmp_path / "pseudo_labels.1of4.json").write_text(json.dumps({"model": "glandseg-v8", "patients": []}))
    (tmp_path / "pseudo_labels.3of4.json").write_text(json.dumps({"model": "glandseg-v8", "patients": []}))
    assert labelling_models(tmp_path) == ["glandseg-v8"]
    (tmp_path / "pseudo_labels.json").write_text(json.dumps({"model": "glandseg-v7", "patients": []}))
    assert labelling_models(tmp_path) == ["glandseg-v7", "glandseg-v8"]  # a mixed folder is named as mixed
    (tmp_path / "pseudo_labels.2of4.json").write_text("{truncated")
    with pytest.raises(ValueError, match="2of4.json is not a pseudo-label summary"):
        labelling_models(tmp_path)


def test_training_refuses_a_pseudo_label_folder_without_summary_before_preparing(tmp_path, capsys):
    from GlandSegLib.defaultmodel.train_default import main

    code = main(["--out", str(tmp_path / "model"), "--work", str(tmp_path / "work"), "--outlines", str(tmp_path),
                 "--pseudo-labels", str(tmp_path / "nothing")])
    assert code == 2 and "no pseudo_labels" in capsys.readouterr().err
    assert not (tmp_path / "work").exists() and not (tmp_path / "model").exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "pseudo_labels.json").write_text('{"patients": []}')  # no model named: the card could not say who labelled
    code = main(["--out", str(tmp_path / "model"), "--work", str(tmp_path / "work"), "--outlines", str(tmp_path),
                 "--pseudo-labels", str(broken)])
    assert code == 2 and "is not a pseudo-label summary" in capsys.readouterr().err
    assert not (tmp_path / "work").exists() and not (tmp_path / "model").exists()
