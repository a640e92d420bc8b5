"""`glandseg evaluate PRED GT -o OUT`: agreement of predicted with reference glands.

Cases are matched by id, from file names (`case.nii.gz`, nnU-Net's `case_0000.nii.gz`)
or from folders (`case/glands_labelmap.nii.gz`, as `segment` and `batch` write them);
two single files are one case whatever their names.
Both sides must use GlandSeg's label values (what `prepare` writes into labelsTs).

Why the reference is resampled onto the prediction and not the other way: the prediction
is what a user gets, on the grid they use (the CT's own); the reference moves, with
nearest-neighbour interpolation, only when its grid differs (e.g. a 2 mm labelsTs crop
against a prediction on the original CT). Distances are in mm on that grid.

Per case and gland: Dice, HD95, surface Dice at the organ's inter-rater tolerance
(metrics.SURFACE_TOLERANCE_MM: lacrimal 2.5, parotid 2.85, submandibular 2.02 mm), volume
error, the added path length at the same tolerance (the outline a user would draw to
correct the prediction into the reference, in mm: pathlength.py; it predicts correction
time better than Dice; none where neither side has the gland), and a left/right swap flag:
a predicted gland that overlaps the reference of its partner more than its own reference. With --ct, the mean HU inside the predicted and the
reference gland (an uptake or density study depends on the outline, not only on Dice).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import SimpleITK as sitk

from GlandSegLib.cohort.datareport import figure_png, html_page, html_table, to_csv
from GlandSegLib.errors import InputNotFoundError, InvalidInputError, OutputExistsError
from GlandSegLib.geometry import resample_to, voxel_volume_ml
from GlandSegLib.glands import GLANDS, partner
from GlandSegLib.io.images import IMAGE_SUFFIXES, read_image_file, write_bytes_atomic, write_text_atomic
from GlandSegLib.cohort.metrics import SURFACE_TOLERANCE_MM, dice, hd95, surface_dice, volume_error_percent
from GlandSegLib.cohort.pathlength import added_path_length

PRED_LABELMAP = "glands_labelmap.nii.gz"
OUTPUT_FILES = ("metrics.csv", "summary.json", "report.html", "boxplots.png")
CSV_FIELDS = ("case_id", "gland", "label", "ref_voxels", "pred_voxels", "ref_volume_ml", "pred_volume_ml", "dice", "hd95_mm",
              "surface_dice", "tolerance_mm", "volume_error_percent", "apl_mm", "swapped", "hu_mean_pred", "hu_mean_ref",
              "hu_diff")
Log = Callable[[str], None]


@dataclass
class EvaluationResult:
    out: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    unmatched: dict[str, list[str]] = field(default_factory=dict)


def _strip(name: str) -> str | None:
    for suf in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suf):
            return re.sub(r"_0000$", "", name[: -len(suf)])
    return None


def collect(path: str | Path, what: str) -> dict[str, Path]:
    """case id -> label map (or CT) file/folder, for a single file or a folder (see module doc)."""
    p = Path(path)
    if not p.exists():
        raise InputNotFoundError(f"{p}: no such {what} file or folder")
    if p.is_file():
        cid = _strip(p.name)
        if cid is None:
            raise InvalidInputError(f"{p}: not a .nii(.gz), .nrrd or .mha file")
        return {cid: p}
    out: dict[str, Path] = {}
    for child in sorted(p.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file():
            cid = _strip(child.name)
            if cid is not None:
                out[cid] = child
        elif child.is_dir():
            if (child / PRED_LABELMAP).is_file() and what != "CT":
                out[child.name] = child / PRED_LABELMAP
            elif what == "CT":
                from GlandSegLib.cohort.cases import case_id_for

                out[case_id_for(child.name)] = child  # a patient folder (DICOM or one CT image), named as prepare names cases
    return out


def _read_labels(path: Path) -> sitk.Image:
    img = read_image_file(path)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InvalidInputError(f"{path}: a label map has one component per voxel")
    arr = sitk.GetArrayViewFromImage(img)
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.mod(arr[::4, ::4, ::4], 1) == 0):
        raise InvalidInputError(f"{path}: non-integer values: not a label map")
    return sitk.Cast(img, sitk.sitkUInt8) if arr.min() >= 0 and arr.max() <= 255 else img


def _read_ct(path: Path) -> sitk.Image:
    from GlandSegLib.cohort.cases import find_ct_input
    from GlandSegLib.io.images import read_ct

    return read_ct(find_ct_input(path) if path.is_dir() else path).image


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (a.GetSize() == b.GetSize() and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-5)
            and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-3) and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-5))


def evaluate_case(case_id: str, pred: sitk.Image, ref: sitk.Image, ct: sitk.Image | None = None) -> list[dict[str, Any]]:
    """One row per gland (see module doc); `ref` and `ct` are brought onto `pred`'s grid."""
    if not _same_grid(pred, ref):
        ref = resample_to(ref, pred, is_label=True)
    p = sitk.GetArrayFromImage(pred)
    r = sitk.GetArrayFromImage(ref)
    hu = None
    if ct is not None:
        hu = sitk.GetArrayFromImage(ct if _same_grid(ct, pred) else resample_to(ct, pred))
    spacing_zyx = list(reversed(pred.GetSpacing()))
    vml = voxel_volume_ml(pred)
    rows = []
    for g in GLANDS:
        pm, rm = p == g.label, r == g.label
        own = int(np.count_nonzero(pm & rm))
        other = int(np.count_nonzero(pm & (r == partner(g).label)))
        tol = SURFACE_TOLERANCE_MM[g.organ]
        row: dict[str, Any] = {
            "case_id": case_id, "gland": g.key, "label": g.label,
            "ref_voxels": int(rm.sum()), "pred_voxels": int(pm.sum()),
            "ref_volume_ml": round(float(rm.sum()) * vml, 3), "pred_volume_ml": round(float(pm.sum()) * vml, 3),
            "dice": _r(dice(pm, rm), 4), "hd95_mm": _r(hd95(pm, rm, spacing_zyx), 2),
            "surface_dice": _r(surface_dice(pm, rm, spacing_zyx, tol), 4), "tolerance_mm": tol,
            "volume_error_percent": _r(volume_error_percent(pm, rm), 1),
            # drawing the reference over the prediction; like Dice, undefined where both lack the gland
            "apl_mm": _r(added_path_length(pm, rm, pred, tol).apl_mm, 1) if own or pm.any() or rm.any() else None,
            "swapped": bool(other > own),
        }
        if hu is not None:
            hp = float(hu[pm].mean()) if pm.any() else None
            hr = float(hu[rm].mean()) if rm.any() else None
            row.update({"hu_mean_pred": _r(hp, 1), "hu_mean_ref": _r(hr, 1),
                        "hu_diff": _r(hp - hr, 1) if hp is not None and hr is not None else None})
        rows.append(row)
    return rows


