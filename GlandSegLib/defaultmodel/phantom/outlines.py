"""Reading the DeepMind TCIA expert outlines (shared/data/tcia-hn-labels): two raters' outlines
of 21 organs on 35 real head-and-neck scans, but no CT.

Finds the cases and each rater's folder, and reads the masks, cropped and cached: outline
phantoms (outline_phantom) are built around them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.names import match_gland

OUTLINE_RATERS = ("oncologist", "radiographer")
_OUTLINE_SPLITS = ("test", "validation")
_OUTLINE_STRUCTURES = frozenset({
    "brain", "brainstem", "cochlea-lt", "cochlea-rt", "lens-lt", "lens-rt", "lung-lt", "lung-rt", "mandible",
    "optic-nerve-lt", "optic-nerve-rt", "orbit-lt", "orbit-rt", "spinal-canal", "spinal-cord"})


@dataclass(frozen=True)
class Mask:
    """One outline cropped to its bounding box: a full 512x512xN mask is 40 MB."""

    a: np.ndarray  # bool (z, y, x), read-only
    lo: tuple[int, int, int]  # source index (z, y, x) of a[0, 0, 0]

    @property
    def hi(self) -> tuple[int, int, int]:
        return tuple(int(v + n) for v, n in zip(self.lo, self.a.shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class Outlines:
    """One rater's outlines of one scan: the source grid and the non-empty masks."""

    folder: str
    origin: np.ndarray  # LPS mm of source index (0, 0, 0), x y z
    spacing: np.ndarray  # mm, x y z
    size: tuple[int, int, int]  # x y z
    masks: dict[str, Mask]  # normalised organ name ("orbit-lt") -> mask
    glands: dict[int, Mask]  # canonical gland label -> mask

    def phys(self, idx_zyx) -> np.ndarray:
        return self.origin + np.asarray(idx_zyx, float)[..., ::-1] * self.spacing

    def centroid(self, m: Mask | None) -> np.ndarray | None:
        return None if m is None else self.phys(_mean_index(m.a) + m.lo)

    def volume_ml(self, m: Mask | None) -> float:
        return 0.0 if m is None else float(m.a.sum()) * float(np.prod(self.spacing)) / 1000.0

    def bounds(self, m: Mask) -> tuple[np.ndarray, np.ndarray]:
        """Physical x y z of the first and last voxel centres."""
        return self.phys(m.lo), self.phys(np.array(m.hi) - 1)


def _mean_index(a: np.ndarray) -> np.ndarray:
    """Mean (z, y, x) index of a mask from its projections: no argwhere of a million voxels."""
    n = float(a.sum())
    return np.array([float(np.dot(a.sum(axis=tuple(j for j in range(3) if j != k)), np.arange(a.shape[k]))) / n
                     for k in range(3)])


def _crop(a: np.ndarray) -> Mask | None:
    """The mask on its bounding box, read-only (None when empty)."""
    zs = np.flatnonzero(a.any(axis=(1, 2)))
    if not len(zs):
        return None
    sub = a[zs[0]:zs[-1] + 1]
    ys, xs = np.flatnonzero(sub.any(axis=(0, 2))), np.flatnonzero(sub.any(axis=(0, 1)))
    m = sub[:, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1] != 0
    m.flags.writeable = False  # cached and shared between phantoms
    return Mask(m, (int(zs[0]), int(ys[0]), int(xs[0])))


def _outline_base(root: str | Path) -> Path:
    """The folder holding test/ and validation/, from the set's root or one of its parents."""
    root = Path(root)
    for c in (root, root / "nrrds", root / "tcia-hn-labels" / "nrrds"):
        if any((c / s).is_dir() for s in _OUTLINE_SPLITS):
            return c
    raise FileNotFoundError(f"no tcia-hn-labels outlines (test/ or validation/ folders) under {root}")


