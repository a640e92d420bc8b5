"""Real CT decides: a model measured on real scans, every gland, before any phantom figure.

Three real sources, each for what it can tell (see ../shared/data/README.md):

* the PDDCA planning CT 0522c0001: the one real CT here with expert outlines of the
  submandibular glands (and parotids). For measuring only: never train, tune a threshold or
  pick a checkpoint on it. Its parotid outlines follow the PDDCA convention (about 12 ml),
  smaller than the TCIA experts' (20-45 ml), so its parotid Dice is a lower bound;
* the 33 OpenKBP validation CTs: expert parotids (Dice, HD95, surface Dice), and for
  every gland the volume found against the experts' distribution;
* the 70 TCIA expert outline sets (no CT): the distribution of gland volumes (median,
  5th-95th percentile), how far the orbit roof lies above the parotids, which says
  whether a scan's field of view reaches the lacrimal glands at all, and where each gland's
  centre lies relative to the parotid of its side (expected_anatomy.json). On OpenKBP the
  parotids are outlined, so a submandibular or lacrimal gland found there can be placed
  against the experts' anatomy without outlines of its own: a right volume in the wrong
  place is not a right gland.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.cohort.metrics import SURFACE_TOLERANCE_MM, dice, hd95, surface_dice, volume_error_percent
from GlandSegLib.geometry import centroid_lps, voxel_volume_ml
from GlandSegLib.glands import BY_LABEL, GLANDS, gland

PDDCA_CASE = "pddca-0522c0001"
PDDCA_STRUCTURES = {"Parotid_R": gland("parotid", "R").label, "Parotid_L": gland("parotid", "L").label,
                    "Submandibular_R": gland("submandibular", "R").label,
                    "Submandibular_L": gland("submandibular", "L").label}
_TCIA_COLUMN = {"parotid": "Parotid", "submandibular": "Submandibular", "lacrimal": "Lacrimal"}
_SIDE = {"R": "Rt", "L": "Lt"}
ORBIT_ROOF_PERCENTILE = 95  # a scan reaching this far above the parotids holds the orbit roof of 95% of people
# Where the experts' glands lie, as three independent normal offsets (x, y, z): 95% of them lie
# within this many SDs (square root of chi-square's 95th percentile with 3 degrees of freedom)
POSITION_REGION_SD = 2.795
_AXES = ("x", "y", "z")


# ----------------------------------------------------------------------------- the experts


def expert_volumes(outlines: Path) -> dict[str, dict[str, float]]:
    """Per gland: the TCIA experts' volume median and 5th/95th percentiles (ml), both raters,
    empty outlines (resected glands) left out."""
    with open(Path(outlines) / "geometry_and_gland_volumes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for g in GLANDS:
        column = f"{_TCIA_COLUMN[g.organ]}-{_SIDE[g.side]}_ml"
        values = np.array([float(r[column]) for r in rows if r.get(column) not in (None, "") and float(r[column]) > 0])
        out[g.key] = {"n": int(values.size), "median_ml": round(float(np.median(values)), 2),
                      "p05_ml": round(float(np.percentile(values, 5)), 2),
                      "p95_ml": round(float(np.percentile(values, 95)), 2)}
    return out


def _top_z(mask: np.ndarray, image: sitk.Image) -> float | None:
    """Highest physical z (LPS, superior) of a mask on `image`'s grid, or None when it is empty."""
    ks = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    if ks.size == 0:
        return None
    return max(image.TransformContinuousIndexToPhysicalPoint((0.0, 0.0, float(k)))[2] for k in (ks[0], ks[-1]))


def _top_z_of_file(mask_file: Path) -> float | None:
    img = sitk.ReadImage(str(mask_file))
    return _top_z(sitk.GetArrayViewFromImage(img), img)


