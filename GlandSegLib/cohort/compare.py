"""`glandseg compare ORIGINAL CORRECTED -o OUT`: what a user's correction changed, gland by gland.

After a clinician corrects GlandSeg's segments, this says how much was corrected: per gland
its status (unchanged, edited, added, removed, absent), Dice, HD95, surface Dice at the
organ's tolerance, the volume before and after, and the added path length (APL, the
outline the user had to draw: GlandSegLib.cohort.pathlength, which defines it). Figures
over many patients say which glands to trust and which to review first.

Inputs, each side independently: a label map with GlandSeg's label values (1-6), a
`.seg.nrrd` (GlandSeg's or one saved by 3D Slicer after editing; segments are matched to
glands by their ID, which GlandSeg sets to the gland key and Slicer keeps, or else by name,
as for any structure: GlandSegLib.names), a DICOM RTSTRUCT (ROIs matched by name,
rasterized onto the CT given with `ct`, which must be the series it was drawn on), or a
`glandseg segment` output folder (its glands_labelmap.nii.gz).

Geometry: the comparison runs on the original's voxel lattice, extended where the
corrected segments reach beyond it (Slicer grows a segmentation's extent when a user paints
outside it). A corrected segmentation on the same lattice (same spacing and direction,
origin a whole number of voxels away: the usual case, since both derive from the CT) is
compared voxel for voxel. One on another lattice is resampled with nearest neighbour onto
the original's, and the result says so; two segmentations that share no physical space
are refused (one of them has lost its origin, spacing or direction).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from GlandSegLib import __version__
from GlandSegLib.cohort.metrics import SURFACE_TOLERANCE_MM, dice, hd95, surface_dice
from GlandSegLib.cohort.pathlength import added_path_length, axial_axis
from GlandSegLib.errors import InputNotFoundError, InvalidInputError, OutputExistsError
from GlandSegLib.geometry import image_bounds, voxel_volume_ml
from GlandSegLib.glands import BY_KEY, GLANDS, LABELS, Gland
from GlandSegLib.io.images import IMAGE_SUFFIXES, MAX_VOXELS, read_image_file, write_text_atomic
from GlandSegLib.names import match_gland

OUTPUT_FILES = ("comparison.csv", "comparison.json")
CSV_FIELDS = ("gland", "label", "tg263", "status", "dice", "hd95_mm", "surface_dice", "tolerance_mm",
              "volume_original_ml", "volume_corrected_ml", "volume_change_ml", "volume_change_percent",
              "apl_mm", "apl_slices", "original_contour_mm", "corrected_contour_mm")
SEGMENT_LABELMAP = "glands_labelmap.nii.gz"  # what `glandseg segment` writes into its folder
APL_REFERENCE = ("Vaassen F. et al., Evaluation of measures for assessing time-saving of automatic organ-at-risk "
                 "segmentation in radiotherapy, Phys Imaging Radiat Oncol 13:1-6 (2020)")
APL_DEFINITION = ("per axial slice of the comparison grid, the length (mm) of the corrected contour (0.5 iso-line) "
                  "farther than the tolerance from the original's contour on the same slice; the whole corrected "
                  "contour where the original has none; an erased slice adds nothing")


@dataclass
class Segmentation:
    """Canonical labels (values 1-6) read from a file, with what the reader had to decide."""

    labels: sitk.Image
    kind: str  # "labelmap" | "seg.nrrd" | "rtstruct"
    warnings: list[str] = field(default_factory=list)


@dataclass
class CommonGrid:
    original: sitk.Image  # both uint8 canonical labels on one grid
    corrected: sitk.Image
    resampled: bool  # the corrected one was interpolated (nearest neighbour), not copied voxel for voxel
    note: str


@dataclass
class Comparison:
    rows: list[dict[str, Any]]
    geometry: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


@dataclass
class ComparisonResult:
    out: Path
    comparison: Comparison
    report: dict[str, Any]


# --------------------------------------------------------------------------- geometry


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-5)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3) and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5))


def _same_lattice(a: sitk.Image, b: sitk.Image) -> bool:
    """b's voxel centres are voxel centres of a (extended indefinitely): copying is exact."""
    if not (np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-5) and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5)):
        return False
    offset = np.asarray(a.TransformPhysicalPointToContinuousIndex(b.GetOrigin()))
    return bool(np.all(np.abs(offset - np.round(offset)) < 1e-3))


