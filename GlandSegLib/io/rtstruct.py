"""RT Structure Sets: read one and rasterize its contours onto a CT grid; write one from labels.

Why GlandSeg does this itself (with pydicom, no RT toolkit): the cohorts it learns from
are mostly RTSTRUCTs from planning systems, and the conversion decides what the model
learns. Every step is explicit and in physical space:

* Reading: each ROI's CLOSED_PLANAR contours as (n, 3) arrays in LPS mm (DICOM patient
  coordinates are LPS, like SimpleITK's physical space). POINT and OPEN_PLANAR items are
  not areas and are skipped (counted).
* Rasterizing: contour points go to continuous index space through the CT's own geometry
  (origin, spacing, direction: RAS, feet-first, permuted and oblique grids all work). A
  contour must lie in one image plane (its z index within a quarter voxel of an integer);
  contours between or outside the CT's slices are skipped and counted, never moved.
  In its plane a voxel belongs to the polygon when its centre is inside it; several
  contours of one ROI on one slice combine by the even-odd rule (XOR), which is how
  planning systems encode holes and separate islands alike.
* Writing: each gland's mask, slice by slice, is outlined at the 0.5 iso-line (marching
  squares, 4-connected foreground), so rasterizing the written contours gives back the
  mask: a voxel centre is inside by half a voxel, a background centre outside by as much.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from GlandSegLib.io.dicomref import SourceSeries, apply_header, now_date_time
from GlandSegLib.errors import InvalidInputError
from GlandSegLib.glands import GLANDS

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # what RTReferencedStudySequence names
PLANE_TOLERANCE_VOXELS = 0.25  # a contour further than this from every slice plane is not on this CT


@dataclass
class Roi:
    number: int
    name: str
    contours: list[np.ndarray] = field(default_factory=list)  # (n, 3) LPS mm, closed planar
    skipped_items: int = 0  # POINT / OPEN_PLANAR / degenerate contours


@dataclass
class StructureSet:
    path: Path
    frame_of_reference_uids: list[str]
    referenced_series_uids: list[str]
    rois: list[Roi]


@dataclass
class RasterStats:
    contours: int = 0
    off_plane: int = 0  # not lying in one slice plane of the CT (oblique or between slices)
    outside: int = 0  # beyond the CT's slices

    def add(self, other: "RasterStats") -> None:
        self.contours += other.contours
        self.off_plane += other.off_plane
        self.outside += other.outside


def is_rtstruct(path: Path) -> bool:
    """Cheap check (header only) used when searching a patient folder for structure sets."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID"])
    except Exception:
        return False
    return str(getattr(ds, "Modality", "")) == "RTSTRUCT" or str(getattr(ds, "SOPClassUID", "")) == RTSTRUCT_SOP_CLASS


def read_rtstruct(path: str | Path) -> StructureSet:
    """All ROIs with their closed planar contours; InvalidInputError for a damaged file."""
    import pydicom

    path = Path(path)
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:
        raise InvalidInputError(f"{path}: unreadable DICOM ({type(exc).__name__})") from None
    if str(getattr(ds, "Modality", "")) != "RTSTRUCT":
        raise InvalidInputError(f"{path}: not an RT Structure Set (modality {getattr(ds, 'Modality', '?')})")
    rois: dict[int, Roi] = {}
    for item in getattr(ds, "StructureSetROISequence", []):
        try:
            rois[int(item.ROINumber)] = Roi(int(item.ROINumber), str(item.ROIName))
        except (AttributeError, ValueError, TypeError):
            raise InvalidInputError(f"{path}: a StructureSetROISequence item lacks ROINumber or ROIName") from None
    for item in getattr(ds, "ROIContourSequence", []):
        number = int(getattr(item, "ReferencedROINumber", -1))
        roi = rois.get(number)
        if roi is None:
            raise InvalidInputError(f"{path}: contours for ROI number {number}, which the structure set does not declare")
        for c in getattr(item, "ContourSequence", []):
            kind = str(getattr(c, "ContourGeometricType", ""))
            try:
                pts = _contour_points(c) if kind == "CLOSED_PLANAR" else None
            except (ValueError, TypeError):
                raise InvalidInputError(f"{path}: ROI {roi.name!r} has non-numeric contour data") from None
            if pts is None:
                roi.skipped_items += 1
                continue
            roi.contours.append(pts)
    frames, series = [], []
    for ref in getattr(ds, "ReferencedFrameOfReferenceSequence", []):
        frames.append(str(getattr(ref, "FrameOfReferenceUID", "")))
        for study in getattr(ref, "RTReferencedStudySequence", []):
            for s in getattr(study, "RTReferencedSeriesSequence", []):
                series.append(str(getattr(s, "SeriesInstanceUID", "")))
    return StructureSet(path, [f for f in frames if f], [s for s in series if s], [rois[k] for k in sorted(rois)])


