"""A cohort folder -> per patient, a CT and its six gland labels on the CT's own grid.

A cohort is one folder per patient, holding one of:

* a DICOM CT series and an RTSTRUCT (any folder depth); the RTSTRUCT's contours are
  rasterized onto the CT grid (rtstruct.py);
* a CT image file and a labelmap (a file whose name says label/seg/mask/gt), with the
  label names in a .json beside it ({"1": "Parotid_R"}, {"Parotid_R": 1} or an nnU-Net
  dataset.json) or, without one, GlandSeg's canonical values 1..6;
* a CT image file and one mask file per gland, its name saying which gland.

Why names, never positions: every team orders its labels differently (the predecessor's
order was lacrimal R/L, submandibular L, parotid R, submandibular R, parotid L), so a
structure becomes a gland only through `names.match_gland` or the user's `--roi-map`
({"old name": "parotid_l"}; a null value ignores that name). Structures that are not
glands are listed as ignored; a gland without a structure is reported missing, never
fatal (nnU-Net learns from the glands that are there).

Overlaps: two gland structures claiming one voxel are an annotation error the old scripts
hid by summing masks (creating label values that are no gland at all). Here the voxel
goes to the gland whose whole structure is smaller (ties: lower label value). Why the
smaller: the same number of voxels is a far larger share of a lacrimal or submandibular
gland than of a parotid, so this loses the least relative volume and keeps small glands
whole; the rule depends only on the masks, so it is deterministic. Every overlap is
counted per pair and reported.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import SimpleITK as sitk

from GlandSegLib.errors import InputNotFoundError, InvalidInputError
from GlandSegLib.geometry import resample_to
from GlandSegLib.glands import BY_KEY, BY_LABEL, GLANDS, Gland
from GlandSegLib.io.images import IMAGE_SUFFIXES, read_ct, read_image_file
from GlandSegLib.names import match_gland

OVERLAP_RULE = ("a voxel claimed by several glands goes to the gland whose whole structure is smallest "
                "(ties: lower label value)")
_LABELMAP_WORDS = {"label", "labels", "labelmap", "seg", "segmentation", "segmentations", "mask", "masks", "gt",
                   "truth", "groundtruth", "reference", "annotation", "annotations"}
_CT_WORDS = {"ct", "image", "img", "volume", "scan"}
# image files in folders with these names are structures, never the CT (TotalSegmentator-style
# "segmentations/" holds a hundred masks, most of them not glands)
_MASK_DIRS = {"masks", "mask", "segmentations", "segmentation", "structures", "rois", "labels", "label", "seg"}


class RoiMap:
    """User names -> glands (the --roi-map file), consulted before `match_gland`.

    Values may be a gland key (`parotid_l`), a TG-263 name (`Parotid_L`), a label value,
    anything `match_gland` understands, or null to ignore the name.
    """

    def __init__(self, mapping: Mapping[str, Any] | None = None, source: str = "--roi-map"):
        self.exact: dict[str, Gland | None] = {}
        self.folded: dict[str, Gland | None] = {}
        for name, value in (mapping or {}).items():
            g = _to_gland(value, f"{source}: {name!r}")
            self.exact[str(name)] = g
            self.folded[_fold(str(name))] = g

    @classmethod
    def load(cls, path: str | Path | None) -> "RoiMap":
        if path is None:
            return cls()
        p = Path(path)
        if not p.is_file():
            raise InputNotFoundError(f"{p}: no such ROI map file")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{p}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
        if not isinstance(data, dict):
            raise InvalidInputError(f"{p}: the ROI map must be a JSON object {{\"ROI name\": \"gland key\"}}")
        return cls(data, str(p))

    def lookup(self, name: str) -> tuple[Gland | None, str]:
        """(gland or None, how it was decided: 'roi-map', 'ignored by roi-map', 'name', 'no match')."""
        for table in ((self.exact, name), (self.folded, _fold(name))):
            if table[1] in table[0]:
                g = table[0][table[1]]
                return g, "roi-map" if g is not None else "ignored by roi-map"
        g = match_gland(name)
        return g, "name" if g is not None else "no match"

    def to_dict(self) -> dict[str, str | None]:
        return {k: (v.key if v is not None else None) for k, v in self.exact.items()}


def _fold(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def _to_gland(value: Any, what: str) -> Gland | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in BY_LABEL:
        return BY_LABEL[value]
    if isinstance(value, str):
        if value.lower() in BY_KEY:
            return BY_KEY[value.lower()]
        for g in GLANDS:
            if value.lower() == g.tg263.lower():
                return g
        g = match_gland(value)
        if g is not None:
            return g
    keys = ", ".join(g.key for g in GLANDS)
    raise InvalidInputError(f"{what} maps to {value!r}, which is not a gland (use one of {keys}, or null to ignore)")


# --------------------------------------------------------------------------- discovery


@dataclass
class CaseSource:
    """Where one patient's data is; nothing read yet."""

    case_id: str
    folder: Path
    kind: str  # "dicom-rtstruct" | "labelmap" | "masks" | "unknown"
    ct: Path | None = None  # DICOM folder or image file
    labels: list[Path] = field(default_factory=list)  # RTSTRUCT, labelmap or mask files
    names_json: Path | None = None
    problem: str | None = None  # why the folder cannot be used (reported, not fatal)


