"""`glandseg prepare`: a cohort of outlined CTs -> an nnU-Net v2 raw dataset + a data report.

Why every case goes through `locate_head` + `resample_box` at the model spacing: the
network must see exactly what inference feeds it (same locator, same physical box, same
identity-direction LPS grid, same interpolation), so a model trained on these files needs
no other preprocessing. Physical geometry is kept: crops keep their LPS origin, nothing is
reset to zero, so a label file can always be laid back onto its CT.

The hold-out split is drawn once, seeded, over the sorted case ids (so the same cohort
and seed always hold out the same patients), before any case is read. Hold-out cases go
to imagesTs/labelsTs, where `glandseg evaluate` finds their reference labels.

Everything is staged in a hidden folder beside the dataset and renamed into place at the
end: an interrupted run leaves no half-written dataset. `--dry-run` does all the reading
and checking and writes nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import SimpleITK as sitk

from GlandSegLib.io.images import replace_dir_atomic
from GlandSegLib import __version__
from GlandSegLib.cohort.datareport import find_anomalies, write_data_report
from GlandSegLib.cohort.cases import OVERLAP_RULE, CaseSource, LoadedCase, RoiMap, discover_cohort, load_case
from GlandSegLib.errors import GlandSegError, InvalidInputError, OutputExistsError
from GlandSegLib.geometry import centroid_lps, crop, image_bounds, index_region, resample_box, voxel_volume_ml
from GlandSegLib.glands import GLANDS
from GlandSegLib.segmentation.headbox import HeadBox, locate_head
from GlandSegLib.segmentation.postprocess import laterality_warnings
from GlandSegLib.training.dataset import parse_dataset_path, write_raw_dataset
from GlandSegLib.training.defaults import DEFAULT_SPACING, LOCATOR, RAW_FILE_ENDING

Log = Callable[[str], None]
TOP_MARGIN_MM = 30.0  # field of view ending closer than this above the lacrimal glands: top of head missing
REPORT_FILES = ("report.html", "report.csv", "report_volumes.png", "report_hu.png")


@dataclass
class PrepareResult:
    dataset: Path  # where it is (or would be, for a dry run)
    records: list[dict[str, Any]]  # one per discovered case (see case_record)
    failed: list[dict[str, str]]
    train_ids: list[str]
    test_ids: list[str]
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0


def holdout_split(case_ids: Sequence[str], fraction: float, seed: int) -> list[str]:
    """The held-out case ids: round(fraction x n), at least one when fraction > 0 and n > 1,
    always leaving one case to train on; drawn with numpy's seeded generator."""
    if not 0.0 <= fraction < 1.0:
        raise InvalidInputError(f"--holdout must be in [0, 1), got {fraction}")
    ids = sorted(case_ids)
    n = len(ids)
    k = int(round(fraction * n))
    if fraction > 0 and n > 1:
        k = max(k, 1)
    k = min(k, max(n - 1, 0))
    order = np.random.default_rng(seed).permutation(n)
    return sorted(ids[i] for i in order[:k])


# --------------------------------------------------------------------------- one case


def _faces_touched(mask: np.ndarray) -> list[tuple[int, int]]:
    """(array axis, 0|1) of the volume faces a (z, y, x) mask touches."""
    out = []
    for axis in range(3):
        if not mask.any():
            break
        if np.take(mask, 0, axis=axis).any():
            out.append((axis, 0))
        if np.take(mask, mask.shape[axis] - 1, axis=axis).any():
            out.append((axis, 1))
    return out


