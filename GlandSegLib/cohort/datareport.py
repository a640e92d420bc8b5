"""The data report of `glandseg prepare`: what is in the cohort, and what looks wrong.

Why: a model learns its annotators' mistakes. Before training, a person should see the
gland volumes and CT intensities (training vs hold-out) and the cases that need a look:

* top of head missing (no cranium for the locator, or the field of view ending close
  above the lacrimal glands): the crop is anchored differently from a full head;
* a gland touching the image border (field of view cuts the gland) or the head box
  border (the crop cuts it): its outline is incomplete;
* volume outliers: robust z-score 0.6745 (v - median) / MAD beyond 3.5 (Iglewicz and
  Hoaglin), computed per gland over the cohort when at least 5 cases have the gland;
  robust because a single swapped or mislabelled structure must not hide itself by
  inflating the standard deviation;
* a gland on the wrong side of the head's midline or of its partner (LPS x, as in
  postprocess.laterality_warnings): mislabelled left/right, the predecessor's failure;
* missing glands and overlapping structures (from cases.py).

Outputs (beside the dataset's dataset.json): report.html (tables + the plots), report.csv
(one row per case and gland) and two PNGs. Only case ids, structure names and numbers:
no patient name or date of birth is ever read into the records.
"""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np

from GlandSegLib.glands import GLANDS
from GlandSegLib.io.images import write_bytes_atomic, write_text_atomic

OUTLIER_Z = 3.5
MIN_CASES_FOR_OUTLIERS = 5


class PreparedCohort(Protocol):
    """What the report reads of prepare's result (prepare.PrepareResult); a protocol, so this module needs no prepare."""

    dataset: Path
    records: list[dict[str, Any]]
    failed: list[dict[str, str]]
    train_ids: list[str]
    test_ids: list[str]
    anomalies: list[dict[str, Any]]


CSV_FIELDS = ("case_id", "split", "kind", "gland", "label", "present", "volume_ml", "volume_robust_z", "hu_mean", "hu_sd",
              "hu_p05", "hu_p50", "hu_p95", "centroid_lps_mm", "touches_image_border", "touches_crop_border",
              "wrong_side", "flags")


def robust_z(values: Sequence[float]) -> np.ndarray:
    """0.6745 (v - median) / MAD; zeros when MAD is 0 (no spread to compare against)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return v
    med = np.median(v)
    mad = np.median(np.abs(v - med))
    if mad == 0:
        return np.zeros_like(v)
    return 0.6745 * (v - med) / mad


def find_anomalies(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every anomaly as {case_id, gland, kind, detail}; also stores volume_robust_z in records."""
    out: list[dict[str, Any]] = []
    for g in GLANDS:
        have = [r for r in records if r["glands"][g.key]["present"]]
        z = robust_z([r["glands"][g.key]["volume_ml"] for r in have])
        for r, zi in zip(have, z):
            r["glands"][g.key]["volume_robust_z"] = round(float(zi), 2) if len(have) >= MIN_CASES_FOR_OUTLIERS else None
    for r in records:
        cid = r["case_id"]
        for f in r.get("flags", []):
            out.append({"case_id": cid, "gland": "", "kind": "top-of-head-missing", "detail": f})
        for key in r.get("missing", []):
            out.append({"case_id": cid, "gland": key, "kind": "missing", "detail": "no structure for this gland"})
        for pair, n in r.get("overlaps", {}).items():
            out.append({"case_id": cid, "gland": pair, "kind": "overlap", "detail": f"{n} voxels claimed by both (resolved)"})
        for g in GLANDS:
            row = r["glands"][g.key]
            if not row["present"]:
                continue
            if row.get("touches_image_border"):
                out.append({"case_id": cid, "gland": g.key, "kind": "image-border",
                            "detail": "touches the image border: the field of view cuts the gland"})
            if row.get("touches_crop_border"):
                out.append({"case_id": cid, "gland": g.key, "kind": "crop-border",
                            "detail": "touches the head box border: the crop cuts the gland"})
            z = row.get("volume_robust_z")
            if z is not None and abs(z) > OUTLIER_Z:
                out.append({"case_id": cid, "gland": g.key, "kind": "volume-outlier",
                            "detail": f"volume {row['volume_ml']} ml, robust z {z}"})
            if row.get("wrong_side"):
                c = row.get("centroid_lps_mm")
                out.append({"case_id": cid, "gland": g.key, "kind": "wrong-side",
                            "detail": f"centroid x {c[0] if c else '?'} mm is on the wrong side of the midline "
                                      f"({r['box'].get('midline_x_mm')} mm) or of its partner"})
    return out


def csv_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in records:
        for g in GLANDS:
            row = dict(r["glands"][g.key])
            row.update({"case_id": r["case_id"], "split": r.get("split", ""), "kind": r["kind"], "gland": g.key})
            if row.get("centroid_lps_mm"):
                row["centroid_lps_mm"] = " ".join(str(v) for v in row["centroid_lps_mm"])
            row["flags"] = " | ".join(r.get("flags", []))
            rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fields})
    return buf.getvalue()


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def html_page(title: str, sections: Sequence[str]) -> str:
    style = ("body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:left}th{background:#eee}"
             "img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n")


