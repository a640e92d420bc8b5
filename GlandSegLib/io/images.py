"""Read CTs (DICOM series, NIfTI, NRRD, MHA) defensively; write outputs atomically.

Input files are never opened for writing. Every failure a user can cause becomes a
GlandSegError with a one-line message; SimpleITK's multi-line exceptions never surface.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.errors import InputNotFoundError, InvalidInputError, SeriesChoiceError
from GlandSegLib.io.integrity import check_complete, check_content_matches_name, check_dicom_series, check_finite

# ITK prints multi-line warnings (e.g. "No Series were found") straight to stderr; every
# problem GlandSeg cares about becomes its own one-line error instead.
sitk.ProcessObject.SetGlobalWarningDisplay(False)

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
MAX_VOXELS = 2_000_000_000  # ~4 GB as int16: beyond any CT, a sign of a corrupt header
HU_MIN, HU_MAX = -1024, 3071


@dataclass
class DicomSeries:
    uid: str
    folder: Path
    files: list[str]
    modality: str
    description: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadedCT:
    image: sitk.Image  # int16 HU
    source: str
    series: DicomSeries | None = None


def _library_text(exc: Exception) -> str:
    """A library's own words about a failure, for --debug only (they name its source files)."""
    return f"{type(exc).__name__}: {exc}"


def find_dicom_series(folder: Path) -> list[DicomSeries]:
    """All DICOM series below `folder` (recursively), with modality and description."""
    series: list[DicomSeries] = []
    for dirpath, _dirs, _files in os.walk(folder):
        try:
            uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(dirpath)
        except RuntimeError:
            continue
        for uid in uids:
            files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(dirpath, uid))
            tags: dict[str, str] = {}
            try:
                r = sitk.ImageFileReader()
                r.SetFileName(files[0])
                r.LoadPrivateTagsOff()
                r.ReadImageInformation()
                tags = {k: r.GetMetaData(k).strip() for k in r.GetMetaDataKeys()}
            except RuntimeError:
                pass
            series.append(DicomSeries(uid, Path(dirpath), files, tags.get("0008|0060", "?"), tags.get("0008|103e", ""), tags))
    return series


def _choose_series(series: list[DicomSeries], uid: str | None, folder: Path) -> DicomSeries:
    if uid:
        for s in series:
            if s.uid == uid:
                return s
        raise SeriesChoiceError(f"series {uid} is not in {folder}; found: " + ", ".join(s.uid for s in series))
    cts = [s for s in series if s.modality.upper() == "CT"]
    if not cts:
        found = ", ".join(f"{s.modality}" for s in series)
        raise InvalidInputError(f"no CT series in {folder} (found modalities: {found})")
    if len(cts) > 1:
        listing = "; ".join(f"{s.uid} ({len(s.files)} images, {s.description or 'no description'})" for s in cts)
        raise SeriesChoiceError(f"{folder} holds {len(cts)} CT series; choose one with --series UID: {listing}")
    return cts[0]


def _check_slices(s: DicomSeries) -> None:
    """Refuse duplicate or missing slices: SimpleITK would silently stack them wrongly."""
    positions, normal, points = [], None, []
    for f in s.files:
        r = sitk.ImageFileReader()
        r.SetFileName(f)
        try:
            r.ReadImageInformation()
            ipp = [float(v) for v in r.GetMetaData("0020|0032").split("\\")]
            iop = [float(v) for v in r.GetMetaData("0020|0037").split("\\")]
        except (RuntimeError, ValueError):
            raise InvalidInputError(f"{f}: unreadable or incomplete DICOM header (image position/orientation)") from None
        n = np.cross(iop[:3], iop[3:])
        if normal is None:
            normal = n
        elif not np.allclose(n, normal, atol=1e-3):
            raise InvalidInputError(f"series {s.uid} mixes slice orientations")
        positions.append(float(np.dot(ipp, normal)))
        points.append(ipp)
    if len(positions) < 2:
        raise InvalidInputError(f"series {s.uid} has a single slice: a 3D CT is needed")
    order = np.argsort(positions)
    steps = np.diff(np.array(points)[order], axis=0)
    along = steps @ normal
    sideways = np.linalg.norm(steps - np.outer(along, normal), axis=1)
    if np.any(sideways > 0.01 * np.maximum(np.abs(along), 1e-3) + 1e-3):
        raise InvalidInputError(
            f"series {s.uid} is acquired with gantry tilt (slices are sheared); reconstruct it without tilt, or resample it first")
    pos = np.sort(np.array(positions))
    gaps = np.diff(pos)
    if np.any(gaps < 1e-3):
        raise InvalidInputError(f"series {s.uid} has duplicate slice positions")
    if gaps.max() - gaps.min() > max(0.05 * np.median(gaps), 0.01):
        raise InvalidInputError(
            f"series {s.uid} has uneven slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm): slices are missing from the "
            "folder (no file holds them), or the scan has a variable slice thickness")