@dataclass
class LoadedCase:
    """A patient's CT and canonical labels on the CT grid, plus what was decided on the way."""

    source: CaseSource
    ct: sitk.Image
    labels: sitk.Image
    structures: dict[str, str | None]  # structure name -> gland key (None: ignored)
    missing: list[str]  # gland keys without a structure
    overlaps: dict[str, int]  # "parotid_r+submandibular_r" -> voxels claimed twice
    warnings: list[str]
    dicom_series_files: list[str] | None = None


def case_id_for(name: str) -> str:
    """A folder or file name as an nnU-Net case id (letters, digits, '_', '-')."""
    cid = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-") or "case"
    return cid if cid[0].isalnum() else "c" + cid


def _image_stem(p: Path) -> str:
    name = p.name
    for suf in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return p.stem


def _is_image(p: Path) -> bool:
    return p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)


def _words(stem: str) -> set[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    return {w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w}


def _looks_dicom(p: Path) -> bool:
    if p.suffix.lower() == ".dcm":
        return True
    if p.suffix:
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(132)
        return head[128:132] == b"DICM"
    except OSError:
        return False


def classify_images(files: list[Path], roi_map: RoiMap, folder: Path | None = None) -> tuple[list[Path], list[Path], list[Path], list[Path]]:
    """(CT candidates, labelmaps, gland masks, other structures) among image files, by their names.

    A file named as a gland (or named in the ROI map) is a mask; one whose name says
    label/seg/mask is a labelmap; a non-gland file inside a masks/segmentations folder is
    another structure (ignored); anything else may be the CT.
    """
    cts, labelmaps, masks, others = [], [], [], []
    for f in files:
        stem = _image_stem(f)
        g, how = roi_map.lookup(stem)
        words = _words(stem)
        parents = f.relative_to(folder).parts[:-1] if folder is not None and f.is_relative_to(folder) else ()
        in_mask_dir = any(part.lower() in _MASK_DIRS for part in parents)
        if g is not None or how == "ignored by roi-map":
            masks.append(f)
        elif in_mask_dir:
            others.append(f)
        elif words & _LABELMAP_WORDS:
            labelmaps.append(f)
        else:
            cts.append(f)
    if len(cts) > 1:  # prefer an explicit CT name or nnU-Net's channel suffix
        preferred = [f for f in cts if _words(_image_stem(f)) & _CT_WORDS or _image_stem(f).endswith("_0000")]
        if len(preferred) == 1:
            cts = preferred
    return cts, labelmaps, masks, others


def discover_case(folder: Path, roi_map: RoiMap) -> CaseSource:
    """Decide what kind of case a patient folder holds (see module docstring)."""
    from GlandSegLib.io.rtstruct import is_rtstruct

    cid = case_id_for(folder.name)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    dicom = [p for p in files if _looks_dicom(p)]
    images = [p for p in files if _is_image(p)]
    if dicom:
        structs = [p for p in dicom if is_rtstruct(p)]
        if not structs:
            return CaseSource(cid, folder, "unknown", problem="DICOM files but no RTSTRUCT")
        return CaseSource(cid, folder, "dicom-rtstruct", ct=folder, labels=structs)
    if not images:
        return CaseSource(cid, folder, "unknown", problem="no DICOM files and no image files")
    cts, labelmaps, masks, others = classify_images(images, roi_map, folder)
    if len(cts) != 1:
        listing = ", ".join(p.name for p in cts) or "none"
        return CaseSource(cid, folder, "unknown", problem=f"expected one CT image, found {len(cts)} ({listing})")
    jsons = sorted(p for p in files if p.suffix.lower() == ".json")
    if labelmaps and masks:
        return CaseSource(cid, folder, "unknown", ct=cts[0],
                          problem="both a labelmap and per-gland masks: keep one kind of labels")
    if len(labelmaps) == 1:
        if len(jsons) > 1:
            return CaseSource(cid, folder, "unknown", ct=cts[0], problem="several .json files: keep one label-name file")
        return CaseSource(cid, folder, "labelmap", ct=cts[0], labels=labelmaps, names_json=jsons[0] if jsons else None)
    if len(labelmaps) > 1:
        return CaseSource(cid, folder, "unknown", ct=cts[0], problem=f"{len(labelmaps)} labelmaps: keep one")
    if masks:
        return CaseSource(cid, folder, "masks", ct=cts[0], labels=masks + others)
    return CaseSource(cid, folder, "unknown", ct=cts[0], problem="a CT but no labels (labelmap, masks or RTSTRUCT)")


def discover_cohort(cohort: str | Path, roi_map: RoiMap | None = None) -> list[CaseSource]:
    """One CaseSource per patient sub-folder, sorted by case id; duplicate ids are refused."""
    root = Path(cohort)
    if not root.is_dir():
        raise InputNotFoundError(f"{root}: no such cohort folder")
    roi_map = roi_map or RoiMap()
    cases = [discover_case(p, roi_map) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if not cases:
        raise InvalidInputError(f"{root}: no patient folders (the cohort needs one sub-folder per patient)")
    seen: dict[str, Path] = {}
    for c in cases:
        if c.case_id in seen:
            raise InvalidInputError(f"patient folders {seen[c.case_id].name!r} and {c.folder.name!r} give the same case id {c.case_id!r}")
        seen[c.case_id] = c.folder
    return sorted(cases, key=lambda c: c.case_id)


# --------------------------------------------------------------------------- loading


@contextmanager
def quiet_itk() -> Iterator[None]:
    """Silence ITK's warnings for the body: GDCM's series search warns on every folder
    without DICOM (an RTSTRUCT folder, the patient folder), which buries a cohort's log."""
    old = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(old)


def _on_grid(img: sitk.Image, ct: sitk.Image) -> np.ndarray:
    """A label/mask image as a (z, y, x) array on the CT grid (nearest neighbour if needed)."""
    same = (img.GetSize() == ct.GetSize() and np.allclose(img.GetSpacing(), ct.GetSpacing(), rtol=1e-5)
            and np.allclose(img.GetOrigin(), ct.GetOrigin(), atol=1e-3)
            and np.allclose(img.GetDirection(), ct.GetDirection(), atol=1e-5))
    if not same:
        img = resample_to(img, ct, is_label=True)
    return sitk.GetArrayFromImage(img)


def resolve_overlaps(masks: Mapping[int, np.ndarray], shape: tuple[int, ...]) -> tuple[np.ndarray, dict[str, int]]:
    """Canonical label array from per-gland masks, by OVERLAP_RULE; and overlap counts per pair."""
    labels = np.zeros(shape, dtype=np.uint8)
    overlaps: dict[str, int] = {}
    items = sorted(masks.items())
    for i, (a, ma) in enumerate(items):
        for b, mb in items[i + 1:]:
            n = int(np.count_nonzero(ma & mb))
            if n:
                overlaps[f"{BY_LABEL[a].key}+{BY_LABEL[b].key}"] = n
    # paint the largest first so smaller glands overwrite it; ties: higher label first
    for label, m in sorted(items, key=lambda kv: (-int(np.count_nonzero(kv[1])), -kv[0])):
        labels[m] = label
    return labels, overlaps


def _combine(found: dict[int, list[tuple[str, np.ndarray]]], shape: tuple[int, ...], warnings: list[str]) -> tuple[np.ndarray, dict[str, int], list[str]]:
    masks: dict[int, np.ndarray] = {}
    for label, items in found.items():
        m = np.zeros(shape, dtype=bool)
        for _name, a in items:
            m |= a
        if len(items) > 1:
            warnings.append(f"{len(items)} structures name the {BY_LABEL[label].name} ({', '.join(n for n, _ in items)}): merged")
        if m.any():
            masks[label] = m
        else:
            warnings.append(f"structure {', '.join(n for n, _ in items)} for the {BY_LABEL[label].name} is empty")
    labels, overlaps = resolve_overlaps(masks, shape)
    for pair, n in overlaps.items():
        warnings.append(f"{pair}: {n} voxels claimed by both; resolved by the overlap rule")
    missing = [g.key for g in GLANDS if g.label not in masks]
    return labels, overlaps, missing


def _names_table(path: Path | None) -> dict[int, str] | None:
    """{value: name} from a names json, or None (canonical values)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise InvalidInputError(f"{path}: unreadable label-name file ({type(exc).__name__})") from None
    if isinstance(data, dict) and isinstance(data.get("labels"), dict):
        data = data["labels"]
    if not isinstance(data, dict):
        raise InvalidInputError(f"{path}: label names must be a JSON object")
    table: dict[int, str] = {}
    for k, v in data.items():
        if isinstance(v, int) and not isinstance(v, bool):
            table[v] = str(k)  # {"Parotid_R": 3}
        elif isinstance(v, str) and str(k).strip().lstrip("-").isdigit():
            table[int(k)] = v  # {"3": "Parotid_R"}
        else:
            raise InvalidInputError(f"{path}: entry {k!r}: {v!r} is neither name->value nor value->name")
    return table


def load_case(source: CaseSource, roi_map: RoiMap | None = None) -> LoadedCase:
    """Read the CT and build canonical labels on its grid; GlandSegError on unusable data."""
    roi_map = roi_map or RoiMap()
    if source.problem:
        raise InvalidInputError(f"{source.folder.name}: {source.problem}")
    if source.kind == "dicom-rtstruct":
        return _load_dicom_case(source, roi_map)
    assert source.ct is not None
    ct = read_ct(source.ct).image
    shape = sitk.GetArrayViewFromImage(ct).shape
    warnings: list[str] = []
    structures: dict[str, str | None] = {}
    found: dict[int, list[tuple[str, np.ndarray]]] = {}
    if source.kind == "labelmap":
        arr = _on_grid(read_image_file(source.labels[0]), ct)
        table = _names_table(source.names_json)
        values = sorted(int(v) for v in np.unique(arr) if v != 0)
        for v in values:
            if table is None:
                g = BY_LABEL.get(v)
                name = f"value {v}"
            else:
                name = table.get(v, f"value {v}")
                g, _how = roi_map.lookup(name) if v in table else (None, "")
            structures[name] = g.key if g else None
            if g is not None:
                found.setdefault(g.label, []).append((name, arr == v))
            else:
                warnings.append(f"labelmap value {v} ({name}) is not a gland: ignored")
    else:  # masks
        for f in source.labels:
            stem = _image_stem(f)
            g, _how = roi_map.lookup(stem)
            structures[stem] = g.key if g else None
            if g is not None:
                found.setdefault(g.label, []).append((stem, _on_grid(read_image_file(f), ct) > 0))
    labels_arr, overlaps, missing = _combine(found, shape, warnings)
    return _loaded(source, ct, labels_arr, structures, missing, overlaps, warnings)


def _loaded(source: CaseSource, ct: sitk.Image, labels_arr: np.ndarray, structures: dict[str, str | None],
            missing: list[str], overlaps: dict[str, int], warnings: list[str], files: list[str] | None = None) -> LoadedCase:
    labels = sitk.GetImageFromArray(labels_arr)
    labels.CopyInformation(ct)
    for key in missing:
        warnings.append(f"{BY_KEY[key].name} is missing")
    return LoadedCase(source, ct, labels, structures, missing, overlaps, warnings, files)


def _load_dicom_case(source: CaseSource, roi_map: RoiMap) -> LoadedCase:
    from GlandSegLib.io.rtstruct import rasterize, read_rtstruct

    with quiet_itk():
        loaded = read_ct(source.ct)  # picks the CT series; RTSTRUCT files are not images
    ct = loaded.image
    frame = loaded.series.tags.get("0020|0052", "") if loaded.series else ""
    series_uid = loaded.series.uid if loaded.series else ""
    sets = [read_rtstruct(p) for p in source.labels]
    matching = [s for s in sets if frame and frame in s.frame_of_reference_uids] if frame else sets
    if len(matching) > 1:  # several on this frame: the one drawn on this very series
        on_series = [s for s in matching if series_uid in s.referenced_series_uids]
        matching = on_series or matching
    if not matching:
        raise InvalidInputError(f"{source.folder.name}: no RTSTRUCT refers to the CT's frame of reference")
    if len(matching) > 1:
        names = ", ".join(s.path.name for s in matching)
        raise InvalidInputError(f"{source.folder.name}: {len(matching)} RTSTRUCTs for one CT ({names}): keep one")
    ss = matching[0]
    shape = sitk.GetArrayViewFromImage(ct).shape
    warnings: list[str] = []
    structures: dict[str, str | None] = {}
    found: dict[int, list[tuple[str, np.ndarray]]] = {}
    for roi in ss.rois:
        g, _how = roi_map.lookup(roi.name)
        structures[roi.name] = g.key if g else None
        if g is None:
            continue
        mask, stats = rasterize(roi.contours, ct)
        if stats.off_plane or stats.outside:
            warnings.append(f"ROI {roi.name!r}: {stats.off_plane} contours off the CT's slice planes and "
                            f"{stats.outside} beyond its slices were skipped")
        found.setdefault(g.label, []).append((roi.name, mask))
    labels_arr, overlaps, missing = _combine(found, shape, warnings)
    return _loaded(source, ct, labels_arr, structures, missing, overlaps, warnings,
                   loaded.series.files if loaded.series else None)


def find_ct_input(folder: Path) -> Path:
    """What `segment` should read for a patient folder: the folder (DICOM) or its one CT image."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if any(_looks_dicom(p) for p in files):
        return folder
    cts, _labelmaps, _masks, _others = classify_images([p for p in files if _is_image(p)], RoiMap(), folder)
    if len(cts) == 1:
        return cts[0]
    if not cts:
        raise InvalidInputError(f"{folder}: no DICOM series and no CT image file")
    raise InvalidInputError(f"{folder}: {len(cts)} candidate CT images ({', '.join(p.name for p in cts)})")