def _to_canonical(image: sitk.Image) -> sitk.Image:
    """uint8 with GlandSeg's label values only: a plain cast would wrap 259 onto 3 (a parotid)."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError("a label map has one value per voxel")
    a = sitk.GetArrayViewFromImage(image)
    if image.GetPixelID() == sitk.sitkUInt8 and int(a.max(initial=0)) <= max(LABELS):
        return image
    out = sitk.GetImageFromArray(np.where(np.isin(a, LABELS), a, 0).astype(np.uint8))
    out.CopyInformation(image)
    return out


def common_grid(original: sitk.Image, corrected: sitk.Image) -> CommonGrid:
    """Both label maps on the original's lattice, extended to hold the corrected foreground (module doc)."""
    original, corrected = _to_canonical(original), _to_canonical(corrected)
    if _same_grid(original, corrected):
        return CommonGrid(original, corrected, False, "the same grid: compared voxel for voxel")
    ob, cb = image_bounds(original), image_bounds(corrected)
    if np.any(ob.upper <= cb.lower) or np.any(cb.upper <= ob.lower):
        raise InvalidInputError(
            "the original and the corrected segmentation do not overlap in physical space (one of them has lost its "
            "origin, spacing or direction, or they belong to different scans)")
    exact = _same_lattice(original, corrected)
    spacing_c = corrected.GetSpacing()
    size = np.array(original.GetSize())
    lo, hi = np.zeros(3, int), size - 1
    fg = np.argwhere(sitk.GetArrayViewFromImage(corrected) > 0)
    if fg.size:  # the corrected foreground's box, in the original's index space
        zlo, zhi = fg.min(axis=0), fg.max(axis=0)
        corners = [corrected.TransformContinuousIndexToPhysicalPoint([float(c) for c in (x, y, z)])
                   for x in (zlo[2] - 0.5, zhi[2] + 0.5) for y in (zlo[1] - 0.5, zhi[1] + 0.5) for z in (zlo[0] - 0.5, zhi[0] + 0.5)]
        cidx = np.array([original.TransformPhysicalPointToContinuousIndex(p) for p in corners])
        lo = np.minimum(lo, np.floor(cidx.min(axis=0) + 1e-6).astype(int))
        hi = np.maximum(hi, np.ceil(cidx.max(axis=0) - 1e-6).astype(int))
    new_size = hi - lo + 1
    if int(np.prod(new_size.astype(np.int64))) > MAX_VOXELS:
        raise InvalidInputError("the corrected segmentation reaches so far beyond the original that no common grid fits in memory")
    if np.any(lo != 0) or np.any(new_size != size):
        ref = sitk.Image([int(v) for v in new_size], sitk.sitkUInt8)
        ref.SetSpacing(original.GetSpacing())
        ref.SetDirection(original.GetDirection())
        ref.SetOrigin(original.TransformContinuousIndexToPhysicalPoint([float(v) for v in lo]))
        original = sitk.Resample(original, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)  # exact: own lattice
    corrected = sitk.Resample(corrected, original, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    if exact:
        note = "the same voxel lattice (spacing, direction): compared voxel for voxel on a grid holding both"
    else:
        note = (f"the corrected segmentation (spacing {_fmt_spacing(spacing_c)} mm) is on another voxel grid: resampled "
                f"onto the original's grid (spacing {_fmt_spacing(original.GetSpacing())} mm) with nearest neighbour; "
                "the figures are on the original's voxels")
    return CommonGrid(original, corrected, not exact, note)


def _fmt_spacing(spacing) -> str:
    return " x ".join(f"{s:g}" for s in np.round(spacing, 3))


# --------------------------------------------------------------------------- the comparison


def _r(v: float | None, digits: int) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def _status(o: np.ndarray, c: np.ndarray) -> str:
    has_o, has_c = bool(o.any()), bool(c.any())
    if not has_o and not has_c:
        return "absent"
    if not has_o:
        return "added"
    if not has_c:
        return "removed"
    return "unchanged" if np.array_equal(o, c) else "edited"


def gland_row(g: Gland, original: np.ndarray, corrected: np.ndarray, grid: sitk.Image, tolerance_mm: float) -> dict[str, Any]:
    """One gland's figures from boolean (z, y, x) masks on `grid` (see module doc)."""
    idx = np.argwhere(original | corrected)
    if idx.size:  # every figure only needs the gland's neighbourhood (distance maps stay small)
        lo = np.maximum(idx.min(axis=0) - 2, 0)
        hi = np.minimum(idx.max(axis=0) + 3, original.shape)
        sl = tuple(slice(a, b) for a, b in zip(lo, hi))
        o, c = original[sl], corrected[sl]
        sub = sitk.RegionOfInterest(grid, [int(v) for v in (hi - lo)[::-1]], [int(v) for v in lo[::-1]])  # (x, y, z)
    else:
        o, c, sub = original, corrected, grid
    spacing_zyx = list(reversed(grid.GetSpacing()))
    vml = voxel_volume_ml(grid)
    vo, vc = float(o.sum()) * vml, float(c.sum()) * vml
    apl = added_path_length(o, c, sub, tolerance_mm)
    return {
        "gland": g.key, "label": g.label, "tg263": g.tg263, "name": g.name, "status": _status(o, c),
        "dice": _r(dice(o, c), 4), "hd95_mm": _r(hd95(o, c, spacing_zyx), 2),
        "surface_dice": _r(surface_dice(o, c, spacing_zyx, tolerance_mm), 4), "tolerance_mm": tolerance_mm,
        "volume_original_ml": round(vo, 3), "volume_corrected_ml": round(vc, 3), "volume_change_ml": round(vc - vo, 3),
        "volume_change_percent": _r(100.0 * (vc - vo) / vo, 1) if vo > 0 else None,
        "apl_mm": round(apl.apl_mm, 1), "apl_slices": apl.slices_with_added_path,
        "original_contour_mm": round(apl.original_mm, 1), "corrected_contour_mm": round(apl.corrected_mm, 1),
    }


def compare_images(original: sitk.Image, corrected: sitk.Image, *, tolerance_mm: float | None = None) -> Comparison:
    """Per gland figures of `corrected` against `original` (canonical label maps, any grids in
    one physical space); `tolerance_mm` None: each organ's surface-Dice tolerance."""
    if tolerance_mm is not None and not (np.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise InvalidInputError(f"the tolerance is a distance of 0 mm or more, not {tolerance_mm}")
    grid = common_grid(original, corrected)
    a = sitk.GetArrayViewFromImage(grid.original)
    b = sitk.GetArrayViewFromImage(grid.corrected)
    rows = [gland_row(g, a == g.label, b == g.label, grid.original,
                      SURFACE_TOLERANCE_MM[g.organ] if tolerance_mm is None else float(tolerance_mm)) for g in GLANDS]
    warnings = []
    if a.any() and b.any() and not any(r["dice"] for r in rows):
        warnings.append("no gland overlaps its original: are both of the same scan, with their geometry (origin, spacing, "
                        "direction) kept?")
    g = grid.original
    geometry = {"grid": "original", "size": list(g.GetSize()), "spacing_mm": [round(s, 4) for s in g.GetSpacing()],
                "origin_lps_mm": [round(o, 3) for o in g.GetOrigin()], "direction": [round(d, 6) for d in g.GetDirection()],
                "corrected_resampled": grid.resampled, "note": grid.note, "apl_slice_axis": axial_axis(g)}
    return Comparison(rows, geometry, warnings)


def compare_segmentations(original: sitk.Image, corrected: sitk.Image, *, tolerance_mm: float | None = None) -> list[dict[str, Any]]:
    """One dict per gland (CSV_FIELDS and the gland's name): the entry point for 3D Slicer,
    which holds both segmentations as label maps with GlandSeg's values (see compare_images)."""
    return compare_images(original, corrected, tolerance_mm=tolerance_mm).rows


# --------------------------------------------------------------------------- reading


def input_kind(path: Path) -> str:
    """"labelmap", "seg.nrrd", "rtstruct" or "folder" (a `glandseg segment` output folder)."""
    from GlandSegLib.io.rtstruct import is_rtstruct

    if not path.exists():
        raise InputNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / SEGMENT_LABELMAP).is_file():
            return "folder"
        raise InvalidInputError(f"{path}: a folder, but not a `glandseg segment` output (no {SEGMENT_LABELMAP}); give a file")
    name = path.name.lower()
    if name.endswith(".seg.nrrd"):
        return "seg.nrrd"
    if name.endswith(IMAGE_SUFFIXES):
        return "labelmap"
    if is_rtstruct(path):
        return "rtstruct"
    raise InvalidInputError(f"{path}: not a label map (.nii.gz, .nrrd, .mha), a .seg.nrrd or a DICOM RTSTRUCT")


def read_labelmap(path: Path) -> Segmentation:
    """A label map with GlandSeg's values; other values are listed and ignored."""
    img = read_image_file(path)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"{path}: {img.GetNumberOfComponentsPerPixel()} values per voxel; a label map has one")
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.mod(arr, 1) == 0):
        raise InvalidInputError(f"{path}: non-integer values: not a label map")
    values = np.unique(arr)
    other = sorted(int(v) for v in values if v != 0 and int(v) not in LABELS)
    warnings = []
    if other:
        warnings.append(f"{path.name}: values {', '.join(map(str, other[:10]))} are not GlandSeg label values (1-6): ignored")
    labels = sitk.GetImageFromArray(np.where(np.isin(arr, LABELS), arr, 0).astype(np.uint8))
    labels.CopyInformation(img)
    return Segmentation(labels, "labelmap", warnings)