def validate_geometry(image: sitk.Image, source: str) -> None:
    if image.GetDimension() != 3 or min(image.GetSize()) < 2:
        raise InvalidInputError(f"{source}: a 3D image is needed, this one is {'x'.join(map(str, image.GetSize()))}")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"{source}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; a CT has one")
    sp = np.array(image.GetSpacing())
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0) or np.any(sp > 50):
        raise InvalidInputError(f"{source}: invalid voxel spacing {tuple(sp)}")
    d = np.array(image.GetDirection()).reshape(3, 3)
    if not np.all(np.isfinite(d)) or not np.allclose(d @ d.T, np.eye(3), atol=1e-3):
        raise InvalidInputError(f"{source}: the direction matrix is not orthonormal")
    if not np.all(np.isfinite(image.GetOrigin())):
        raise InvalidInputError(f"{source}: invalid origin")


def check_ct_intensities(image: sitk.Image, source: str) -> None:
    """Refuse images that are not CT in Hounsfield units (MR, PET, unrescaled CT)."""
    a = sitk.GetArrayViewFromImage(image)
    step = max(1, a.shape[0] // 64)  # a subsample of slices is plenty and avoids a full pass
    sample = a[::step]
    lo, hi = float(sample.min()), float(sample.max())
    air = float(np.mean(sample <= -500))
    if lo < -4000 or hi > 40000:
        raise InvalidInputError(f"{source}: intensities {lo:.0f}..{hi:.0f} are not CT Hounsfield units")
    if lo > -700 or air < 0.005 or hi < 150:
        raise InvalidInputError(
            f"{source}: intensities {lo:.0f}..{hi:.0f} (air fraction {air:.1%}) do not look like a CT in Hounsfield units (MR or PET?)")


def _to_int16(image: sitk.Image) -> sitk.Image:
    if image.GetPixelID() == sitk.sitkInt16:
        return image
    clamped = sitk.Clamp(image, image.GetPixelID(), -32768, 32767) if image.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16) else image
    if image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        clamped = sitk.Round(clamped)
    return sitk.Cast(clamped, sitk.sitkInt16)


def read_image_file(path: Path) -> sitk.Image:
    """Read a volume file, refusing damaged files, absurd sizes and non-finite voxels.

    The file is first checked to hold what its name and header promise, in full (see
    integrity), because ITK fills what is missing with zeros."""
    path = Path(path)
    check_content_matches_name(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InvalidInputError(f"{path}: cannot read the image header (damaged, or a variant GlandSeg cannot read)",
                                detail=_library_text(exc)) from exc
    size = reader.GetSize()
    if len(size) < 3 or any(s < 1 for s in size):
        raise InvalidInputError(f"{path}: a 3D image is needed, this one is {'x'.join(map(str, size))}")
    if int(np.prod(np.array(size, dtype=np.int64))) > MAX_VOXELS:
        raise InvalidInputError(f"{path}: header claims {'x'.join(map(str, size))} voxels, beyond any CT")
    check_complete(path)
    try:
        image = reader.Execute()
    except (RuntimeError, MemoryError) as exc:
        raise InvalidInputError(f"{path}: cannot read the image data (damaged, or a variant GlandSeg cannot read)",
                                detail=_library_text(exc)) from exc
    check_finite(image, str(path))
    return image


def read_ct(path: str | Path, series_uid: str | None = None) -> LoadedCT:
    """The CT at `path` as int16 HU with its physical geometry, validated."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file or folder")
    series = None
    if p.is_dir():
        all_series = find_dicom_series(p)
        if not all_series:
            raise InvalidInputError(f"{p}: no DICOM series found in this folder")
        series = _choose_series(all_series, series_uid, p)
        check_dicom_series(series.uid, series.files, series.folder, {f for s in all_series for f in s.files})
        _check_slices(series)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(series.files)
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            raise InvalidInputError(f"{p}: DICOM series {series.uid} cannot be read as one volume (damaged files?)",
                                    detail=_library_text(exc)) from exc
    else:
        if not p.name.lower().endswith(IMAGE_SUFFIXES) and not p.suffix.lower() == ".dcm":
            raise InvalidInputError(f"{p}: unsupported file type; give a DICOM folder, .nii(.gz), .nrrd or .mha")
        if not os.access(p, os.R_OK):
            raise InputNotFoundError(f"{p}: not readable")
        image = read_image_file(p)
    validate_geometry(image, str(p))
    check_ct_intensities(image, str(p))
    return LoadedCT(_to_int16(image), str(p), series)


def _file_mode() -> int:
    """Permissions a plain open() would give (mkstemp's 0600 would hide results from colleagues)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_image_atomic(image: sitk.Image, path: Path, compress: bool = True) -> None:
    """Write next to the target, then rename: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".nii.gz") else path.suffix
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(image, tmp, compress)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(data: bytes, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: Path) -> None:
    write_bytes_atomic(text.encode("utf-8"), path)


def replace_dir_atomic(tmp: Path, dest: Path) -> None:
    """Rename tmp to dest; an existing dest is moved aside first and removed afterwards."""
    if not dest.exists():
        os.replace(tmp, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    old.rmdir()
    os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
