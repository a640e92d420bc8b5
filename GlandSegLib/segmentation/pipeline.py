"""The main job: a CT in, six gland segments, statistics and pictures out.

read -> locate the head -> crop a physical box -> resample to the model grid -> nnU-Net
(mirroring off) -> probabilities back onto the CT's own grid inside the crop -> largest
component per gland -> lacrimal stage where the model has one (a 1.25 mm box beside each
orbit, anchored at the parotid found; GlandSegLib.segmentation.lacrimal) -> paste into the full CT grid
-> write. Outputs are staged in a
hidden folder and moved into place only when everything succeeded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import SimpleITK as sitk

from GlandSegLib import __version__
from GlandSegLib.errors import InvalidInputError, OutputExistsError
from GlandSegLib.geometry import PhysicalBox, crop, image_bounds, model_grid, paste, resample_to
from GlandSegLib.glands import GLANDS
from GlandSegLib.segmentation.headbox import HeadBox, locate_head
from GlandSegLib.io.images import read_ct, read_image_file, write_image_atomic
from GlandSegLib.segmentation.assessment import UNCERTAINTY_FILE, UNCERTAINTY_VALUES, assess_glands, report_fields, report_summary
from GlandSegLib.segmentation.inference import GlandPredictor
from GlandSegLib.models.registry import load_model_info
from GlandSegLib.segmentation.overview import render_overview
from GlandSegLib.segmentation.postprocess import laterality_warnings
from GlandSegLib.progress import Progress
from GlandSegLib.segmentation.report import write_reports
from GlandSegLib.io.segfile import write_seg_nrrd
from GlandSegLib.segmentation.stats import gland_statistics

OUTPUT_FILES = ("glands_labelmap.nii.gz", "glands.seg.nrrd", "report.json", "report.csv", "overview.png")


@dataclass
class SegmentResult:
    outdir: Path
    report: dict
    labels: sitk.Image  # on the input CT grid
    rejected: sitk.Image | None = None  # segments the anatomy checks rejected (head-crop grid; not written)


def head_crops(ct: sitk.Image, box: PhysicalBox, spacing_xyz: Sequence[float]) -> tuple[sitk.Image, sitk.Image]:
    """The head twice: at the CT's own voxels (statistics and the lacrimal stage read true HU
    there) and resampled onto the model's grid (what the network sees). Every caller that
    feeds a model (the pipeline, prior calibration, pseudo-labels) crops the same way, so a
    weight fitted or a label made on one is valid for the others."""
    ct_crop = crop(ct, box)  # exact voxels, input grid
    return ct_crop, resample_to(ct_crop, model_grid(box, spacing_xyz))


def check_outdir(outdir: Path, overwrite: bool) -> None:
    existing = [f for f in (*OUTPUT_FILES, UNCERTAINTY_FILE) if (outdir / f).exists()]
    if existing and not overwrite:
        raise OutputExistsError(f"{outdir} already holds GlandSeg results ({', '.join(existing)}); use --overwrite to replace them")


def find_head(image: sitk.Image, locator: str, box: PhysicalBox | None = None) -> HeadBox:
    """The head box: the user's own (e.g. adjusted in Slicer) or a locator's."""
    if box is not None:
        try:
            inside = box.intersect(image_bounds(image))
        except ValueError:
            raise InvalidInputError("the given --box lies outside the image") from None
        return HeadBox(inside.lower, inside.upper, midline_x=float(box.center[0]), method="user")
    if locator == "fast":
        return locate_head(image)
    if locator == "totalsegmentator":
        from GlandSegLib.segmentation.totalseg import locate_head_totalsegmentator

        return locate_head_totalsegmentator(image)
    raise ValueError(f"unknown locator {locator!r}")


def segment(
    input_path: str | Path,
    outdir: str | Path,
    *,
    model: str | None = None,
    device: str = "auto",
    locator: str = "fast",
    overwrite: bool = False,
    series_uid: str | None = None,
    uptake_path: str | Path | None = None,
    trust_model: bool = False,
    progress: Progress | None = None,
    predictor: GlandPredictor | None = None,
    box: PhysicalBox | None = None,
    keep_identifiers: bool = False,
    dicom_out: bool = False,
    tile_step: float | None = None,
    uncertainty: bool = False,
    keep_rejected: bool = False,
) -> SegmentResult:
    """dicom_out: also write a DICOM SEG and an RTSTRUCT referencing the input series (dicom_out.py).
    tile_step: sliding-window step as a fraction of the patch (None: inference.DEFAULT_TILE_STEP).
    uncertainty: also write uncertainty.nii.gz (assessment.UNCERTAINTY_VALUES) on the CT grid.
    keep_rejected: write the segments the anatomy checks discard as well (status.py); their
    status still says rejected / outside the field of view, and why."""
    progress = progress or Progress("none")
    outdir = Path(outdir)
    check_outdir(outdir, overwrite)
    if dicom_out and not overwrite:
        from GlandSegLib.io.dicom_out import DICOM_OUTPUT_FILES

        if any((outdir / f).exists() for f in DICOM_OUTPUT_FILES):
            raise OutputExistsError(f"{outdir} already holds DICOM results; use --overwrite to replace them")
    t0 = time.perf_counter()
    info = predictor.info if predictor is not None else load_model_info(model)  # fail fast on a bad model

    progress.start("read", "reading CT")
    loaded = read_ct(input_path, series_uid)
    ct = loaded.image
    if dicom_out and loaded.series is None:
        raise InvalidInputError("--dicom-out needs a DICOM input (a DICOM SEG and RTSTRUCT must reference the source series)")
    if dicom_out and loaded.tilt_deg is not None:  # before inference: the whole run would be wasted
        raise InvalidInputError(
            f"--dicom-out: this series is gantry-tilted ({loaded.tilt_deg:.1f} degrees) and is segmented on a regular grid; "
            "GlandSeg cannot yet write a DICOM SEG or RTSTRUCT that references the tilted slices: rerun without --dicom-out "
            "(the label map and .seg.nrrd are on the regular grid) or reconstruct the series without tilt")
    for w in loaded.warnings:  # e.g. a tilted series regularised: the user must know the grid changed
        progress.log(w)
    uptake = read_image_file(Path(uptake_path)) if uptake_path else None

    progress.start("locate", "using the given head box" if box is not None else f"locating the head ({locator})")
    box = find_head(ct, locator, box)

    progress.start("load-model", "loading model")
    if predictor is None:
        predictor = GlandPredictor(info, device, trust_model=trust_model, tile_step_size=tile_step)
    for w in info.warnings:
        progress.log(w)

    progress.start("crop", "cropping and resampling the head")
    ct_crop, model_crop = head_crops(ct, box, info.spacing_xyz)

    progress.start("inference", f"nnU-Net on {predictor.device}")
    probs = predictor.predict_probabilities(model_crop, progress=lambda f, m: progress.update(f, m))

    progress.start("postprocess", "largest component, anatomy checks, laterality")
    # statuses (found, cut, outside the field of view, not found, rejected), the lacrimal stage, confidences
    assessed = assess_glands(ct, ct_crop, model_crop, probs, predictor, box.midline_x, uncertainty=uncertainty, progress=progress,
                             keep_rejected=keep_rejected)
    del probs
    labels_crop = assessed.labels
    side_warnings = laterality_warnings(labels_crop, box.midline_x)
    stats = gland_statistics(labels_crop, ct_crop, uptake)

    progress.start("paste", "labels back onto the CT grid")
    labels_full = paste(labels_crop, ct)
    umap_full = None
    if assessed.uncertainty is not None:
        umap = sitk.GetImageFromArray(assessed.uncertainty)
        umap.CopyInformation(ct_crop)
        umap_full = paste(umap, ct)

    progress.start("write", f"writing {outdir}")
    glands = []
    for g in GLANDS:
        row = dict(stats[g.label])
        fields, status_warnings = report_fields(assessed, g.label)
        row.update(fields)
        row["warnings"] = list(side_warnings[g.label]) + status_warnings
        row["laterality_ok"] = not any("swap" in w for w in row["warnings"])
        glands.append(row)
        for w in row["warnings"]:
            progress.log(w)
    report = {
        "glandseg_version": __version__,
        **_input_identity(input_path, loaded.series, keep_identifiers),
        "input_geometry": {"size": list(ct.GetSize()), "spacing_mm": [round(s, 4) for s in ct.GetSpacing()],
                           "origin_lps_mm": [round(o, 3) for o in ct.GetOrigin()], "direction": [round(d, 6) for d in ct.GetDirection()],
                           "gantry_tilt_deg": None if loaded.tilt_deg is None else round(loaded.tilt_deg, 2),
                           "regularised": loaded.tilt_deg is not None},
        "crop_box": box.to_dict(),
        "model": {"name": info.name, "folder": str(info.folder), "configuration": info.configuration,
                  "spacing_mm": info.spacing_xyz, "folds": info.folds, "stages": sorted(info.stages)},
        "device": predictor.device,
        "locator": "user box" if box.method == "user" else locator,
        "glands": glands,
        **report_summary(assessed, glands),
        "warnings": list(loaded.warnings) + [w for row in glands for w in row["warnings"]] + list(info.warnings),
    }
    if umap_full is not None:
        report["uncertainty_map"] = {"file": UNCERTAINTY_FILE, "values": UNCERTAINTY_VALUES}
    _write_outputs(outdir, report, labels_full, labels_crop, ct_crop, progress, t0,
                   dicom_files=loaded.series.files if dicom_out and loaded.series else None, uncertainty=umap_full)
    return SegmentResult(outdir, report, labels_full, assessed.rejected)


PATIENT_TAGS = {"0010|0010": "patient_name", "0010|0020": "patient_id", "0010|0030": "patient_birth_date", "0008|0020": "study_date"}


def _input_identity(input_path: str | Path, series, keep: bool) -> dict:
    """Reports travel (e-mail, dose systems): without --keep-identifiers they name the input
    only by a hash of its path and its DICOM UIDs, never by patient name or birth date."""
    ident: dict = {"dicom_series_uid": series.uid if series else None,
                   "dicom_study_uid": series.tags.get("0020|000d") if series else None}
    if keep:
        ident["input"] = str(input_path)
        if series:
            ident["patient"] = {v: series.tags.get(k) for k, v in PATIENT_TAGS.items()}
    else:
        ident["input_path_sha256"] = hashlib.sha256(str(Path(input_path).resolve()).encode()).hexdigest()[:16]
    return ident


def _write_outputs(outdir: Path, report: dict, labels_full: sitk.Image, labels_crop: sitk.Image,
                   ct_crop: sitk.Image, progress: Progress, t0: float, dicom_files: list[str] | None = None,
                   uncertainty: sitk.Image | None = None) -> None:
    """Stage every file in a hidden folder, then move them in: no half-written result set."""
    outdir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".glandseg-", dir=outdir))
    try:
        write_image_atomic(labels_full, stage / "glands_labelmap.nii.gz")
        write_seg_nrrd(labels_crop, stage / "glands.seg.nrrd")
        render_overview(ct_crop, labels_crop, stage / "overview.png", title=f"GlandSeg {report['model']['name']}")
        names = list(OUTPUT_FILES)
        if uncertainty is not None:
            write_image_atomic(uncertainty, stage / UNCERTAINTY_FILE)
            names.append(UNCERTAINTY_FILE)
        if dicom_files is not None:
            from GlandSegLib.io.dicom_out import write_dicom_outputs

            names += write_dicom_outputs(labels_full, dicom_files, stage)
        progress.finish()
        report["timings_s"] = dict(progress.timings)
        report["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
        write_reports(report, stage)
        for name in names:
            os.replace(stage / name, outdir / name)
        if uncertainty is None:  # an earlier run's map would sit beside labels it does not describe
            (outdir / UNCERTAINTY_FILE).unlink(missing_ok=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    progress.done(f"wrote {outdir}")
