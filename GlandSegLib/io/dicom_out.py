"""DICOM results for a DICOM input: a DICOM SEG and an RT Structure Set beside the NIfTI.

Why both: viewers and PACS read DICOM SEG (binary masks with SNOMED CT codes), treatment
planning systems read RTSTRUCT (contours with TG-263 names). Both reference the source CT
series instance by instance (dicomref maps slices to files by position), share its Frame
of Reference and Study, and copy only the patient identifiers (dicomref's privacy rule).

The SEG is built with highdicom from minimal stand-ins of the source instances (geometry,
UIDs and the identifiers to copy, no pixels): highdicom copies the Patient and Study
modules of its source images wholesale, and the stand-ins are how nothing else of the
patient reaches the SEG.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib import __version__
from GlandSegLib.io.dicomref import SourceSeries, apply_header, load_source_series
from GlandSegLib.errors import InvalidInputError
from GlandSegLib.glands import ANATOMIC_CATEGORY, GLANDS
from GlandSegLib.io.rtstruct import rois_from_labels, write_rtstruct

SEG_FILE = "glands_seg.dcm"
RTSTRUCT_FILE = "glands_rtstruct.dcm"
DICOM_OUTPUT_FILES = (SEG_FILE, RTSTRUCT_FILE)
SEG_SERIES_NUMBER = 9200
RTSTRUCT_SERIES_NUMBER = 9201


def _stand_ins(source: SourceSeries) -> list:
    """Per slice, a header-only Dataset with what highdicom reads from a source image."""
    import pydicom
    from pydicom.dataset import Dataset

    out = []
    for ref, f in zip(source.slices, source.files):
        full = pydicom.dcmread(str(f), stop_before_pixels=True)
        ds = Dataset()
        apply_header(ds, source.header)
        for attr in ("Modality", "Rows", "Columns", "PixelSpacing", "ImageOrientationPatient", "SliceThickness",
                     "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored", "HighBit",
                     "PixelRepresentation", "InstanceNumber", "SeriesNumber"):
            if attr in full:
                setattr(ds, attr, full[attr].value)
        ds.SOPClassUID = ref.sop_class_uid
        ds.SOPInstanceUID = ref.sop_instance_uid
        ds.SeriesInstanceUID = source.series_instance_uid
        ds.FrameOfReferenceUID = source.frame_of_reference_uid
        ds.ImagePositionPatient = [float(v) for v in ref.position]
        ds.PositionReferenceIndicator = ""
        out.append(ds)
    return out


def build_seg(labels: sitk.Image, source: SourceSeries):
    """A highdicom Segmentation (BINARY): six segments, segment number = GlandSeg label value.

    All six glands are described even when one was not found (its segment has no frames):
    "searched, not found" is information, and the numbers then mean the same in the SEG,
    the label map and the RTSTRUCT (ROI number).
    """
    import highdicom as hd
    from highdicom.sr.coding import CodedConcept
    from pydicom.sequence import Sequence as Seq
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    arr = sitk.GetArrayFromImage(labels).astype(np.uint8)
    if not any(np.any(arr == g.label) for g in GLANDS):
        raise InvalidInputError("no gland was found, so no DICOM SEG can be written (rerun without --dicom-out for the other outputs)")
    frames = np.where(np.isin(arr, [g.label for g in GLANDS]), arr, 0).astype(np.uint8)
    algorithm = hd.AlgorithmIdentificationSequence(name="GlandSeg", family=codes.cid7162.ArtificialIntelligence,
                                                   version=__version__)
    category = CodedConcept(ANATOMIC_CATEGORY[1], ANATOMIC_CATEGORY[0], ANATOMIC_CATEGORY[2])
    descriptions = []
    for g in GLANDS:
        d = hd.seg.SegmentDescription(
            segment_number=g.label, segment_label=g.name, segmented_property_category=category,
            segmented_property_type=CodedConcept(g.structure[1], g.structure[0], g.structure[2]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            tracking_id=g.tg263, tracking_uid=generate_uid(),
            display_color=hd.color.CIELabColor.from_rgb(*g.color_255))
        side = g.laterality
        d.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = Seq(
            [CodedConcept(side[1], side[0], side[2])])
        descriptions.append(d)
    seg = hd.seg.Segmentation(
        source_images=_stand_ins(source), pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="GlandSeg", manufacturer_model_name="GlandSeg",
        software_versions=__version__, device_serial_number="none", content_label="GLANDS",
        content_description="GlandSeg lacrimal, parotid and submandibular glands", series_description="GlandSeg glands")
    apply_header(seg, source.header)  # also blanks the type-2 patient attributes highdicom may have set
    return seg


def write_dicom_outputs(labels: sitk.Image, series_files: list[str], folder: Path) -> list[str]:
    """Write SEG_FILE and RTSTRUCT_FILE into `folder` for `labels` on the CT grid of `series_files`.

    Both are written to temporary names first and renamed, so neither appears half-written.
    Returns the file names written.
    """
    source = load_source_series(series_files, labels)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dicom-", dir=folder))
    try:
        seg = build_seg(labels, source)
        seg.save_as(str(tmp / SEG_FILE))
        write_rtstruct(rois_from_labels(labels), source, tmp / RTSTRUCT_FILE, software_version=__version__,
                       series_number=RTSTRUCT_SERIES_NUMBER)
        for name in DICOM_OUTPUT_FILES:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return list(DICOM_OUTPUT_FILES)
