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
    # What the user must be told about how the CT was read (it goes into report.json and
    # onto the terminal): e.g. a gantry-tilted series resampled onto a regular grid.
    warnings: list[str] = field(default_factory=list)
    tilt_deg: float | None = None  # gantry tilt of a DICOM series that was regularised; None: not tilted


@dataclass(frozen=True)
class SliceStack:
    """A DICOM series' slices as their headers place them, ordered along the slice normal.

    `offsets_mm[k]` is how far slice k lies, within its own plane (along row, column), from
    where a straight stack on slice 0 would put it: zero for an ordinary series, growing
    linearly with k for a gantry-tilted one (the slices are sheared)."""

    files: list[str]
    positions: np.ndarray  # (n, 3) ImagePositionPatient, LPS mm
    row: np.ndarray  # unit vectors, LPS
    col: np.ndarray
    normal: np.ndarray
    offsets_mm: np.ndarray  # (n, 2) along (row, col)
    slice_spacing_mm: float  # mean distance between slices along the normal
    tilt_deg: float  # atan(in-plane shift per slice / slice spacing)
    tilted: bool


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


# A series is read as tilted when some slice lies more than this fraction of a pixel off a
# straight stack: smaller offsets are header rounding, and stacking them straight moves
# nothing by a visible amount.
TILT_TOLERANCE_PIXELS = 0.1
# Offsets further than this from a uniform shear are not a gantry tilt (a real tilt moves
# every slice by the same step) but a damaged or mixed series: refused, not guessed at.
IRREGULAR_SHEAR_PIXELS = 0.5
OUTSIDE_HU = -1024  # what the regular grid holds where no slice was acquired: air


def _check_slices(s: DicomSeries) -> SliceStack:
    """Refuse duplicate or missing slices (SimpleITK would silently stack them wrongly);
    measure a gantry tilt (slices sheared within their planes), which read_ct regularises."""
    positions, normal, points, row, col, pixel = [], None, [], None, None, None
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
            normal = n / max(float(np.linalg.norm(n)), 1e-12)
            row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
            pixel = min(r.GetSpacing()[:2])
        elif not np.allclose(n, normal, atol=1e-3):
            raise InvalidInputError(f"series {s.uid} mixes slice orientations")
        positions.append(float(np.dot(ipp, normal)))
        points.append(ipp)
    if len(positions) < 2:
        raise InvalidInputError(f"series {s.uid} has a single slice: a 3D CT is needed")
    order = np.argsort(positions, kind="stable")
    pos = np.array(positions)[order]
    gaps = np.diff(pos)
    if np.any(gaps < 1e-3):
        raise InvalidInputError(f"series {s.uid} has duplicate slice positions")
    if gaps.max() - gaps.min() > max(0.05 * np.median(gaps), 0.01):
        raise InvalidInputError(
            f"series {s.uid} has uneven slice spacing ({gaps.min():.2f}-{gaps.max():.2f} mm): slices are missing from the "
            "folder (no file holds them), or the scan has a variable slice thickness")
    pts = np.array(points)[order]
    rel = pts - pts[0]
    offsets = np.column_stack([rel @ row, rel @ col])  # in-plane displacement from slice 0
    k = np.arange(len(pts), dtype=float)
    # least squares through slice 0: a tilt is a constant shift per slice
    step = (k @ offsets) / max(float(k @ k), 1e-12)
    residual = float(np.max(np.linalg.norm(offsets - np.outer(k, step), axis=1)))
    spacing = float((pos[-1] - pos[0]) / (len(pos) - 1))
    tilted = float(np.max(np.linalg.norm(offsets, axis=1))) > TILT_TOLERANCE_PIXELS * pixel
    if tilted and residual > IRREGULAR_SHEAR_PIXELS * pixel:
        raise InvalidInputError(
            f"series {s.uid}: its slices are displaced irregularly within their planes (up to {residual:.1f} mm off a "
            "uniform gantry tilt); not a series GlandSeg can place: export it again from the scanner")
    tilt = float(np.degrees(np.arctan2(np.linalg.norm(step), spacing)))
    return SliceStack([s.files[i] for i in order], pts, row, col, normal, offsets, spacing, tilt, tilted)