def draw_box_plot(ax: Any, groups: dict[str, dict[str, list[float]]], ylabel: str, title: str) -> None:
    """Side-by-side box plots on `ax`: per x category (gland), one box per series (train/test)."""
    cats = list(groups)
    series = sorted({s for g in groups.values() for s in g})
    width = 0.8 / max(len(series), 1)
    colours = ["#4477aa", "#ee6677", "#228833", "#ccbb44"]
    for j, s in enumerate(series):
        data = [groups[c].get(s, []) for c in cats]
        pos = [i + (j - (len(series) - 1) / 2) * width for i in range(len(cats))]
        keep = [(p, d) for p, d in zip(pos, data) if d]
        if keep:
            bp = ax.boxplot([d for _, d in keep], positions=[p for p, _ in keep], widths=width * 0.9, patch_artist=True,
                            manage_ticks=False)
            for b in bp["boxes"]:
                b.set_facecolor(colours[j % len(colours)])
                b.set_alpha(0.6)
        ax.plot([], [], color=colours[j % len(colours)], lw=8, alpha=0.6, label=s)
    ax.set_xticks(range(len(cats)))
    ax.set_xticklabels(cats, rotation=20, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=8)


def figure_png(panels: Sequence[tuple[dict[str, dict[str, list[float]]], str, str]], columns: int = 1) -> bytes:
    """PNG of one or more box-plot panels (groups, ylabel, title).

    Uses matplotlib's Agg canvas directly, leaving the process's pyplot backend alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = (len(panels) + columns - 1) // columns
    width = max(6.0, 1.4 * max(len(p[0]) for p in panels)) * columns
    fig = Figure(figsize=(width, 4.0 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, (groups, ylabel, title) in enumerate(panels):
        draw_box_plot(fig.add_subplot(rows, columns, i + 1), groups, ylabel, title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def write_data_report(result: PreparedCohort, folder: Path) -> list[Path]:
    """report.html, report.csv and the PNGs into `folder`; returns their paths."""
    folder = Path(folder)
    records = result.records
    vol: dict[str, dict[str, list[float]]] = {}
    hu: dict[str, dict[str, list[float]]] = {}
    for g in GLANDS:
        vol[g.tg263] = {}
        hu[g.tg263] = {}
        for r in records:
            row = r["glands"][g.key]
            if row["present"]:
                vol[g.tg263].setdefault(r["split"], []).append(row["volume_ml"])
            if row.get("hu_mean") is not None:
                hu[g.tg263].setdefault(r["split"], []).append(row["hu_mean"])
    write_bytes_atomic(figure_png([(vol, "volume (ml)", "Gland volumes: training vs hold-out")]), folder / "report_volumes.png")
    write_bytes_atomic(figure_png([(hu, "mean HU", "Gland CT intensity (mean HU per case)")]), folder / "report_hu.png")
    write_text_atomic(to_csv(csv_rows(records), CSV_FIELDS), folder / "report.csv")

    per_gland = []
    for g in GLANDS:
        for split in ("train", "test"):
            rs = [r for r in records if r["split"] == split]
            v = [r["glands"][g.key]["volume_ml"] for r in rs if r["glands"][g.key]["present"]]
            h = [r["glands"][g.key]["hu_mean"] for r in rs if r["glands"][g.key].get("hu_mean") is not None]
            per_gland.append({
                "gland": g.tg263, "split": split, "cases": f"{len(v)}/{len(rs)}",
                "volume ml median": float(np.median(v)) if v else None,
                "volume ml IQR": f"{np.percentile(v, 25):.2f}-{np.percentile(v, 75):.2f}" if v else "",
                "mean HU median": float(np.median(h)) if h else None,
                "mean HU range": f"{min(h):.0f}..{max(h):.0f}" if h else "",
            })
    cases = [{"case": r["case_id"], "split": r["split"], "kind": r["kind"], "crop": "x".join(map(str, r["crop_size"])),
              "box": r["box"].get("method"), "missing": ", ".join(r["missing"]),
              "overlaps": "; ".join(f"{k}: {v}" for k, v in r["overlaps"].items()),
              "ignored structures": ", ".join(k for k, v in r["structures"].items() if v is None)} for r in records]
    sections = [
        "<h2>Summary</h2>",
        html_table([{"cases found": len(records) + len(result.failed), "training": len(result.train_ids),
                     "hold-out": len(result.test_ids), "skipped": len(result.failed), "anomalies": len(result.anomalies)}],
                   ["cases found", "training", "hold-out", "skipped", "anomalies"]),
        "<h2>Anomalies</h2>",
        html_table(result.anomalies, ["case_id", "gland", "kind", "detail"]) if result.anomalies else "<p>none</p>",
        "<h2>Skipped cases</h2>",
        html_table(result.failed, ["case_id", "error"]) if result.failed else "<p>none</p>",
        "<h2>Glands: training vs hold-out</h2>",
        html_table(per_gland, ["gland", "split", "cases", "volume ml median", "volume ml IQR", "mean HU median", "mean HU range"]),
        "<img src='report_volumes.png' alt='gland volumes'><img src='report_hu.png' alt='gland HU'>",
        "<h2>Cases</h2>",
        html_table(cases, ["case", "split", "kind", "crop", "box", "missing", "overlaps", "ignored structures"]),
        "<p>Per case and gland: report.csv. Volumes on the CT's own grid; HU from the exact voxels of the head box.</p>",
    ]
    write_text_atomic(html_page(f"GlandSeg data report: {result.dataset.name}", sections), folder / "report.html")
    return [folder / n for n in ("report.html", "report.csv", "report_volumes.png", "report_hu.png")]