def case_record(loaded: LoadedCase, box: HeadBox, crop_size: Sequence[int]) -> dict[str, Any]:
    """Per-gland volume, HU, centroid and the per-case anomaly checks (datareport aggregates).

    Measured on the exact voxels of the head box (no resampling); a face of that crop is an
    image face where the box reaches the image's edge, else a box face.
    """
    ct, labels = loaded.ct, loaded.labels
    start, size = index_region(labels, box)
    full_counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=7)
    lab_c = crop(labels, box)
    ct_c = crop(ct, box)
    lab = sitk.GetArrayViewFromImage(lab_c)
    hu = sitk.GetArrayViewFromImage(ct_c)
    dims = labels.GetSize()
    # array axis a (z, y, x) <-> image index axis 2 - a
    image_face = {(a, 0): start[2 - a] == 0 for a in range(3)}
    image_face.update({(a, 1): start[2 - a] + size[2 - a] == dims[2 - a] for a in range(3)})
    side = laterality_warnings(lab_c, box.midline_x)
    vml = voxel_volume_ml(labels)
    glands: dict[str, dict[str, Any]] = {}
    for g in GLANDS:
        m = lab == g.label
        n = int(m.sum())
        row: dict[str, Any] = {"label": g.label, "present": bool(full_counts[g.label]), "volume_ml": round(float(full_counts[g.label]) * vml, 3)}
        if n:
            v = hu[m].astype(np.float32)
            faces = _faces_touched(m)
            c = centroid_lps(m, lab_c)
            row.update({
                "hu_mean": round(float(v.mean()), 1), "hu_sd": round(float(v.std()), 1),
                "hu_p05": round(float(np.percentile(v, 5)), 1), "hu_p50": round(float(np.percentile(v, 50)), 1),
                "hu_p95": round(float(np.percentile(v, 95)), 1),
                "centroid_lps_mm": [round(float(x), 1) for x in c] if c is not None else None,
                "touches_image_border": any(image_face[f] for f in faces),
                "touches_crop_border": any(not image_face[f] for f in faces) or n < int(full_counts[g.label]),
                "wrong_side": bool(side[g.label]),
            })
        glands[g.key] = row
    flags: list[str] = []
    if box.method != "cranium":
        flags.append(f"top of head missing: no cranium found, head box from the {box.method.replace('-', ' ')}")
    top_z = image_bounds(ct).upper[2]
    lacrimal_z = [glands[k]["centroid_lps_mm"][2] for k in ("lacrimal_r", "lacrimal_l") if glands[k].get("centroid_lps_mm")]
    if lacrimal_z and top_z < max(lacrimal_z) + TOP_MARGIN_MM:
        flags.append(f"top of head missing: the field of view ends {top_z - max(lacrimal_z):.0f} mm above the lacrimal glands")
    return {
        "case_id": loaded.source.case_id, "kind": loaded.source.kind, "structures": loaded.structures,
        "missing": loaded.missing, "overlaps": loaded.overlaps, "warnings": loaded.warnings,
        "image_size": list(ct.GetSize()), "image_spacing_mm": [round(s, 4) for s in ct.GetSpacing()],
        "box": box.to_dict(), "crop_size": [int(s) for s in crop_size], "glands": glands, "flags": flags,
    }


def prepare_case(source: CaseSource, roi_map: RoiMap, spacing: Sequence[float]) -> tuple[sitk.Image, sitk.Image, dict[str, Any]]:
    """Load, locate the head, crop CT (linear) and labels (nearest) on the model grid."""
    loaded = load_case(source, roi_map)
    box = locate_head(loaded.ct)
    ct_crop = resample_box(loaded.ct, box, spacing, is_label=False)
    lab_crop = resample_box(loaded.labels, box, spacing, is_label=True)
    return ct_crop, lab_crop, case_record(loaded, box, ct_crop.GetSize())


# --------------------------------------------------------------------------- the dataset


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """What the model card says about its training data (no patient information)."""
    out: dict[str, Any] = {"cases": len(records), "kinds": {}, "glands": {}}
    for r in records:
        out["kinds"][r["kind"]] = out["kinds"].get(r["kind"], 0) + 1
    for g in GLANDS:
        vols = [r["glands"][g.key]["volume_ml"] for r in records if r["glands"][g.key]["present"]]
        hu = [r["glands"][g.key]["hu_mean"] for r in records if r["glands"][g.key].get("hu_mean") is not None]
        out["glands"][g.tg263] = {
            "cases_with_gland": len(vols),
            "volume_ml_median": round(float(np.median(vols)), 2) if vols else None,
            "volume_ml_range": [round(float(min(vols)), 2), round(float(max(vols)), 2)] if vols else None,
            "hu_mean_median": round(float(np.median(hu)), 1) if hu else None,
        }
    return out


