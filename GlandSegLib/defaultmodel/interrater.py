"""Human agreement on the six glands: oncologist vs radiographer on the 35 TCIA scans.

Why: a model's Dice means little on its own; the spread between two experts outlining the
same scan is the ceiling it is compared with (design.md, field notes). The DeepMind TCIA set
(shared/data/tcia-hn-labels, Nikolov et al. 2018) has both raters' outlines on one grid per
scan, so the comparison needs no registration: per gland, Dice, 95% Hausdorff and surface
Dice at the organ tolerance of GlandSegLib.cohort.metrics.

A gland empty in both sets (resected) is skipped: agreement on absence is not a score. A
gland only one rater outlined scores Dice 0 and surface Dice 0, and has no HD95; such rows
stay in the Dice medians (they are real disagreements) and are counted in the summary,
which also gives the medians over the scans where both raters outlined the gland (the
field notes' figures: five submandibular glands, all TCGA scans, were outlined by one rater).

    python -m GlandSegLib.defaultmodel.interrater --out interrater.json [--root DIR] [--split all|test|validation]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from GlandSegLib.glands import GLANDS
from GlandSegLib.cohort.metrics import SURFACE_TOLERANCE_MM, dice, hd95, surface_dice
from GlandSegLib.defaultmodel.phantom import list_outline_cases, outline_folder, read_outlines

METRICS = ("dice", "hd95_mm", "surface_dice")


def default_root() -> Path:
    """The team's copy of the set: $GLANDSEG_SHARED/data/tcia-hn-labels (default ../shared)."""
    shared = Path(os.environ.get("GLANDSEG_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    return shared / "data" / "tcia-hn-labels"


def _joint(a, b, pad: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Two cropped masks (_Mask or None) on their joint bounding box plus padding. Metrics
    on this box equal those on the full 512x512xN grid (outside is background either way)
    at a fraction of the memory and time."""
    present = [m for m in (a, b) if m is not None]
    lo = np.min([m.lo for m in present], axis=0) - pad
    hi = np.max([m.hi for m in present], axis=0) + pad
    out = []
    for m in (a, b):
        arr = np.zeros(tuple(hi - lo), bool)
        if m is not None:
            arr[tuple(slice(l0 - l, l0 - l + n) for l0, l, n in zip(m.lo, lo, m.a.shape))] = m.a
        out.append(arr)
    return out[0], out[1]


def case_rows(case_dir: str | Path, reference: str = "oncologist", other: str = "radiographer") -> list[dict]:
    """Agreement rows for one scan, one per gland outlined by at least one rater."""
    ra = read_outlines(outline_folder(case_dir, reference), glands_only=True)
    rb = read_outlines(outline_folder(case_dir, other), glands_only=True)
    if ra.size != rb.size or not np.allclose(ra.spacing, rb.spacing) or not np.allclose(ra.origin, rb.origin, atol=1e-3):
        raise ValueError(f"{case_dir}: the two raters' outlines are on different grids")
    case_dir = Path(case_dir)
    split = case_dir.parents[1].name if len(case_dir.parents) > 1 else ""
    sp_zyx = tuple(float(v) for v in ra.spacing[::-1])
    voxel_ml = float(np.prod(ra.spacing)) / 1000.0
    rows = []
    for g in GLANDS:
        ma, mb = ra.glands.get(g.label), rb.glands.get(g.label)
        if ma is None and mb is None:
            continue
        a, b = _joint(ma, mb)
        tol = SURFACE_TOLERANCE_MM[g.organ]
        rows.append({
            "case": case_dir.name, "split": split, "gland": g.key, "label": g.label,
            f"volume_ml_{reference}": round(float(a.sum()) * voxel_ml, 3),
            f"volume_ml_{other}": round(float(b.sum()) * voxel_ml, 3),
            "dice": dice(a, b), "hd95_mm": hd95(a, b, sp_zyx), "surface_dice": surface_dice(a, b, sp_zyx, tol),
            "tolerance_mm": tol,
            "only_in": None if ma is not None and mb is not None else (reference if mb is None else other),
        })
    return rows


def agreement(root: str | Path | None = None, split: str = "all", cases: Iterable[str | Path] | None = None,
              reference: str = "oncologist", other: str = "radiographer") -> list[dict]:
    """Per-case, per-gland rows over the set (or the given case folders)."""
    folders = list(cases) if cases is not None else list_outline_cases(root or default_root(), split)
    rows: list[dict] = []
    for c in folders:
        rows += case_rows(c, reference, other)
    return rows


def summarise(rows: Sequence[dict]) -> dict[str, dict]:
    """Per gland: how many scans, how many outlined by one rater only, the median and quartiles
    of each metric over the scans where it is defined, and the Dice and surface Dice medians
    over the scans both raters outlined (HD95 is only defined there anyway)."""
    out: dict[str, dict] = {}
    r4 = lambda v: round(float(v), 4)
    for g in GLANDS:
        mine = [r for r in rows if r["gland"] == g.key]
        s: dict = {"label": g.label, "n_cases": len(mine), "n_one_rater_only": sum(r["only_in"] is not None for r in mine),
                   "tolerance_mm": SURFACE_TOLERANCE_MM[g.organ]}
        for m in METRICS:
            v = np.array([r[m] for r in mine if r[m] is not None], float)
            s[f"{m}_median"] = r4(np.median(v)) if len(v) else None
            s[f"{m}_q25"], s[f"{m}_q75"] = (r4(np.percentile(v, 25)), r4(np.percentile(v, 75))) if len(v) else (None, None)
        for m in ("dice", "surface_dice"):
            v = [r[m] for r in mine if r["only_in"] is None]
            s[f"{m}_median_both_outlined"] = r4(np.median(v)) if v else None
        out[g.key] = s
    return out


def _table(summary: dict[str, dict]) -> str:
    lines = ["medians; (both): over the scans both raters outlined",
             f"{'gland':16s} {'n':>3s} {'1-rater':>7s} {'Dice':>6s} {'(both)':>6s} {'HD95 mm':>8s} {'sDice':>6s} {'(both)':>6s}  tol mm"]
    fmt = lambda v, f: "     -" if v is None else format(v, f)
    for key, s in summary.items():
        lines.append(f"{key:16s} {s['n_cases']:3d} {s['n_one_rater_only']:7d} {fmt(s['dice_median'], '6.3f')} "
                     f"{fmt(s['dice_median_both_outlined'], '6.3f')} {fmt(s['hd95_mm_median'], '8.2f')} "
                     f"{fmt(s['surface_dice_median'], '6.3f')} {fmt(s['surface_dice_median_both_outlined'], '6.3f')}  {s['tolerance_mm']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.interrater", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file to write (summary and per-case rows)")
    ap.add_argument("--root", default=None, help=f"tcia-hn-labels folder (default {default_root()})")
    ap.add_argument("--split", default="all", choices=("all", "test", "validation"))
    ap.add_argument("--limit", type=int, default=None, help="only the first N scans (a quick check)")
    args = ap.parse_args(argv)
    root = Path(args.root) if args.root else default_root()
    cases = list_outline_cases(root, args.split)[: args.limit]
    rows = agreement(cases=cases)
    summary = summarise(rows)
    result = {"source": str(root), "split": args.split, "n_scans": len(cases), "reference": "oncologist",
              "other": "radiographer", "metrics": {"hd95_mm": "95th percentile symmetric surface distance",
                                                   "surface_dice": "Nikolov et al. 2018, at tolerance_mm"},
              "summary": summary, "cases": rows}
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(_table(summary))
    print(f"{len(cases)} scans, {len(rows)} gland comparisons -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
