"""Is the file whole? Checked before a reader is trusted with it.

Why: ITK's readers fill what a file does not hold with zeros. A `.nii.gz` cut in half by an
interrupted copy reads "fine" and half the CT becomes 0 HU; a DICOM slice whose pixel data
is cut short is silently left out of its series. GlandSeg must never segment partial data,
so each format's own bookkeeping is checked first: the header's voxel count against the
bytes present, compressed streams to their end marker and checksum, DICOM pixel data
against its declared length. Damage is named in plain words with the file; the library's
own text goes into the error's `detail` (shown with --debug).

Streams are read in chunks and never held in memory: a whole-body CT costs one extra pass
over the compressed bytes, not a second copy of the image.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import SimpleITK as sitk

from GlandSegLib.errors import InvalidInputError

CHUNK = 1 << 20
OUT_LIMIT = 64 << 20

# ----------------------------------------------------------------------------- what a file holds

_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "PNG"), (0, b"\xff\xd8\xff", "JPEG"), (0, b"%PDF", "PDF"), (0, b"PK\x03\x04", "ZIP"),
    (0, b"II*\x00", "TIFF"), (0, b"MM\x00*", "TIFF"), (0, b"GIF8", "GIF"), (0, b"BM", "BMP"), (0, b"NRRD000", "NRRD"),
    (0, b"BZh", "bzip2"), (0, b"\x1f\x8b", "gzip"), (128, b"DICM", "DICOM"), (344, b"n+1\x00", "NIfTI"),
    (4, b"n+2\x00", "NIfTI"), (344, b"ni1\x00", "NIfTI header"),
)
_META_KEYS = re.compile(rb"^\s*(ObjectType|NDims|DimSize|ElementType|ElementDataFile)\s*=", re.M)


def sniff(head: bytes) -> str:
    """A name for what the first bytes of a file hold ("PNG", "NIfTI", "gzip", ...; "unknown")."""
    if not head:
        return "nothing"
    for offset, magic, name in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return name
    if _META_KEYS.search(head[:4096]):
        return "MetaImage"
    if head[:4] in (struct.pack("<i", 348), struct.pack(">i", 348)):
        return "NIfTI"
    if head.lstrip()[:1] in (b"<",) and b"html" in head[:512].lower():
        return "HTML"
    return "unknown data"


def _holds(kind: str) -> str:
    return "it is empty" if kind == "nothing" else ("it holds " + kind if kind.endswith("data") else f"it holds {kind} data")


def _kind_of_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "NIfTI"
    if name.endswith((".nrrd", ".nhdr")):
        return "NRRD"
    if name.endswith((".mha", ".mhd")):
        return "MetaImage"
    return "DICOM" if name.endswith(".dcm") else ""


def _head(path: Path, n: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def check_content_matches_name(path: Path) -> None:
    """Refuse a file whose bytes are not the format its name promises, saying what they are."""
    want = _kind_of_suffix(path)
    head = _head(path)
    have = sniff(head)
    if want == "NIfTI" and path.name.lower().endswith(".gz"):
        if have != "gzip":
            raise InvalidInputError(f"{path}: not a compressed NIfTI file ({_holds(have)})")
        try:
            with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw) as gz:
                inner = gz.read(600)
        except (OSError, EOFError, zlib.error):
            inner = b""
        if not inner:
            raise InvalidInputError(f"{path}: file is truncated or corrupt (gzip stream is damaged at its start)")
        have = sniff(inner)
    ok = {"NIfTI": ("NIfTI",), "NRRD": ("NRRD",), "MetaImage": ("MetaImage",), "DICOM": ("DICOM", "unknown data")}
    if want and have not in ok[want]:
        raise InvalidInputError(f"{path}: not a {want} file ({_holds(have)})")


# ----------------------------------------------------------------------------- stream helpers


def _stream_length(f: BinaryIO, make: Callable[[], object], what: str, path: Path) -> int:
    """Decompress `f` to its end in chunks; the number of bytes it holds, or a plain error.

    Output is counted and dropped, at most OUT_LIMIT bytes at a time (CT padding compresses
    a thousandfold). Several gzip members in a row are legal; zero padding after the end is
    tolerated."""
    total = 0
    d = make()
    try:
        while True:
            data = f.read(CHUNK)
            if not data:
                break
            while data:
                if d.eof:  # type: ignore[attr-defined]
                    if not data.strip(b"\x00"):
                        break
                    d = make()
                if isinstance(d, bz2.BZ2Decompressor):
                    total += len(d.decompress(data))
                    data = d.unused_data if d.eof else b""
                    continue
                total += len(d.decompress(data, OUT_LIMIT))  # type: ignore[call-arg]
                data = d.unused_data if d.eof else d.unconsumed_tail  # type: ignore[attr-defined]
        while not d.eof and not isinstance(d, bz2.BZ2Decompressor):  # type: ignore[attr-defined]
            out = d.decompress(b"", OUT_LIMIT)  # type: ignore[call-arg]  # output held back by the limit
            if not out:
                break
            total += len(out)
    except (zlib.error, OSError, EOFError, ValueError) as exc:
        raise InvalidInputError(f"{path}: file is truncated or corrupt ({what} data is damaged)",
                                detail=f"{type(exc).__name__}: {exc}") from exc
    if not d.eof:  # type: ignore[attr-defined]
        raise InvalidInputError(f"{path}: file is truncated or corrupt ({what} stream ends early)")
    return total


def _gzip() -> object:
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def _zlib_or_gzip() -> object:
    return zlib.decompressobj(32 + zlib.MAX_WBITS)  # MetaIO writes zlib streams; accept gzip too


def _check_bytes(path: Path, have: int, need: int, what: str = "voxel data") -> None:
    if have < need:
        raise InvalidInputError(f"{path}: file is truncated: it holds {have:,} of the {need:,} bytes of {what} "
                                f"its header declares ({have / max(need, 1):.0%})")


# ----------------------------------------------------------------------------- NIfTI

_NIFTI_TYPES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 256: 1, 512: 2, 768: 4, 1024: 8, 1280: 8, 128: 3, 2304: 4}


def _nifti_expected(header: bytes, path: Path) -> int:
    """Bytes a single-file NIfTI-1/-2 must hold: voxel offset + voxels x bytes per voxel."""
    for endian in "<>":
        size = struct.unpack(endian + "i", header[:4])[0] if len(header) >= 4 else 0
        if size == 348 and len(header) >= 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if size == 540 and len(header) >= 540:
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            dims = struct.unpack(endian + "8q", header[16:80])
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        raise InvalidInputError(f"{path}: file is truncated or corrupt (the NIfTI header is incomplete)")
    n = int(dims[0])
    if not 1 <= n <= 7 or any(d < 1 for d in dims[1:n + 1]) or bitpix <= 0:
        raise InvalidInputError(f"{path}: corrupt NIfTI header (dimensions {dims[1:n + 1]}, {bitpix} bits per voxel)")
    voxels = int(np.prod(np.array(dims[1:n + 1], dtype=np.int64)))
    return max(offset, 352 if size == 348 else 544) + voxels * bitpix // 8


def check_nifti(path: Path) -> None:
    with open(path, "rb") as f:
        if path.name.lower().endswith(".gz"):
            try:
                header = gzip.GzipFile(fileobj=f).read(544)
            except (OSError, EOFError, zlib.error) as exc:
                raise InvalidInputError(f"{path}: file is truncated or corrupt (gzip stream is damaged at its start)",
                                        detail=str(exc)) from exc
            need = _nifti_expected(header, path)
            f.seek(0)
            have = _stream_length(f, _gzip, "gzip", path)
        else:
            header = f.read(544)
            need = _nifti_expected(header, path)
            have = os.fstat(f.fileno()).st_size
    _check_bytes(path, have, need)


# ----------------------------------------------------------------------------- NRRD

_NRRD_BYTES = {
    1: ("signed char", "int8", "int8_t", "uchar", "unsigned char", "uint8", "uint8_t"),
    2: ("short", "short int", "signed short", "signed short int", "int16", "int16_t", "ushort", "unsigned short",
        "unsigned short int", "uint16", "uint16_t"),
    4: ("int", "signed int", "int32", "int32_t", "uint", "unsigned int", "uint32", "uint32_t", "float"),
    8: ("longlong", "long long", "long long int", "signed long long", "signed long long int", "int64", "int64_t",
        "ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t", "double"),
}
_NRRD_TYPE = {name: n for n, names in _NRRD_BYTES.items() for name in names}


def _read_text_header(f: BinaryIO, path: Path, kind: str, end: Callable[[str], bool]) -> tuple[dict[str, str], int]:
    """key -> value of a text header, and the byte offset where the data begins."""
    fields: dict[str, str] = {}
    while True:
        line = f.readline(65536)
        if not line:
            if kind == "NRRD" and ("data file" in fields or "datafile" in fields):
                return fields, f.tell()  # a detached header (.nhdr) may end with the file
            raise InvalidInputError(f"{path}: file is truncated (the {kind} header has no end)")
        text = line.decode("latin-1").rstrip("\r\n")
        if end(text):
            if kind == "MetaImage":
                key, _, value = text.partition("=")
                fields[key.strip().lower()] = value.strip()
            return fields, f.tell()
        if text.startswith("#") or not text.strip():
            continue
        key, sep, value = text.partition(":=" if ":=" in text else (":" if kind == "NRRD" else "="))
        if sep:
            fields[key.strip().lower()] = value.strip()


def check_nrrd(path: Path) -> None:
    with open(path, "rb") as f:
        if not f.readline(64).startswith(b"NRRD"):
            raise InvalidInputError(f"{path}: not a NRRD file ({_holds(sniff(_head(path)))})")
        fields, data_start = _read_text_header(f, path, "NRRD", lambda line: line == "")
    sizes = [int(s) for s in fields.get("sizes", "").split()]
    kind = fields.get("type", "").lower()
    if not sizes or kind not in _NRRD_TYPE:
        return  # a variant this check does not know (e.g. "block"): left to the reader
    need = int(np.prod(np.array(sizes, dtype=np.int64))) * _NRRD_TYPE[kind]
    encoding = fields.get("encoding", "raw").lower()
    detached = fields.get("data file") or fields.get("datafile")
    if detached:
        if detached.upper().startswith("LIST") or "%" in detached:
            return
        data_path, data_start = path.parent / detached, 0
        if not data_path.is_file():
            raise InvalidInputError(f"{path}: its data file {detached} is missing")
    else:
        data_path = path
    skip = int(fields.get("byte skip", "0") or 0)
    _check_encoded(data_path, data_start, encoding, need, skip)


def _check_encoded(data_path: Path, start: int, encoding: str, need: int, skip: int = 0) -> None:
    with open(data_path, "rb") as f:
        if encoding in ("raw",):
            have = os.fstat(f.fileno()).st_size - start - max(skip, 0)
        elif encoding in ("gzip", "gz", "zlib"):
            f.seek(start)
            have = _stream_length(f, _zlib_or_gzip, "compressed", data_path) - max(skip, 0)
        elif encoding in ("bzip2", "bz2"):
            f.seek(start)
            have = _stream_length(f, bz2.BZ2Decompressor, "bzip2", data_path) - max(skip, 0)
        else:
            return  # text encodings: the reader counts values itself
    _check_bytes(data_path, have, need)


# ----------------------------------------------------------------------------- MetaImage

_META_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
               "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8}


def check_metaimage(path: Path) -> None:
    with open(path, "rb") as f:
        fields, data_start = _read_text_header(f, path, "MetaImage",
                                               lambda line: line.strip().lower().startswith("elementdatafile"))
    dims = [int(s) for s in fields.get("dimsize", "").split()]
    element = fields.get("elementtype", "").upper()
    if not dims or element not in _META_BYTES:
        return
    need = int(np.prod(np.array(dims, dtype=np.int64))) * _META_BYTES[element] * int(fields.get("elementnumberofchannels", "1"))
    target = fields.get("elementdatafile", "LOCAL")
    if target.upper() == "LOCAL":
        data_path = path
    elif target.upper().startswith("LIST") or "%" in target:
        return
    else:
        data_path, data_start = path.parent / target, 0
        if not data_path.is_file():
            raise InvalidInputError(f"{path}: its data file {target} is missing")
        header_size = int(fields.get("headersize", "0") or 0)
        data_start = max(header_size, 0)
    compressed = fields.get("compresseddata", "false").lower() == "true"
    _check_encoded(data_path, data_start, "zlib" if compressed else "raw", need)


def check_complete(path: Path) -> None:
    """The file (and its data file) holds all the voxels its header declares; InvalidInputError otherwise."""
    path = Path(path)
    kind = _kind_of_suffix(path)
    if kind == "NIfTI":
        check_nifti(path)
    elif kind == "NRRD":
        check_nrrd(path)
    elif kind == "MetaImage":
        check_metaimage(path)


# ----------------------------------------------------------------------------- voxel values


def check_finite(image: sitk.Image, source: str) -> None:
    """Refuse NaN/inf voxels: a network fed them gives no error, only wrong glands.

    Refused rather than replaced, because no value is right for them: they mark data that
    was lost or never reconstructed, and the user must know where.
    """
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return
    a = sitk.GetArrayViewFromImage(image)
    bad_per_slice = np.array([np.count_nonzero(~np.isfinite(s)) for s in a])
    total = int(bad_per_slice.sum())
    if total:
        slices = np.flatnonzero(bad_per_slice)
        where = f"slice {slices[0]}" if len(slices) == 1 else f"{len(slices)} slices between {slices[0]} and {slices[-1]}"
        raise InvalidInputError(f"{source}: {total:,} voxels are not numbers (NaN or infinite), in {where} "
                                f"(index along the file's third axis); GlandSeg never segments partial data")


# ----------------------------------------------------------------------------- DICOM

_PIXEL_DATA = 0x7FE00010
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_IMAGE_TAGS = ["Rows", "Columns", "BitsAllocated", "SamplesPerPixel", "NumberOfFrames", _PIXEL_DATA]


def _deferred_pixel_element(ds: object) -> object:
    try:
        return ds.get_item(_PIXEL_DATA, keep_deferred=True)  # type: ignore[attr-defined]  # pydicom 3
    except TypeError:
        return ds.get_item(_PIXEL_DATA)  # type: ignore[attr-defined]  # pydicom 2 keeps it raw


def dicom_damage(path: str | Path) -> str | None:
    """What is wrong with one DICOM image file, in plain words, or None when it is whole.

    The header is parsed without the pixel data (pydicom's deferred read), so the check
    costs a header read, not an image read."""
    import pydicom

    size = os.path.getsize(path)
    try:
        ds = pydicom.dcmread(str(path), defer_size=1024, specific_tags=_IMAGE_TAGS)
        raw = _deferred_pixel_element(ds)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on a damaged header
        return f"damaged header ({type(exc).__name__})"
    if raw is None:
        return f"no pixel data (the file ends after {size:,} bytes, within its header: truncated)"
    length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if length is None or tell is None:
        return None
    if length == 0xFFFFFFFF:  # encapsulated (compressed) frames end with a sequence delimiter
        with open(path, "rb") as f:
            f.seek(max(size - 8, 0))
            return None if f.read(8) == _SEQUENCE_END else "truncated compressed pixel data"
    if tell + length > size:
        return f"truncated pixel data ({max(size - tell, 0):,} of {length:,} bytes present)"
    try:
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        expected = int(ds.Rows) * int(ds.Columns) * int(getattr(ds, "SamplesPerPixel", 1)) * frames * int(ds.BitsAllocated) // 8
    except (AttributeError, TypeError, ValueError):
        return "incomplete header (no image size)"
    if length < expected:
        return f"pixel data shorter than its image ({length:,} of {expected:,} bytes)"
    return None


def _looks_dicom(path: Path) -> bool:
    try:
        head = _head(path, 132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() == ".dcm"


def _series_uid_and_position(path: Path) -> tuple[str | None, float | None]:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        uid = str(ds.SeriesInstanceUID)
    except Exception:  # noqa: BLE001
        return None, None
    try:
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        return uid, float(ipp @ np.cross(iop[:3], iop[3:]))
    except (AttributeError, TypeError, ValueError):
        return uid, None


def check_dicom_series(uid: str, files: list[str], folder: Path, claimed: set[str]) -> None:
    """Refuse a series with damaged or unreadable slices, naming each with its place in the series.

    `files` are the series' files as the DICOM reader grouped them; `claimed` every file any
    series holds. A file the reader could not read is left out of every series, so the files
    of `folder` that no series claims are read here once more: those of this series (or with
    a header too damaged to tell) are damaged slices, not missing ones."""
    damaged: list[tuple[str, str]] = [(f, d) for f in files if (d := dicom_damage(f))]
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file() and str(p) not in claimed and _looks_dicom(p)):
        other_uid, _pos = _series_uid_and_position(path)
        if other_uid in (uid, None):
            damaged.append((str(path), dicom_damage(path) or "not readable as an image"))
    if not damaged:
        return
    positions: dict[str, float | None] = {f: _series_uid_and_position(Path(f))[1] for f in files}
    positions.update({f: _series_uid_and_position(Path(f))[1] for f, _d in damaged})
    known = sorted(v for v in positions.values() if v is not None)
    total = len(positions)

    def place(f: str) -> str:
        pos = positions.get(f)
        return f"slice {known.index(pos) + 1} of {total}" if pos is not None else f"a file of this {total}-file series"

    listing = "; ".join(f"{place(f)}, {Path(f).name}: {d}" for f, d in damaged[:5])
    more = f" (and {len(damaged) - 5} more)" if len(damaged) > 5 else ""
    raise InvalidInputError(
        f"{folder}: DICOM series {uid}: {len(damaged)} of {total} files cannot be read: {listing}{more}. "
        f"The other {total - len(damaged)} slices are complete; copy the damaged file{'s' if len(damaged) > 1 else ''} again")
