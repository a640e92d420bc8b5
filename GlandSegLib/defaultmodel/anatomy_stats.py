"""Where the six glands lie, measured on the experts' outlines: GlandSeg's expected anatomy.

    python -m GlandSegLib.defaultmodel.anatomy_stats --outlines ../shared/data/tcia-hn-labels \\
        --openkbp ../shared/data/openkbp/train-pats [--out GlandSegLib/segmentation/expected_anatomy.json]

Why: a segmentation can only be judged "plausible", "cut by the field of view" or "outside
the field of view" against where the gland lies in real people. Those positions come from
the 70 expert outline sets of tcia-hn-labels (35 scans x oncologist and radiographer;
Nikolov et al. 2018), never from millimetres chosen by hand: per gland,

* its volume (median, 5/95 percentiles, range) over the sets that outline it,
* its size along x, y and z,
* the offset of its centroid, top and bottom from every reference GlandSeg can find in a
  CT: the top of the brain (the cranium's dome), the brain's midline and front, and each
  other gland's centroid, top and bottom; as mean, SD and n.

The CT numbers of real glands come from the only real CTs with gland outlines that may be
used for this (OpenKBP `train-pats`, parotids; the validation split and PDDCA stay for
measuring): per patient the median HU inside each outlined parotid.

The output is deterministic (sorted keys, rounded values), so
Testing/test_gland_status.py regenerates it and compares it byte for byte. The per-set rows
(`sets`, a few numbers per outline set) are kept as provenance.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterable

import numpy as np
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS
from GlandSegLib.names import match_gland

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "segmentation" / "expected_anatomy.json"
SPLITS = ("test", "validation")
RATERS = ("oncologist", "radiographer")
AXES = "xyz"
# OpenKBP oar_labels.nrrd values of the parotids (GlandSegLib.defaultmodel.openkbp)
OPENKBP_PAROTIDS = {3: "parotid_r", 4: "parotid_l"}


def _extent(mask: np.ndarray, image: sitk.Image) -> dict | None:
    """Centroid, lower and upper faces (LPS mm) and volume of a (z, y, x) mask on an
    identity-direction grid; projections instead of argwhere (a brain holds 1.5 M voxels)."""
    n = int(mask.sum())
    if n == 0:
        return None
    sp = np.array(image.GetSpacing(), float)
    origin = np.array(image.GetOrigin(), float)
    idx_c, lo, hi = np.zeros(3), np.zeros(3), np.zeros(3)
    for axis_np, axis_xyz in ((0, 2), (1, 1), (2, 0)):
        prof = mask.sum(axis=tuple(a for a in range(3) if a != axis_np))
        nz = np.flatnonzero(prof)
        idx_c[axis_xyz] = float(np.dot(prof, np.arange(prof.size))) / n
        lo[axis_xyz], hi[axis_xyz] = nz[0], nz[-1]
    return {"c": origin + idx_c * sp, "lo": origin + (lo - 0.5) * sp, "hi": origin + (hi + 0.5) * sp,
            "ml": n * float(np.prod(sp)) / 1000.0}


def _check_identity(image: sitk.Image, path: Path) -> None:
    if not np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-4):
        raise ValueError(f"{path}: expected an identity-direction (LPS) outline grid")


def outline_set_row(folder: Path) -> dict:
    """One rater's outlines of one scan: brain top/midline/front and each gland's geometry."""
    row: dict = {"glands": {}}
    for f in sorted(folder.glob("*.nrrd")):
        stem = f.name[: -len(".nrrd")]
        g = match_gland(stem)
        if g is None and stem.lower() != "brain":
            continue
        img = sitk.ReadImage(str(f))
        _check_identity(img, f)
        if "scan_z" not in row:
            z0, dz, nz = img.GetOrigin()[2], img.GetSpacing()[2], img.GetSize()[2]
            row["scan_z"] = [round(float(z0 - dz / 2), 2), round(float(z0 + (nz - 0.5) * dz), 2)]
            row["slice_mm"] = round(float(img.GetSpacing()[2]), 3)
        e = _extent(sitk.GetArrayViewFromImage(img) != 0, img)
        if e is None:
            continue  # resected or not outlined
        if g is None:
            # the brain's top is a reference only where the scan reaches above it
            row["brain"] = {"top_z": float(e["hi"][2]), "mid_x": float(e["c"][0]), "front_y": float(e["lo"][1]),
                            "top_in_scan": bool(e["hi"][2] < row["scan_z"][1] - row["slice_mm"] / 2)}
        else:
            row["glands"][g.key] = {"c": [float(v) for v in e["c"]], "lo": [float(v) for v in e["lo"]],
                                    "hi": [float(v) for v in e["hi"]], "ml": float(e["ml"])}
    return row


def outline_sets(root: Path) -> list[tuple[str, str, str, Path]]:
    """(split, rater, case, folder of masks) for every outline set, sorted."""
    base = root / "nrrds" if (root / "nrrds").is_dir() else root
    out = []
    for split in SPLITS:
        for rater in RATERS:
            d = base / split / rater
            for case in sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []:
                seg = case / "segmentations" if (case / "segmentations").is_dir() else case
                out.append((split, rater, case.name, seg))
    if not out:
        raise FileNotFoundError(f"no tcia-hn-labels outline sets under {root}")
    return out


def _features(row: dict, key: str) -> dict[str, tuple[str, float]]:
    """Scalar reference features of one structure in one set: name -> (axis, LPS mm)."""
    if key == "brain":
        b = row.get("brain")
        if b is None:
            return {}
        f = {"mid": ("x", b["mid_x"])}
        if b["top_in_scan"]:
            f.update({"top": ("z", b["top_z"]), "front": ("y", b["front_y"])})
        return f
    g = row["glands"].get(key)
    if g is None:
        return {}
    return {"centroid_x": ("x", g["c"][0]), "centroid_y": ("y", g["c"][1]), "centroid_z": ("z", g["c"][2]),
            "top": ("z", g["hi"][2]), "bottom": ("z", g["lo"][2])}


def _quantities(row: dict, key: str) -> dict[str, tuple[str, float]]:
    """What is predicted of a gland: its centroid on each axis, its top and bottom."""
    g = row["glands"].get(key)
    if g is None:
        return {}
    return {"centroid_x": ("x", g["c"][0]), "centroid_y": ("y", g["c"][1]), "centroid_z": ("z", g["c"][2]),
            "top": ("z", g["hi"][2]), "bottom": ("z", g["lo"][2])}


def _msd(values: Iterable[float]) -> dict | None:
    v = np.asarray(list(values), float)
    if v.size < 3:
        return None
    return {"mean": round(float(v.mean()), 2), "sd": round(float(v.std(ddof=1)), 2), "n": int(v.size)}


def summarise_sets(rows: list[dict]) -> dict:
    """Volumes, sizes and offsets per gland from the per-set rows."""
    volumes, sizes, offsets = {}, {}, {}
    for g in GLANDS:
        have = [r["glands"][g.key] for r in rows if g.key in r["glands"]]
        ml = np.array([h["ml"] for h in have])
        volumes[g.key] = {"n": int(ml.size), "median": round(float(np.median(ml)), 3),
                          "p5": round(float(np.percentile(ml, 5)), 3), "p95": round(float(np.percentile(ml, 95)), 3),
                          "min": round(float(ml.min()), 3), "max": round(float(ml.max()), 3)}
        sizes[g.key] = {a: _msd(h["hi"][i] - h["lo"][i] for h in have) for i, a in enumerate(AXES)}
        per_q: dict = {}
        for ref in ["brain", *[h.key for h in GLANDS if h.key != g.key]]:
            for r in rows:
                q = _quantities(r, g.key)
                for fname, (faxis, fval) in _features(r, ref).items():
                    for qname, (qaxis, qval) in q.items():
                        if qaxis == faxis:
                            per_q.setdefault(qname, {}).setdefault(f"{ref}.{fname}", []).append(qval - fval)
        offsets[g.key] = {q: {ref: s for ref, vals in sorted(refs.items()) if (s := _msd(vals)) is not None}
                          for q, refs in sorted(per_q.items())}
    return {"volumes_ml": volumes, "size_mm": sizes, "offsets_mm": offsets}


def parotid_hu(folder: Path) -> list[float]:
    """Median CT number inside each outlined parotid of the OpenKBP patients (real CT)."""
    medians = []
    for p in sorted(d for d in folder.iterdir() if (d / "ct.nrrd").is_file() and (d / "oar_labels.nrrd").is_file()):
        ct = sitk.GetArrayFromImage(sitk.ReadImage(str(p / "ct.nrrd")))  # a copy: a view dies with its image
        oar = sitk.GetArrayFromImage(sitk.ReadImage(str(p / "oar_labels.nrrd")))
        for value in OPENKBP_PAROTIDS:
            m = oar == value
            if m.any():
                medians.append(float(np.median(ct[m])))
    if not medians:
        raise FileNotFoundError(f"no OpenKBP patients (pt_*/ct.nrrd + oar_labels.nrrd) in {folder}")
    return medians


def tissue_summary(medians: list[float]) -> dict:
    v = np.asarray(medians, float)
    return {"n_glands": int(v.size), "min": round(float(v.min()), 1), "max": round(float(v.max()), 1),
            "p1": round(float(np.percentile(v, 1)), 1), "p99": round(float(np.percentile(v, 99)), 1),
            "sd": round(float(v.std(ddof=1)), 1)}


def build(outlines: Path, openkbp: Path, progress=None) -> dict:
    """The whole file's content. Rows are rounded (0.1 mm) before they are summarised, so
    the summary can be recomputed exactly from the rows kept in the file."""
    rows = []
    for split, rater, case, folder in outline_sets(outlines):
        rows.append(rounded({"split": split, "rater": rater, "case": case, **outline_set_row(folder)}))
        if progress:
            progress(f"{split}/{rater}/{case}")
    hu = [round(v, 1) for v in parotid_hu(openkbp)]
    return {
        "about": "Expected gland anatomy for GlandSeg's plausibility and field-of-view checks "
                 "(GlandSegLib.segmentation.status). LPS mm; offsets are gland minus reference.",
        "generated_by": "python -m GlandSegLib.defaultmodel.anatomy_stats --outlines <tcia-hn-labels> --openkbp <openkbp/train-pats>",
        "sources": {
            "outlines": f"tcia-hn-labels (Nikolov et al. 2018, CC BY 4.0): {len({r['case'] for r in rows})} scans x "
                        f"{len(RATERS)} raters = {len(rows)} outline sets",
            "tissue": "OpenKBP train-pats (Babier et al. 2021): median HU inside each outlined parotid, real CT",
        },
        **summarise_sets(rows),
        "parotid_median_hu": tissue_summary(hu),
        "parotid_median_hu_values": hu,
        "sets": rows,
    }


def rounded(row: dict) -> dict:
    """Positions to 0.1 mm, volumes to 0.001 ml (a lacrimal gland holds ~0.6 ml)."""
    def rnd(v, digits=1):
        if isinstance(v, float):
            return round(v, digits)
        if isinstance(v, list):
            return [rnd(x, digits) for x in v]
        if isinstance(v, dict):
            return {k: rnd(x, 3 if k == "ml" else digits) for k, x in v.items()}
        return v
    return rnd(row)


def dumps(stats: dict) -> str:
    """Deterministic text: sorted keys, one line per outline set (the file stays small)."""
    head = {k: v for k, v in stats.items() if k not in ("sets", "parotid_median_hu_values")}
    text = json.dumps(head, indent=1, sort_keys=True)
    sets = ",\n  ".join(json.dumps(r, sort_keys=True, separators=(",", ":")) for r in stats.get("sets", []))
    values = json.dumps(stats.get("parotid_median_hu_values", []))
    return text[:-2] + ',\n "parotid_median_hu_values": ' + values + ',\n "sets": [\n  ' + sets + "\n ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.anatomy_stats", description=__doc__.split("\n\n")[0])
    ap.add_argument("--outlines", type=Path, required=True, help="tcia-hn-labels folder")
    ap.add_argument("--openkbp", type=Path, required=True, help="OpenKBP train-pats folder (real CT, parotid outlines)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    stats = build(args.outlines, args.openkbp, progress=lambda m: print(m, file=sys.stderr))
    args.out.write_text(dumps(stats))
    print(f"wrote {args.out}: {len(stats['sets'])} outline sets, {stats['parotid_median_hu']['n_glands']} real parotids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