def list_outline_cases(root: str | Path, split: str = "test") -> list[Path]:
    """Case folders of the TCIA outline set, sorted by case name.

    root: the set (tcia-hn-labels), its nrrds/ folder, or the folder holding tcia-hn-labels.
    split: "test", "validation" or "all". The set is stored split/rater/case/segmentations;
    each returned path is the case under the first rater that has it
    (split/oncologist/case), and `make_phantom_from_outlines(path, rater=...)` or
    `outline_folder(path, rater)` finds the other rater's sibling folder by name.
    """
    base = _outline_base(root)
    splits = _OUTLINE_SPLITS if split == "all" else (split,)
    if any(s not in _OUTLINE_SPLITS for s in splits):
        raise ValueError(f"split must be one of {_OUTLINE_SPLITS} or 'all', not {split!r}")
    cases: list[Path] = []
    for s in splits:
        seen: dict[str, Path] = {}
        for rater in OUTLINE_RATERS:
            d = base / s / rater
            for c in sorted(d.iterdir()) if d.is_dir() else []:
                if c.is_dir():
                    seen.setdefault(c.name, c)
        cases += [seen[k] for k in sorted(seen)]
    return cases


def outline_folder(case_dir: str | Path, rater: str = "oncologist") -> Path:
    """The folder holding one rater's *.nrrd masks of a case.

    Accepts split/rater/case (the set's layout, any rater: the sibling is found by name),
    case/rater, or a folder of masks itself (then rater is not used).
    """
    d = Path(case_dir)
    if rater not in OUTLINE_RATERS:
        raise ValueError(f"rater must be one of {OUTLINE_RATERS}, not {rater!r}")
    if d.name == "segmentations":
        d = d.parent
    if (d / rater).is_dir():
        d = d / rater
    elif d.parent.name in OUTLINE_RATERS:
        d = d.parent.parent / rater / d.name
    if (d / "segmentations").is_dir():
        d = d / "segmentations"
    if not d.is_dir() or not any(d.glob("*.nrrd")):
        raise FileNotFoundError(f"no {rater} outlines (*.nrrd) for {case_dir} (looked in {d})")
    return d


def read_outlines(folder: str | Path, glands_only: bool = False) -> Outlines:
    """One rater's masks, cropped; glands through names.match_gland (hyphen or underscore
    names), other organs by normalised name; empty masks are left out. Cached: the same
    folder read again (another seed or field) costs nothing, and the files are only read."""
    return _read_outlines_cached(str(Path(folder).resolve()), glands_only)


@functools.lru_cache(maxsize=6)
def _read_outlines_cached(folder: str, glands_only: bool) -> Outlines:
    geometry = None
    masks: dict[str, Mask] = {}
    glands: dict[int, Mask] = {}
    for f in sorted(Path(folder).glob("*.nrrd")):
        stem = f.name[:-len(".nrrd")]
        g = match_gland(stem)
        key = stem.replace("_", "-").lower()
        if g is None and (glands_only or key not in _OUTLINE_STRUCTURES):
            continue
        img = sitk.ReadImage(str(f))
        geo = (img.GetSize(), np.round(img.GetOrigin(), 3).tolist(), np.round(img.GetSpacing(), 5).tolist())
        if not np.allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-4):
            raise ValueError(f"{f}: oblique outline grids are not supported")
        if geometry is None:
            geometry = (geo, np.array(img.GetOrigin(), float), np.array(img.GetSpacing(), float))
        elif geo != geometry[0]:
            raise ValueError(f"{f}: grid {geo} differs from the other outlines of the case {geometry[0]}")
        m = _crop(sitk.GetArrayFromImage(img))
        if m is None:
            continue  # resected or not outlined: stays empty
        if g is not None:
            if g.label in glands:
                raise ValueError(f"{folder}: two files name the {g.name}")
            glands[g.label] = m
        else:
            masks[key] = m
    if geometry is None:
        raise FileNotFoundError(f"no outline masks (*.nrrd) in {folder}")
    return Outlines(folder, geometry[1], geometry[2], tuple(int(v) for v in geometry[0][0]), masks, glands)
