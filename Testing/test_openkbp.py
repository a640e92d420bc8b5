"""OpenKBP as training cases: which voxels supervise what (parotid, certain background, ignore)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.glands import IGNORE_LABEL, gland
from GlandSegLib.defaultmodel.openkbp import (AIR_HU, MANDIBLE, RIGHT_PAROTID, RING_MM, list_patients,
                                 parotid_truth, partial_labels)

PAROTID_R, PAROTID_L = gland("parotid", "R").label, gland("parotid", "L").label


def synthetic(spacing=(3.0, 3.0, 1.5)) -> tuple[sitk.Image, sitk.Image]:
    """A body of soft tissue in air, a right parotid block, a mandible block, no left parotid."""
    hu = np.full((40, 40, 40), -1000, np.int16)
    hu[:, 5:35, 5:35] = 30
    oar = np.zeros_like(hu, dtype=np.uint8)
    oar[15:25, 15:20, 8:14] = RIGHT_PAROTID
    oar[15:25, 15:20, 22:30] = MANDIBLE
    ct, lab = sitk.GetImageFromArray(hu), sitk.GetImageFromArray(oar)
    for img in (ct, lab):
        img.SetSpacing(spacing)
        img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # OpenKBP's storage
    return ct, lab


def test_partial_labels_supervise_only_what_is_known():
    ct, oar = synthetic()
    out = sitk.GetArrayFromImage(partial_labels(ct, oar))
    hu, t = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(oar)
    assert np.array_equal(out == PAROTID_R, t == RIGHT_PAROTID)
    assert not (out == PAROTID_L).any()  # not outlined: its place is unknown, never labelled
    assert (out[hu < AIR_HU] == 0).all()
    assert (out[t == MANDIBLE] == 0).all()
    body_unknown = (hu >= AIR_HU) & (t == 0)
    assert (out[body_unknown] != PAROTID_R).all()
    # the ring: background within RING_MM of the parotid in millimetres (x spacing 3 mm: 2 voxels, z 1.5 mm: 4)
    assert out[20, 17, 14] == 0 and out[20, 17, 15] == 0 and out[20, 17, 16] == IGNORE_LABEL
    assert out[25, 17, 10] == 0 and out[28, 17, 10] == 0 and out[30, 17, 10] == IGNORE_LABEL
    assert int(RING_MM) == 6
    assert (out[body_unknown] == IGNORE_LABEL).mean() > 0.8


def test_partial_labels_refuse_mismatched_grids():
    ct, oar = synthetic()
    with pytest.raises(ValueError, match="size"):
        partial_labels(ct, oar[:, :, :20])


def test_parotid_truth_keeps_parotids_in_glandseg_values():
    ct, oar = synthetic()
    truth = sitk.GetArrayFromImage(parotid_truth(oar))
    assert set(np.unique(truth)) == {0, PAROTID_R}
    assert parotid_truth(oar).GetDirection() == oar.GetDirection()


def test_real_patients_left_parotid_at_plus_x(shared_data):
    patients = list_patients(shared_data / "openkbp" / "train-pats")
    assert len(patients) == 170 and patients[0].name == "pt_1" and patients[1].name == "pt_2"
    ct = sitk.ReadImage(str(patients[0] / "ct.nrrd"))
    oar = sitk.ReadImage(str(patients[0] / "oar_labels.nrrd"))
    lab = partial_labels(ct, oar)
    a = sitk.GetArrayFromImage(lab)
    centre = {v: ct.TransformContinuousIndexToPhysicalPoint(np.argwhere(a == v).mean(0)[::-1].tolist())[0]
              for v in (PAROTID_R, PAROTID_L)}
    assert centre[PAROTID_L] > centre[PAROTID_R]  # LPS: left is +x
    body = sitk.GetArrayFromImage(ct) >= AIR_HU
    assert (a[body] == IGNORE_LABEL).mean() > 0.5 and (a == 0).mean() > 0.5  # most of the body unknown, air known


def test_list_patients_refuses_an_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no OpenKBP patients"):
        list_patients(tmp_path)


def test_below_the_parotids_is_certain_background_in_patient_coordinates():
    """OpenKBP stores slices head to feet (direction z -1): "below" must be physical, not index order."""
    ct, oar = synthetic()  # parotid on slices 15..24; slice k lies at z = -1.5 k mm
    out = sitk.GetArrayFromImage(partial_labels(ct, oar, ring_mm=0.0, below_parotids_mm=6.0))
    body = sitk.GetArrayFromImage(ct) >= AIR_HU
    lowest_z = -1.5 * 24
    k_cut = int(np.ceil((-lowest_z + 6.0) / 1.5))  # first slice strictly more than 6 mm below
    assert (out[k_cut + 1:][body[k_cut + 1:]] == 0).all()
    assert (out[:15][body[:15]] == IGNORE_LABEL).all()  # above: unknown (lacrimal glands live there)
    flipped_ct, flipped_oar = (sitk.Flip(img, [False, False, True]) for img in (ct, oar))
    flipped = sitk.GetArrayFromImage(partial_labels(flipped_ct, flipped_oar, ring_mm=0.0, below_parotids_mm=6.0))
    np.testing.assert_array_equal(flipped[::-1], out)  # same anatomy stored the other way: same labels
