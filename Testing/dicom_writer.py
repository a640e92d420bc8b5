"""Write real DICOM CT series with pydicom, for tests of series discovery and reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_series(image: sitk.Image, folder: Path, *, series_uid: str | None = None, modality: str = "CT",
                    patient_name: str = "Test^Patient", description: str = "test CT", study_uid: str | None = None,
                    skip_slices: tuple[int, ...] = (), duplicate_slice: int | None = None,
                    tilt_mm_per_slice: float = 0.0, pixel_representation: int = 1, rescale_intercept: float = 0.0,
                    rescale_slope: float = 1.0, bits_stored: int = 16) -> str:
    """`tilt_mm_per_slice` shifts each slice along y, as a gantry-tilted acquisition does.

    The pixels are stored as scanners store them: stored = (HU - rescale_intercept) / rescale_slope,
    unsigned (pixel_representation 0) or signed (1), in `bits_stored` bits."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    arr = sitk.GetArrayFromImage(sitk.Cast(image, sitk.sitkInt16))
    stored = (arr.astype(np.float64) - rescale_intercept) / rescale_slope
    lo, hi = (0, 2**bits_stored - 1) if pixel_representation == 0 else (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1)
    if not np.allclose(stored, np.round(stored)) or stored.min() < lo or stored.max() > hi:
        raise ValueError("these HU values cannot be stored with this intercept, slope and pixel representation")
    stored = np.round(stored).astype(np.uint16 if pixel_representation == 0 else np.int16)
    d = np.array(image.GetDirection()).reshape(3, 3)
    sx, sy, sz = image.GetSpacing()
    iop = [*d[:, 0], *d[:, 1]]
    slices = [k for k in range(arr.shape[0]) if k not in skip_slices]
    if duplicate_slice is not None:
        slices.append(duplicate_slice)
    for n, k in enumerate(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{n:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientName = patient_name
        ds.PatientID = "GS0001"
        ds.PatientBirthDate = "19500101"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesDescription = description
        ds.SeriesNumber = 1
        ds.InstanceNumber = n + 1
        ipp = np.array(image.TransformIndexToPhysicalPoint((0, 0, k))) + np.array([0.0, tilt_mm_per_slice * k, 0.0])
        ds.ImagePositionPatient = [float(v) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in iop]
        ds.PixelSpacing = [float(sy), float(sx)]
        ds.SliceThickness = float(sz)
        ds.Rows, ds.Columns = arr.shape[1], arr.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = bits_stored
        ds.HighBit = bits_stored - 1
        ds.PixelRepresentation = pixel_representation
        ds.RescaleIntercept = rescale_intercept
        ds.RescaleSlope = rescale_slope
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"{n:04d}.dcm", enforce_file_format=True)
    return series_uid
