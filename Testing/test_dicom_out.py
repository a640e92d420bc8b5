"""DICOM SEG and RTSTRUCT results read back with highdicom/pydicom: geometry, references, codes, privacy.

The source is a phantom CT stored feet-first as a real DICOM series that carries more
patient data than a derived object may copy (birth date, sex, age, weight, comments);
the labels are the phantom's own, so the SEG must reproduce them voxel for voxel.
"""

from __future__ import annotations

import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_writer import write_ct_series  # noqa: E402

from GlandSegLib.io.dicom_out import DICOM_OUTPUT_FILES, RTSTRUCT_FILE, SEG_FILE, write_dicom_outputs  # noqa: E402
from GlandSegLib.errors import InvalidInputError  # noqa: E402
from GlandSegLib.glands import BY_LABEL, GLANDS  # noqa: E402
from GlandSegLib.io.images import read_ct  # noqa: E402
from GlandSegLib.defaultmodel.phantom import make_phantom, reorient  # noqa: E402
from GlandSegLib.io.rtstruct import rasterize, read_rtstruct  # noqa: E402

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("dicomout")
    ph = make_phantom(11, field="head", spacing=(2.0, 2.0, 3.0))
    write_ct_series(reorient(ph.ct, "feet_first"), root / "CT", patient_name="Doe^Jane")
    for f in sorted((root / "CT").iterdir()):  # patient data a derived object must not copy
        ds = pydicom.dcmread(f)
        ds.PatientSex, ds.PatientAge, ds.PatientWeight, ds.PatientComments = "F", "071Y", "61", "allergic to iodine"
        ds.AccessionNumber, ds.StudyID, ds.StudyDate = "ACC42", "S7", "20240102"
        ds.save_as(f)
    loaded = read_ct(root / "CT")
    labels = sitk.Resample(ph.labels, loaded.image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    names = write_dicom_outputs(labels, loaded.series.files, root / "out")
    cts = {c.SOPInstanceUID: c for c in (pydicom.dcmread(f, stop_before_pixels=True) for f in loaded.series.files)}
    return root, loaded, labels, names, cts


def test_both_files_are_written(written):
    root, _, _, names, _ = written
    assert names == list(DICOM_OUTPUT_FILES)
    assert sorted(p.name for p in (root / "out").iterdir()) == sorted(DICOM_OUTPUT_FILES)


@pytest.mark.parametrize("name", DICOM_OUTPUT_FILES)
def test_same_patient_and_study_and_nothing_else_of_the_patient(written, name):
    root, _, _, _, cts = written
    src = next(iter(cts.values()))
    ds = pydicom.dcmread(root / "out" / name)
    assert ds.PatientID == src.PatientID and str(ds.PatientName) == str(src.PatientName)
    for attr in ("StudyInstanceUID", "StudyID", "StudyDate", "AccessionNumber"):
        assert ds[attr].value == src[attr].value, attr
    assert ds.PatientBirthDate == "" and ds.PatientSex == ""  # type 2: present, empty
    for attr in ("PatientAge", "PatientWeight", "PatientComments", "OtherPatientIDs"):
        assert attr not in ds, attr
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID and ds.SOPInstanceUID not in cts


def test_seg_references_the_source_series_and_reproduces_the_labels(written):
    root, loaded, labels, _, cts = written
    seg = hd.seg.segread(root / "out" / SEG_FILE)
    src = next(iter(cts.values()))
    assert seg.SOPClassUID == SEG_SOP_CLASS
    assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == set(cts)
    # each frame sits at the position of the CT instance it is derived from
    for frame in seg.PerFrameFunctionalGroupsSequence:
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        pos = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(pos, [float(v) for v in cts[ref].ImagePositionPatient], atol=1e-3)
    # voxel for voxel: the CT's slices in volume order, segment numbers back to label values
    uids = [None] * labels.GetSize()[2]
    for uid, c in cts.items():
        k = int(round(loaded.image.TransformPhysicalPointToContinuousIndex([float(v) for v in c.ImagePositionPatient])[2]))
        uids[k] = uid
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, assert_missing_frames_are_empty=True)
    to_label = {s.SegmentNumber: next(g.label for g in GLANDS if g.name == s.SegmentLabel) for s in seg.SegmentSequence}
    got = np.zeros(pixels.shape, np.uint8)
    for number, label in to_label.items():
        got[pixels == number] = label
    assert np.array_equal(got, sitk.GetArrayFromImage(labels))


def test_seg_segments_carry_snomed_codes_and_laterality(written):
    root = written[0]
    seg = hd.seg.segread(root / "out" / SEG_FILE)
    seen = set()
    for s in seg.SegmentSequence:
        g = next(g for g in GLANDS if g.name == s.SegmentLabel)
        seen.add(g.label)
        t = s.SegmentedPropertyTypeCodeSequence[0]
        assert (t.CodingSchemeDesignator, t.CodeValue) == g.structure[:2]
        assert s.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "123037004"
        m = t.SegmentedPropertyTypeModifierCodeSequence[0]
        assert (m.CodingSchemeDesignator, m.CodeValue) == g.laterality[:2]
        assert s.TrackingID == g.tg263 and s.SegmentAlgorithmType == "AUTOMATIC"
    assert seen == set(BY_LABEL)


def test_rtstruct_has_tg263_names_and_contours_on_the_source_grid(written):
    root, loaded, labels, _, cts = written
    ss = read_rtstruct(root / "out" / RTSTRUCT_FILE)
    src = next(iter(cts.values()))
    assert ss.frame_of_reference_uids == [src.FrameOfReferenceUID]
    assert ss.referenced_series_uids == [src.SeriesInstanceUID]
    assert {r.name for r in ss.rois} == {g.tg263 for g in GLANDS}
    arr = sitk.GetArrayFromImage(labels)
    for roi in ss.rois:
        mask, _ = rasterize(roi.contours, loaded.image)
        assert np.array_equal(mask, arr == roi.number), roi.name


def test_an_empty_result_gives_a_clear_error_and_no_files(written, tmp_path):
    _, loaded, labels, _, _ = written
    empty = sitk.Image(labels.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(labels)
    with pytest.raises(InvalidInputError, match="no gland"):
        write_dicom_outputs(empty, loaded.series.files, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_labels_on_another_grid_are_refused(written, tmp_path):
    _, loaded, labels, _, _ = written
    shifted = sitk.Image(labels)
    shifted.SetOrigin([o + 0.7 for o in labels.GetOrigin()])
    with pytest.raises(InvalidInputError, match="not a slice"):
        write_dicom_outputs(shifted, loaded.series.files, tmp_path)