def _gland_of_segment(segment_id: str, name: str) -> Gland | None:
    return BY_KEY.get(segment_id) or match_gland(name) or match_gland(segment_id)


def _combine(masks: dict[int, np.ndarray], like: sitk.Image, warnings: list[str]) -> sitk.Image:
    from GlandSegLib.cohort.cases import OVERLAP_RULE, resolve_overlaps

    arr, overlaps = resolve_overlaps(masks, sitk.GetArrayViewFromImage(like).shape[:3])
    for pair, n in overlaps.items():
        warnings.append(f"{pair}: {n} voxels claimed by both glands; {OVERLAP_RULE}")
    labels = sitk.GetImageFromArray(arr)
    labels.SetSpacing(like.GetSpacing())
    labels.SetOrigin(like.GetOrigin())
    labels.SetDirection(like.GetDirection())
    return labels


def read_seg_nrrd(path: Path) -> Segmentation:
    """A 3D Slicer segmentation file: one or several labelmap layers plus per-segment metadata
    (SegmentN_ID, _Name, _LabelValue, _Layer). Segments become glands by ID or name."""
    img = read_image_file(path)
    keys = set(img.GetMetaDataKeys())
    n_layers = img.GetNumberOfComponentsPerPixel()
    arr = sitk.GetArrayViewFromImage(img)
    masks: dict[int, np.ndarray] = {}
    warnings: list[str] = []
    i = 0
    while f"Segment{i}_ID" in keys:
        meta = {k: img.GetMetaData(f"Segment{i}_{k}").strip() for k in ("ID", "Name", "LabelValue", "Layer")
                if f"Segment{i}_{k}" in keys}
        sid, name = meta.get("ID", ""), meta.get("Name", "")
        try:  # files from Slicer before 4.11 have one segment per layer and value 1
            value = int(meta.get("LabelValue", "1"))
            layer = int(meta.get("Layer", str(i if n_layers > 1 else 0)))
        except ValueError:
            raise InvalidInputError(f"{path}: segment {sid!r} has a non-numeric label value or layer") from None
        if not 0 <= layer < n_layers:
            raise InvalidInputError(f"{path}: segment {sid!r} is in layer {layer}, but the file holds {n_layers}")
        g = _gland_of_segment(sid, name)
        i += 1
        if g is None:
            warnings.append(f"segment {name or sid!r} is not one of the six glands: ignored")
            continue
        m = (arr[..., layer] if n_layers > 1 else arr) == value
        if g.label in masks:
            warnings.append(f"several segments name the {g.name}: merged")
            masks[g.label] = masks[g.label] | m
        else:
            masks[g.label] = m
    if i == 0:
        raise InvalidInputError(f"{path}: no segments described in the header: not a 3D Slicer segmentation file")
    return Segmentation(_combine(masks, img, warnings), "seg.nrrd", warnings)