def _physical_to_index(points: np.ndarray, reference: sitk.Image) -> np.ndarray:
    """(n, 3) LPS mm -> (n, 3) continuous (x, y, z) indices, vectorized."""
    d = np.array(reference.GetDirection()).reshape(3, 3)
    m = d @ np.diag(reference.GetSpacing())
    return np.linalg.solve(m, (points - np.asarray(reference.GetOrigin())).T).T


def rasterize(contours: Sequence[np.ndarray], reference: sitk.Image) -> tuple[np.ndarray, RasterStats]:
    """Boolean (z, y, x) mask on `reference`'s grid from planar contours (see module doc)."""
    from skimage.draw import polygon

    nx, ny, nz = reference.GetSize()
    mask = np.zeros((nz, ny, nx), dtype=bool)
    stats = RasterStats()
    for pts in contours:
        stats.contours += 1
        idx = _physical_to_index(np.asarray(pts, dtype=float), reference)
        kz = idx[:, 2]
        k = int(np.round(kz.mean()))
        if np.max(np.abs(kz - k)) > PLANE_TOLERANCE_VOXELS:
            stats.off_plane += 1
            continue
        if not 0 <= k < nz:
            stats.outside += 1
            continue
        rr, cc = polygon(idx[:, 1], idx[:, 0], shape=(ny, nx))
        layer = np.zeros((ny, nx), dtype=bool)
        layer[rr, cc] = True
        mask[k] ^= layer
    return mask, stats


# --------------------------------------------------------------------------- writing


@dataclass
class RoiMask:
    """One structure to write: its ROI number and name, a (z, y, x) mask on the CT grid."""

    number: int
    name: str
    mask: np.ndarray
    color: tuple[int, int, int] = (255, 0, 0)
    interpreted_type: str = "ORGAN"


def rois_from_labels(labels: sitk.Image) -> list[RoiMask]:
    """The six glands as ROIs with TG-263 names, ROI number = label value; empty glands skipped."""
    arr = sitk.GetArrayViewFromImage(labels)
    out = []
    for g in GLANDS:
        m = arr == g.label
        if m.any():
            out.append(RoiMask(g.label, g.tg263, m, g.color_255))
    return out


def mask_contours(mask_zyx: np.ndarray, reference: sitk.Image) -> dict[int, list[np.ndarray]]:
    """Per slice k, the outlines of the mask as (n, 3) LPS mm point lists (not repeating the first)."""
    from skimage.measure import find_contours

    d = np.array(reference.GetDirection()).reshape(3, 3)
    m = d @ np.diag(reference.GetSpacing())
    origin = np.asarray(reference.GetOrigin())
    out: dict[int, list[np.ndarray]] = {}
    for k in np.nonzero(mask_zyx.reshape(mask_zyx.shape[0], -1).any(axis=1))[0]:
        padded = np.pad(mask_zyx[k].astype(np.float32), 1)  # closes contours at the image edge
        lines = []
        for rc in find_contours(padded, 0.5, fully_connected="low"):
            if len(rc) < 4:  # 3 distinct points + the closing repeat
                continue
            rc = rc[:-1] - 1.0  # drop the closing point; undo the padding
            idx = np.column_stack([rc[:, 1], rc[:, 0], np.full(len(rc), float(k))])
            lines.append(origin + idx @ m.T)
        if lines:
            out[int(k)] = lines
    return out


CONTOUR_DATA = 0x30060050