def orbit_roof_above_parotid_mm(outlines: Path) -> dict[str, float]:
    """How far the top of the orbits lies above the top of the parotids, over the TCIA outline
    sets (both raters, both splits): median and the percentile that decides "in view"."""
    gaps = []
    for seg in sorted(Path(outlines).glob("nrrds/*/*/*/segmentations")):
        tops = {name: _top_z_of_file(seg / f"{name}.nrrd") for name in ("Orbit-Lt", "Orbit-Rt", "Parotid-Lt", "Parotid-Rt")
                if (seg / f"{name}.nrrd").is_file()}
        orbit = [tops[k] for k in ("Orbit-Lt", "Orbit-Rt") if tops.get(k) is not None]
        parotid = [tops[k] for k in ("Parotid-Lt", "Parotid-Rt") if tops.get(k) is not None]
        if orbit and parotid:
            gaps.append(max(orbit) - max(parotid))
    if not gaps:
        raise ValueError(f"no outline set in {outlines} has both orbits and parotids")
    return {"n": len(gaps), "median_mm": round(float(np.median(gaps)), 1),
            f"p{ORBIT_ROOF_PERCENTILE}_mm": round(float(np.percentile(gaps, ORBIT_ROOF_PERCENTILE)), 1)}


# ----------------------------------------------------------------------------- scoring


def score_case(pred: sitk.Image, truth: sitk.Image, labels: list[int], *, volumes: bool = False) -> dict[str, dict]:
    """Per gland outlined in `truth`: Dice, HD95, surface Dice (and volumes) of `pred`, on truth's grid."""
    if pred.GetSize() != truth.GetSize() or not np.allclose(pred.GetOrigin(), truth.GetOrigin(), atol=1e-3) \
            or not np.allclose(pred.GetDirection(), truth.GetDirection(), atol=1e-6):
        pred = sitk.Resample(pred, truth, sitk.Transform(), sitk.sitkNearestNeighbor, 0, pred.GetPixelID())
    p, t = sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(truth)
    spacing = list(reversed(truth.GetSpacing()))
    voxel_ml = voxel_volume_ml(truth)
    out = {}
    for label in labels:
        g = BY_LABEL[label]
        a, b = p == label, t == label
        if not b.any():
            continue
        row = {"dice": dice(a, b), "hd95_mm": hd95(a, b, spacing),
               "surface_dice": surface_dice(a, b, spacing, SURFACE_TOLERANCE_MM[g.organ])}
        if volumes:
            row.update({"volume_ml": round(float(a.sum()) * voxel_ml, 2), "truth_volume_ml": round(float(b.sum()) * voxel_ml, 2),
                        "volume_error_percent": volume_error_percent(a, b)})
        out[g.key] = row
    return out


def pddca_truth(case: Path, reference: sitk.Image) -> sitk.Image:
    """The PDDCA outlines as one GlandSeg labelmap on the CT's grid (they are drawn on it)."""
    arr = np.zeros(sitk.GetArrayViewFromImage(reference).shape, np.uint8)
    for name, label in PDDCA_STRUCTURES.items():
        mask = sitk.ReadImage(str(case / "structures" / f"{name}.nrrd"))
        if mask.GetSize() != reference.GetSize() or not np.allclose(mask.GetOrigin(), reference.GetOrigin(), atol=0.01):
            raise ValueError(f"{name}: not on the CT's grid")
        arr[sitk.GetArrayViewFromImage(mask) > 0] = label
    truth = sitk.GetImageFromArray(arr)
    truth.CopyInformation(reference)
    return truth


def evaluate_pddca(predictor, case: Path, work: Path) -> dict:
    """The PDDCA planning CT (DICOM, as a user would give it): parotids and submandibular glands."""
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.segmentation.pipeline import segment

    case = Path(case)
    res = segment(case / "ct-dicom", work / PDDCA_CASE, predictor=predictor, overwrite=True)
    truth = pddca_truth(case, read_ct(case / "ct-dicom").image)
    return {"case": "0522c0001 (TCIA Head-Neck Cetuximab; PDDCA outlines)", "use": "measurement only",
            "glands": score_case(res.labels, truth, sorted(PDDCA_STRUCTURES.values()), volumes=True)}


def scan_top_above_parotid_mm(ct: sitk.Image, truth: sitk.Image) -> float | None:
    """How far the body in the scan reaches above the top of the (outlined) parotids, in mm."""
    body = sitk.GetArrayViewFromImage(ct) > -300
    par = sitk.GetArrayViewFromImage(truth) > 0
    if not par.any():
        return None
    return round(_top_z(body, ct) - _top_z(par, ct), 1)