def read_rtstruct_labels(path: Path, ct: str | Path | None) -> Segmentation:
    """An RTSTRUCT's gland ROIs rasterized onto the CT `ct` (which it must have been drawn on)."""
    from GlandSegLib.cohort.cases import quiet_itk
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.io.rtstruct import rasterize, read_rtstruct

    if ct is None:
        raise InvalidInputError(f"{path} is an RTSTRUCT: contours, not voxels; give the CT it was drawn on with --ct DICOMFOLDER")
    with quiet_itk():
        loaded = read_ct(ct)
    ss = read_rtstruct(path)
    frame = loaded.series.tags.get("0020|0052", "") if loaded.series else ""
    if frame and ss.frame_of_reference_uids and frame not in ss.frame_of_reference_uids:
        raise InvalidInputError(f"{path}: drawn on another frame of reference than the CT {ct} (a different scan or registration)")
    warnings = list(loaded.warnings)
    masks: dict[int, np.ndarray] = {}
    ignored = []
    for roi in ss.rois:
        g = match_gland(roi.name)
        if g is None:
            ignored.append(roi.name)
            continue
        mask, stats = rasterize(roi.contours, loaded.image)
        if stats.off_plane or stats.outside:
            warnings.append(f"ROI {roi.name!r}: {stats.off_plane} contours off the CT's slice planes and "
                            f"{stats.outside} beyond its slices were skipped")
        if g.label in masks:
            warnings.append(f"several ROIs name the {g.name}: merged")
            masks[g.label] |= mask
        else:
            masks[g.label] = mask
    if ignored:
        warnings.append(f"{path.name}: {len(ignored)} ROIs are not glands and were ignored ({', '.join(ignored[:8])})")
    return Segmentation(_combine(masks, loaded.image, warnings), "rtstruct", warnings)