def prepare_dataset(
    cohort: str | Path,
    output: str | Path,
    *,
    roi_map: RoiMap | None = None,
    holdout: float = 0.1,
    seed: int = 0,
    spacing: Sequence[float] = DEFAULT_SPACING,
    dry_run: bool = False,
    overwrite: bool = False,
    log: Log = print,
) -> PrepareResult:
    """Discover, split, load, crop, check and (unless dry_run) write the dataset and report."""
    t0 = time.perf_counter()
    raw_root, dataset_id, name = parse_dataset_path(output)
    target = raw_root / f"Dataset{dataset_id:03d}_{name}"
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InvalidInputError(f"--spacing needs three positive values, got {spacing}")
    roi_map = roi_map or RoiMap()
    if not dry_run:
        if target.exists() and not overwrite:
            raise OutputExistsError(f"{target} exists; use --overwrite to replace it")
        others = sorted(p.name for p in raw_root.glob(f"Dataset{dataset_id:03d}_*") if p != target) if raw_root.is_dir() else []
        if others:
            raise OutputExistsError(f"dataset id {dataset_id:03d} is already used by {raw_root / others[0]}")
    sources = discover_cohort(cohort, roi_map)
    test_ids = holdout_split([s.case_id for s in sources], holdout, seed)
    log(f"{len(sources)} patient folders; hold-out {len(test_ids)} (seed {seed}); crop spacing {spacing} mm")

    records: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    staging = None if dry_run else Path(tempfile.mkdtemp(prefix=".glandseg-prepare-", dir=_mkdir(raw_root)))
    test_dir = staging / "test" if staging else None

    def cases() -> Iterator[tuple[str, sitk.Image, sitk.Image]]:
        for i, src in enumerate(sources, start=1):
            split = "test" if src.case_id in test_ids else "train"
            t = time.perf_counter()
            try:
                ct_crop, lab_crop, rec = prepare_case(src, roi_map, spacing)
            except GlandSegError as exc:
                failed.append({"case_id": src.case_id, "error": str(exc)})
                log(f"[{i}/{len(sources)}] {src.case_id}: skipped: {exc}")
                continue
            rec["split"] = split
            records.append(rec)
            notes = [f"missing {', '.join(rec['missing'])}"] if rec["missing"] else []
            notes += [f"overlap {k} {v} voxels" for k, v in rec["overlaps"].items()]
            log(f"[{i}/{len(sources)}] {src.case_id} ({src.kind}, {split}): crop {rec['crop_size']}, "
                f"{time.perf_counter() - t:.1f} s{'; ' + '; '.join(notes) if notes else ''}")
            if test_dir is not None and split == "test":
                _write_pair(test_dir, src.case_id, ct_crop, lab_crop)
            elif split == "train":
                yield src.case_id, ct_crop, lab_crop

    try:
        if dry_run:
            for _ in cases():
                pass
        else:
            assert staging is not None
            try:
                write_raw_dataset(cases(), staging, dataset_id, name, spacing,
                                  f"GlandSeg cohort {Path(cohort).name}: six glands, cropped by the {LOCATOR} head locator",
                                  locator=LOCATOR)
            except ValueError as exc:
                if "no training cases" in str(exc):
                    raise InvalidInputError(f"no usable training case in {cohort} ({len(failed)} failed)") from None
                raise
        train_ids = sorted(r["case_id"] for r in records if r["split"] == "train")
        test_done = sorted(r["case_id"] for r in records if r["split"] == "test")
        anomalies = find_anomalies(records)
        result = PrepareResult(target, records, failed, train_ids, test_done, anomalies, dry_run)
        if not dry_run:
            assert staging is not None and test_dir is not None
            folder = staging / target.name
            if test_dir.exists():
                for sub in ("imagesTs", "labelsTs"):
                    os.replace(test_dir / sub, folder / sub)
            _finish_dataset_json(folder, result, cohort, roi_map, holdout, seed, spacing)
            write_data_report(result, folder)
            replace_dir_atomic(folder, target)
        result.seconds = time.perf_counter() - t0
        return result
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _write_pair(folder: Path, case_id: str, ct: sitk.Image, labels: sitk.Image) -> None:
    """A hold-out case, stored like nnU-Net's training files (float32 CT, uint8 labels)."""
    (folder / "imagesTs").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTs").mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.Cast(ct, sitk.sitkFloat32), str(folder / "imagesTs" / f"{case_id}_0000{RAW_FILE_ENDING}"), useCompression=True)
    sitk.WriteImage(sitk.Cast(labels, sitk.sitkUInt8), str(folder / "labelsTs" / f"{case_id}{RAW_FILE_ENDING}"), useCompression=True)


def _finish_dataset_json(folder: Path, result: PrepareResult, cohort: str | Path, roi_map: RoiMap, holdout: float,
                         seed: int, spacing: list[float]) -> None:
    """Record how the dataset was made in dataset.json's glandseg block; nnU-Net copies the
    file into its preprocessed and results folders, so the export finds it there."""
    path = folder / "dataset.json"
    ds = json.loads(path.read_text())
    train = [r for r in result.records if r["split"] == "train"]
    ds["glandseg"]["prepare"] = {
        "glandseg_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cohort": Path(cohort).name,
        "spacing_mm": spacing,
        "holdout_fraction": holdout,
        "seed": seed,
        "train_cases": result.train_ids,
        "test_cases": result.test_ids,
        "failed_cases": result.failed,
        "roi_map": roi_map.to_dict(),
        "overlap_rule": OVERLAP_RULE,
        "anomalies": len(result.anomalies),
        "summary": _summary(train),
        "test_summary": _summary([r for r in result.records if r["split"] == "test"]),
    }
    ds["glandseg"]["cases"] = result.records
    ds["numTest"] = len(result.test_ids)
    path.write_text(json.dumps(ds, indent=2) + "\n")
