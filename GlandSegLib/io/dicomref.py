"""The source CT series of a DICOM result: which file is which slice, and what to copy.

Why a module of its own: a DICOM SEG and an RTSTRUCT are only useful if they point at the
exact CT instances they were drawn on (Referenced Series, Frame of Reference, SOP Instance
UIDs per slice) and belong to the same patient and study, or a PACS and a planning system
file them apart. SimpleITK reads the series as a volume; this module maps each slice
index k of that volume back to its file by the slice's physical position (never by file
order), so the references are right whatever the storage order.

Privacy rule (one place, used by both writers): a derived object carries the source's
patient *identifiers* (Patient ID, Patient's Name: the objects must attach to the same
patient) and the General Study identifiers (Study Instance UID, Study ID, date, time,
accession number, referring physician: DICOM requires them to match the study). Nothing
else of the patient is copied: birth date and sex are type 2 and are written empty; age,
weight, size, addresses, comments, other IDs and every private tag are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from GlandSegLib.errors import InvalidInputError

# Copied from the source because DICOM needs them identical across a study.
PATIENT_IDENTIFIERS = ("PatientName", "PatientID")
PATIENT_EMPTY_TYPE2 = ("PatientBirthDate", "PatientSex")
STUDY_IDENTIFIERS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")
_TYPE2_STUDY = ("StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


@dataclass(frozen=True)
class SliceRef:
    """One CT instance: what a contour or a SEG frame must reference."""

    k: int  # slice index in the SimpleITK volume
    sop_class_uid: str
    sop_instance_uid: str
    position: tuple[float, float, float]  # ImagePositionPatient, LPS mm


@dataclass
class SourceSeries:
    """A CT series as a volume grid plus the per-slice DICOM references."""

    image: sitk.Image  # the CT as read (defines the grid the labels are on)
    slices: list[SliceRef]  # index k -> instance, len == image depth
    files: list[Path]  # index k -> file
    series_instance_uid: str
    frame_of_reference_uid: str
    header: dict[str, object]  # patient identifiers and study attributes to copy (see module doc)
    modality: str = "CT"

    @property
    def study_instance_uid(self) -> str:
        return str(self.header["StudyInstanceUID"])


def load_source_series(files: Sequence[str | Path], image: sitk.Image) -> SourceSeries:
    """Match each file to its slice of `image` by position; refuse a mismatch.

    `image` is the volume SimpleITK built from these files (imageio.read_ct). The slice of
    a file is the rounded continuous z index of its ImagePositionPatient; every slice must
    be matched exactly once and lie on the grid (within 0.1 voxel).
    """
    import pydicom

    n = image.GetSize()[2]
    refs: dict[int, SliceRef] = {}
    paths: dict[int, Path] = {}
    first = None
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types on a damaged file
            raise InvalidInputError(f"{f}: unreadable DICOM ({type(exc).__name__})") from None
        if first is None:
            first = ds
        try:
            pos = tuple(float(v) for v in ds.ImagePositionPatient)
            uid, cls = str(ds.SOPInstanceUID), str(ds.SOPClassUID)
        except AttributeError as exc:
            raise InvalidInputError(f"{f}: missing {exc.args[0] if exc.args else 'attribute'} needed to reference it") from None
        cidx = np.asarray(image.TransformPhysicalPointToContinuousIndex(pos))
        k = int(round(cidx[2]))
        if not 0 <= k < n or np.max(np.abs(cidx - np.round(cidx))) > 0.1 or abs(cidx[0]) > 0.1 or abs(cidx[1]) > 0.1:
            raise InvalidInputError(f"{f}: its position {pos} is not a slice of the CT volume")
        if k in refs:
            raise InvalidInputError(f"{f}: two files for slice {k} of the CT")
        refs[k] = SliceRef(k, cls, uid, pos)
        paths[k] = Path(f)
    if first is None or len(refs) != n:
        raise InvalidInputError(f"the CT series has {n} slices but {len(refs)} files could be matched to them")
    for attr in ("SeriesInstanceUID", "FrameOfReferenceUID", "StudyInstanceUID"):
        if not str(getattr(first, attr, "") or ""):
            raise InvalidInputError(f"the CT series has no {attr}: a DICOM result could not reference it")
    return SourceSeries(image=image, slices=[refs[k] for k in range(n)], files=[paths[k] for k in range(n)],
                        series_instance_uid=str(first.SeriesInstanceUID),
                        frame_of_reference_uid=str(first.FrameOfReferenceUID),
                        header=identity_header(first), modality=str(getattr(first, "Modality", "CT")))


def identity_header(ds: object) -> dict[str, object]:
    """The only attributes of the source a derived object copies (see module docstring)."""
    header: dict[str, object] = {}
    for attr in PATIENT_IDENTIFIERS + STUDY_IDENTIFIERS:
        value = getattr(ds, attr, None)
        header[attr] = "" if value is None else value
    for attr in PATIENT_EMPTY_TYPE2:
        header[attr] = ""
    return header


def apply_header(target: object, header: dict[str, object]) -> None:
    """Set the copied identifiers on a pydicom Dataset (type-2 ones present even if empty)."""
    for attr, value in header.items():
        setattr(target, attr, value)


def now_date_time() -> tuple[str, str]:
    """DICOM DA and TM strings for 'now' (content/instance creation date and time)."""
    t = datetime.now()
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S")