def regularise_tilted(image: sitk.Image, stack: SliceStack) -> sitk.Image:
    """A gantry-tilted series resampled onto the regular grid that covers what was acquired.

    `image` is the series as SimpleITK stacks it (slice k = stack.files[k]: its pixels are
    right, its slice positions are not). The grid's axes are the slices' row, column and
    normal directions, its in-plane spacing the acquired one, its slice spacing the
    distance between slices along the normal; slice k of the grid lies in the plane of
    acquired slice k. So regularising only moves each slice within its own plane (linear
    interpolation of a sub-pixel shift, nothing blended across slices) and an outline drawn
    on the grid lies on the acquired slice planes. Where the grid reaches beyond a slice's
    field of view it holds OUTSIDE_HU (air), as the locator and the statistics expect.
    This is what 3D Slicer's and dcm2niix's tilt correction amount to for a sheared stack.
    """
    from scipy import ndimage

    arr = sitk.GetArrayViewFromImage(image)
    nz, ny, nx = arr.shape
    sx, sy = image.GetSpacing()[:2]
    low = stack.offsets_mm.min(axis=0)
    shift = (stack.offsets_mm - low) / np.array([sx, sy])  # (n, 2) pixels along (column index, row index)
    extra = np.ceil(shift.max(axis=0) - 1e-3).astype(int)
    out = np.empty((nz, ny + extra[1], nx + extra[0]), np.int16)
    canvas = np.empty(out.shape[1:], np.float32)
    for kk in range(nz):
        canvas.fill(OUTSIDE_HU)
        canvas[:ny, :nx] = arr[kk]
        s = shift[kk][::-1]  # (rows, columns)
        whole = np.round(s)
        if np.all(np.abs(s - whole) < 1e-3):  # whole pixels: an exact copy, no interpolation
            moved = ndimage.shift(canvas, whole, order=0, mode="constant", cval=OUTSIDE_HU)
        else:
            moved = ndimage.shift(canvas, s, order=1, mode="constant", cval=OUTSIDE_HU, prefilter=False)
        out[kk] = np.clip(np.rint(moved), -32768, 32767)
    result = sitk.GetImageFromArray(out)
    result.SetSpacing((float(sx), float(sy), stack.slice_spacing_mm))
    result.SetOrigin([float(v) for v in stack.positions[0] + low[0] * stack.row + low[1] * stack.col])
    result.SetDirection([float(v) for v in np.column_stack([stack.row, stack.col, stack.normal]).ravel()])
    return result


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
    """The CT at `path` as int16 HU with its physical geometry, validated.

    A gantry-tilted DICOM series is regularised (regularise_tilted) and says so in the
    result's `warnings` and `tilt_deg`: the image is then on that regular grid."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such file or folder")
    series = None
    warnings: list[str] = []
    tilt_deg: float | None = None
    if p.is_dir():
        all_series = find_dicom_series(p)
        if not all_series:
            raise InvalidInputError(f"{p}: no DICOM series found in this folder")
        series = _choose_series(all_series, series_uid, p)
        check_dicom_series(series.uid, series.files, series.folder, {f for s in all_series for f in s.files})
        stack = _check_slices(series)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(stack.files if stack.tilted else series.files)  # tilted: our order, slice k = files[k]
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            raise InvalidInputError(f"{p}: DICOM series {series.uid} cannot be read as one volume (damaged files?)",
                                    detail=_library_text(exc)) from exc
        if stack.tilted:
            image = regularise_tilted(image, stack)
            tilt_deg = stack.tilt_deg
            warnings.append(
                f"gantry-tilted series ({tilt_deg:.1f} degrees): resampled onto a regular grid along the slice planes "
                f"({'x'.join(map(str, image.GetSize()))} voxels; each slice moved within its plane, linear interpolation, "
                f"{OUTSIDE_HU} HU where nothing was acquired); all outputs are on that grid")
    else:
        if not p.name.lower().endswith(IMAGE_SUFFIXES) and not p.suffix.lower() == ".dcm":
            raise InvalidInputError(f"{p}: unsupported file type; give a DICOM folder, .nii(.gz), .nrrd or .mha")
        if not os.access(p, os.R_OK):
            raise InputNotFoundError(f"{p}: not readable")
        image = read_image_file(p)
    validate_geometry(image, str(p))
    check_ct_intensities(image, str(p))
    return LoadedCT(_to_int16(image), str(p), series, warnings, tilt_deg)


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