def _contour_data(points: np.ndarray):
    """ContourData as an encoded DS element (micrometre precision, <= 16 characters a value).

    Built as raw bytes: letting pydicom validate every number costs ~20 us each, i.e.
    minutes for a large structure set, for values formatted right here.
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    text = "\\".join(f"{v:.3f}" for v in np.asarray(points, dtype=float).ravel()).encode("ascii")
    if len(text) % 2:
        text += b" "
    return RawDataElement(Tag(CONTOUR_DATA), "DS", len(text), text, 0, False, True, True, False)


def _contour_points(item) -> np.ndarray | None:
    """(n, 3) floats from a ContourSequence item, parsing raw bytes directly when possible."""
    raw = item.get_item(CONTOUR_DATA) if CONTOUR_DATA in item else None
    if raw is None:
        return None
    value = raw.value
    if isinstance(value, (bytes, bytearray)):
        parts = bytes(value).strip(b" \x00").split(b"\\")
        flat = np.array([float(v) for v in parts], dtype=float) if parts != [b""] else np.zeros(0)
    else:
        flat = np.asarray([float(v) for v in (value if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") else [value])], dtype=float)
    if flat.size < 9 or flat.size % 3:
        return None
    return flat.reshape(-1, 3)


def build_rtstruct(rois: Sequence[RoiMask], source: SourceSeries, *, series_description: str = "GlandSeg glands",
                   label: str = "GLANDSEG", software_version: str = "", series_number: int = 9201):
    """A pydicom Dataset (RT Structure Set Storage) referencing `source` (see module doc)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as Seq
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    reference = source.image
    date, time = now_date_time()
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = pydicom.FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    apply_header(ds, source.header)
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    ds.InstanceNumber = 1
    ds.Manufacturer = "GlandSeg"
    ds.ManufacturerModelName = "GlandSeg"
    ds.SoftwareVersions = software_version or "unknown"
    ds.OperatorsName = ""
    ds.StructureSetLabel = label
    ds.StructureSetName = label
    ds.StructureSetDate, ds.StructureSetTime = date, time

    def image_ref(k: int) -> Dataset:
        r = Dataset()
        r.ReferencedSOPClassUID = source.slices[k].sop_class_uid
        r.ReferencedSOPInstanceUID = source.slices[k].sop_instance_uid
        return r

    series_ref = Dataset()
    series_ref.SeriesInstanceUID = source.series_instance_uid
    series_ref.ContourImageSequence = Seq([image_ref(s.k) for s in source.slices])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
    study_ref.ReferencedSOPInstanceUID = source.study_instance_uid
    study_ref.RTReferencedSeriesSequence = Seq([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = source.frame_of_reference_uid
    frame_ref.RTReferencedStudySequence = Seq([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Seq([frame_ref])

    roi_items, contour_items, observation_items = [], [], []
    for n, roi in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = int(roi.number)
        item.ReferencedFrameOfReferenceUID = source.frame_of_reference_uid
        item.ROIName = roi.name
        item.ROIGenerationAlgorithm = "AUTOMATIC"
        roi_items.append(item)
        contours = []
        for k, lines in sorted(mask_contours(roi.mask, reference).items()):
            for pts in lines:
                c = Dataset()
                c.ContourImageSequence = Seq([image_ref(k)])
                c.ContourGeometricType = "CLOSED_PLANAR"
                c.NumberOfContourPoints = len(pts)
                c[CONTOUR_DATA] = _contour_data(pts)
                contours.append(c)
        rc = Dataset()
        rc.ReferencedROINumber = int(roi.number)
        rc.ROIDisplayColor = [int(v) for v in roi.color]
        rc.ContourSequence = Seq(contours)
        contour_items.append(rc)
        obs = Dataset()
        obs.ObservationNumber = n
        obs.ReferencedROINumber = int(roi.number)
        obs.RTROIInterpretedType = roi.interpreted_type
        obs.ROIInterpreter = ""
        observation_items.append(obs)
    ds.StructureSetROISequence = Seq(roi_items)
    ds.ROIContourSequence = Seq(contour_items)
    ds.RTROIObservationsSequence = Seq(observation_items)
    # Declare the contour items already encoded as they will be written (explicit VR little
    # endian, the file's character set): pydicom then writes the raw ContourData bytes as
    # they are instead of parsing every number back (see _contour_data).
    for rc in contour_items:
        for c in rc.ContourSequence:
            c.set_original_encoding(False, True, c._character_set)
    return ds


def write_rtstruct(rois: Sequence[RoiMask], source: SourceSeries, path: str | Path, **kwargs) -> Path:
    """Build and save (see build_rtstruct); returns the path."""
    ds = build_rtstruct(rois, source, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path