def volume_plausibility(found: dict[str, dict[str, float]], experts: dict[str, dict[str, float]],
                        in_view: dict[str, dict[str, bool]] | None = None) -> dict[str, dict]:
    """Per gland over patients: how often found (among those whose scan holds its region), the
    median volume, and how many volumes fall inside the experts' 5-95% range."""
    out = {}
    for g in GLANDS:
        patients = [p for p in found if in_view is None or in_view[p].get(g.key, True)]
        vols = [found[p][g.key] for p in patients if found[p].get(g.key, 0.0) > 0]
        e = experts[g.key]
        inside = [v for v in vols if e["p05_ml"] <= v <= e["p95_ml"]]
        out[g.key] = {"patients_in_view": len(patients), "found": len(vols),
                      "found_fraction": round(len(vols) / len(patients), 3) if patients else None,
                      "volume_ml_median": round(statistics.median(vols), 2) if vols else None,
                      "inside_expert_range": len(inside),
                      "median_inside_expert_range": bool(vols) and e["p05_ml"] <= statistics.median(vols) <= e["p95_ml"],
                      "experts": e}
    return out


# ----------------------------------------------------------------------------- where the glands lie


def centroids_mm(labels: sitk.Image) -> dict[str, list[float]]:
    """Physical (LPS) centre of every gland present in a GlandSeg labelmap (an outline's; the
    glands a segmentation finds come with theirs in its report)."""
    arr = sitk.GetArrayViewFromImage(labels)
    return {g.key: [round(float(v), 2) for v in c] for g in GLANDS
            if (c := centroid_lps(arr == g.label, labels)) is not None}


def position_reference(anatomy=None) -> dict[str, dict]:
    """Per gland other than the parotids: the experts' offset of its centre from the centre of
    the parotid of its side (mean, SD per axis; 70 TCIA outline sets), and the share of the
    experts' own glands inside the region POSITION_REGION_SD spans, the rate a model at the
    experts' level would reach."""
    from GlandSegLib.segmentation.anatomy import ExpectedAnatomy

    anatomy = anatomy or ExpectedAnatomy.load()
    out = {}
    for g in GLANDS:
        if g.organ == "parotid":
            continue
        ref = gland("parotid", g.side).key
        offs = [anatomy.offsets(g.key, f"centroid_{a}")[f"{ref}.centroid_{a}"] for a in _AXES]
        mean, sd = [o.mean for o in offs], [o.sd for o in offs]
        own = [offset_distances(s["glands"][g.key]["c"], s["glands"][ref]["c"], mean, sd) for s in anatomy.data.get("sets", [])
               if g.key in s["glands"] and ref in s["glands"]]
        out[g.key] = {"reference": ref, "mean_mm": mean, "sd_mm": sd, "n": offs[0].n,
                      "experts_inside": round(float(np.mean([d <= POSITION_REGION_SD for _, d in own])), 3) if own else None,
                      "experts_distance_mm_median": round(float(np.median([m for m, _ in own])), 1) if own else None}
    return out


def offset_distances(centre, parotid_centre, mean, sd) -> tuple[float, float]:
    """How far a gland's centre lies from where the experts' lie on average, relative to the
    parotid of its side: in mm, and in SDs (per axis, combined)."""
    r = np.subtract(np.subtract(centre, parotid_centre), mean)
    return float(np.linalg.norm(r)), float(np.linalg.norm(r / np.asarray(sd, float)))


def position_plausibility(found: dict[str, dict[str, list[float]]], parotids: dict[str, dict[str, list[float]]],
                          reference: dict[str, dict]) -> dict[str, dict]:
    """Per gland over patients: of the glands found where the parotid of the same side is
    outlined, how far their centres lie from where the experts' would (mm, and in SDs), and
    how many lie inside the experts' 95% region."""
    out = {}
    for key, ref in reference.items():
        rows = {p: offset_distances(found[p][key], parotids[p][ref["reference"]], ref["mean_mm"], ref["sd_mm"]) for p in found
                if key in found[p] and ref["reference"] in parotids.get(p, {})}
        mm, sds = [m for m, _ in rows.values()], [d for _, d in rows.values()]
        out[key] = {"n": len(rows), "distance_mm_median": round(float(np.median(mm)), 1) if mm else None,
                    "distance_sd_median": round(float(np.median(sds)), 2) if sds else None,
                    "inside_expert_region": int(sum(d <= POSITION_REGION_SD for d in sds)),
                    "experts_inside": ref["experts_inside"], "experts_distance_mm_median": ref["experts_distance_mm_median"],
                    "outside": sorted(p for p, (_, d) in rows.items() if d > POSITION_REGION_SD)}
    return out