def read_segmentation(path: str | Path, ct: str | Path | None = None) -> Segmentation:
    """Any accepted input (module doc) as canonical labels with its own geometry."""
    path = Path(path)
    kind = input_kind(path)
    if kind == "folder":
        return read_labelmap(path / SEGMENT_LABELMAP)
    if kind == "seg.nrrd":
        return read_seg_nrrd(path)
    if kind == "rtstruct":
        return read_rtstruct_labels(path, ct)
    return read_labelmap(path)


# --------------------------------------------------------------------------- the command


def compare(original: str | Path, corrected: str | Path, out: str | Path, *, ct: str | Path | None = None,
            tolerance_mm: float | None = None, overwrite: bool = False) -> ComparisonResult:
    """Read both, compare (compare_images), write OUTPUT_FILES into `out` together."""
    out = Path(out)
    existing = [n for n in OUTPUT_FILES if (out / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{out} already holds a comparison ({', '.join(existing)}); use --overwrite")
    a = read_segmentation(original, ct)
    b = read_segmentation(corrected, ct)
    comparison = compare_images(a.labels, b.labels, tolerance_mm=tolerance_mm)
    warnings = [f"original: {w}" for w in a.warnings] + [f"corrected: {w}" for w in b.warnings] + comparison.warnings
    comparison.warnings = warnings
    report = {
        "glandseg_version": __version__,
        "original": {"path": str(original), "kind": a.kind},
        "corrected": {"path": str(corrected), "kind": b.kind},
        "ct": None if ct is None else str(ct),
        "tolerance_mm": SURFACE_TOLERANCE_MM if tolerance_mm is None else float(tolerance_mm),
        "added_path_length": {"definition": APL_DEFINITION, "reference": APL_REFERENCE},
        "geometry": comparison.geometry,
        "glands": comparison.rows,
        "warnings": warnings,
    }
    from GlandSegLib.cohort.datareport import to_csv

    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".glandseg-compare-", dir=out))
    try:  # both files appear together or not at all
        write_text_atomic(to_csv(comparison.rows, CSV_FIELDS), stage / "comparison.csv")
        write_text_atomic(json.dumps(report, indent=2) + "\n", stage / "comparison.json")
        for name in OUTPUT_FILES:
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return ComparisonResult(out, comparison, report)
