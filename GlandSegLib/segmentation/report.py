"""report.json and report.csv: what a physicist files with the dose calculation."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from GlandSegLib.io.images import write_text_atomic

CSV_FIELDS = ("label", "name", "volume_ml", "voxels", "hu_mean", "hu_sd", "hu_median", "centroid_lps_mm",
              "uptake_mean", "uptake_max", "uptake_total", "status", "status_reason", "confidence", "expected_dice",
              "mean_probability", "boundary_uncertain_share", "expert_volume_median_ml", "expert_volume_p5_ml",
              "expert_volume_p95_ml", "warnings")


def write_reports(report: dict, folder: Path) -> None:
    write_text_atomic(json.dumps(report, indent=2) + "\n", folder / "report.json")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for row in report["glands"]:
        r = dict(row)
        if r.get("centroid_lps_mm") is not None:
            r["centroid_lps_mm"] = " ".join(str(v) for v in r["centroid_lps_mm"])
        r["warnings"] = " | ".join(r.get("warnings", []))
        for k, v in (r.get("expert_volume_ml") or {}).items():  # the experts' volumes, flat for a spreadsheet
            r[f"expert_volume_{k}_ml"] = v
        w.writerow(r)
    write_text_atomic(buf.getvalue(), folder / "report.csv")


def glands_in_review_order(report: dict) -> list[dict]:
    """The report's gland rows in the order to review them: report["review_order"] (the
    written segments, least confident first), then the other glands in label order. The
    terminal summary and the Slicer review table both list them this way."""
    by_label = {int(g["label"]): g for g in report.get("glands", [])}
    order = [int(v) for v in report.get("review_order", []) if int(v) in by_label]
    order += [lab for lab in sorted(by_label) if lab not in order]
    return [by_label[lab] for lab in order]


def gland_status(row: dict) -> str:
    """A gland row's status; a report written before statuses existed: found / not found."""
    return row.get("status") or ("found" if row.get("voxels") else "not found")