def _r(v: float | None, digits: int) -> float | None:
    return None if v is None or not np.isfinite(v) else round(float(v), digits)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per gland: n, median/mean/IQR of each metric over cases where it is defined; swap count."""
    out: dict[str, Any] = {}
    for g in GLANDS:
        rs = [r for r in rows if r["gland"] == g.key]
        entry: dict[str, Any] = {"cases": len(rs), "swaps": sum(1 for r in rs if r["swapped"])}
        for m in ("dice", "hd95_mm", "surface_dice", "volume_error_percent", "apl_mm", "hu_diff"):
            v = [r[m] for r in rs if r.get(m) is not None]
            entry[m] = ({"n": len(v), "median": round(float(np.median(v)), 4), "mean": round(float(np.mean(v)), 4),
                         "q1": round(float(np.percentile(v, 25)), 4), "q3": round(float(np.percentile(v, 75)), 4)}
                        if v else {"n": 0})
        out[g.tg263] = entry
    return out


def evaluate(pred: str | Path, gt: str | Path, out: str | Path, *, ct: str | Path | None = None,
             overwrite: bool = False, log: Log = print) -> EvaluationResult:
    """Evaluate every case present on both sides; write OUTPUT_FILES into `out`."""
    t0 = time.perf_counter()
    out = Path(out)
    existing = [n for n in OUTPUT_FILES if (out / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{out} already holds an evaluation ({', '.join(existing)}); use --overwrite")
    preds, refs = collect(pred, "prediction"), collect(gt, "reference")
    cts = collect(ct, "CT") if ct is not None else {}
    if Path(pred).is_file() and Path(gt).is_file():  # two files: one case, whatever their names
        preds = {cid: Path(pred) for cid in refs}
        if ct is not None and Path(ct).is_file():
            cts = {cid: Path(ct) for cid in refs}
    common = sorted(set(preds) & set(refs))
    if not common:
        raise InvalidInputError(f"no case id is in both {pred} ({len(preds)} label maps) and {gt} ({len(refs)})")
    unmatched = {"prediction_only": sorted(set(preds) - set(refs)), "reference_only": sorted(set(refs) - set(preds))}
    if ct is not None:
        missing_ct = [c for c in common if c not in cts]
        if missing_ct:
            raise InvalidInputError(f"no CT in {ct} for cases {', '.join(missing_ct)}")
    rows: list[dict[str, Any]] = []
    for cid in common:
        rows += evaluate_case(cid, _read_labels(preds[cid]), _read_labels(refs[cid]), _read_ct(cts[cid]) if cid in cts else None)
        log(f"{cid}: " + ", ".join(f"{r['gland']} {r['dice'] if r['dice'] is not None else '-'}" for r in rows[-6:]))
    summary = {"cases": common, "unmatched": unmatched, "prediction": str(pred), "reference": str(gt),
               "surface_tolerance_mm": SURFACE_TOLERANCE_MM, "glands": summarize(rows),
               "seconds": round(time.perf_counter() - t0, 2)}
    out.mkdir(parents=True, exist_ok=True)
    fields = CSV_FIELDS if ct is not None else tuple(f for f in CSV_FIELDS if not f.startswith("hu_"))
    write_text_atomic(to_csv(rows, fields), out / "metrics.csv")
    write_text_atomic(json.dumps(summary, indent=2) + "\n", out / "summary.json")
    _write_report(rows, summary, out, with_hu=ct is not None)
    return EvaluationResult(out, rows, summary, unmatched)


def _write_report(rows: list[dict[str, Any]], summary: dict[str, Any], out: Path, with_hu: bool) -> None:
    metrics = [("dice", "Dice"), ("surface_dice", "surface Dice at tolerance"), ("hd95_mm", "HD95 (mm)"),
               ("volume_error_percent", "volume error (%)"), ("apl_mm", "added path length (mm)")]
    panels = [({g.tg263: {"cases": [r[key] for r in rows if r["gland"] == g.key and r.get(key) is not None]} for g in GLANDS},
               label, label) for key, label in metrics]
    write_bytes_atomic(figure_png(panels, columns=2), out / "boxplots.png")
    table = []
    for g in GLANDS:
        s = summary["glands"][g.tg263]
        table.append({"gland": g.tg263, "cases": s["cases"], "Dice median": s["dice"].get("median"),
                      "surface Dice median": s["surface_dice"].get("median"), "tolerance mm": SURFACE_TOLERANCE_MM[g.organ],
                      "HD95 mm median": s["hd95_mm"].get("median"), "volume error % median": s["volume_error_percent"].get("median"),
                      "APL mm median": s["apl_mm"].get("median"),
                      "HU diff median": s["hu_diff"].get("median"), "left/right swaps": s["swaps"]})
    cols = ["gland", "cases", "Dice median", "surface Dice median", "tolerance mm", "HD95 mm median", "volume error % median",
            "APL mm median"]
    cols += ["HU diff median"] if with_hu else []
    cols += ["left/right swaps"]
    case_cols = ["case_id", "gland", "dice", "hd95_mm", "surface_dice", "volume_error_percent", "apl_mm", "swapped"]
    case_cols += ["hu_mean_pred", "hu_mean_ref"] if with_hu else []
    sections = ["<h2>Per gland</h2>", html_table(table, cols), "<img src='boxplots.png' alt='box plots'>",
                "<h2>Per case</h2>", html_table(rows, case_cols)]
    if summary["unmatched"]["prediction_only"] or summary["unmatched"]["reference_only"]:
        sections.insert(0, "<p>Unmatched: " + json.dumps(summary["unmatched"]) + "</p>")
    write_text_atomic(html_page("GlandSeg evaluation", sections), out / "report.html")

