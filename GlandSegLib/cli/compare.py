"""`glandseg compare ORIGINAL CORRECTED -o OUT`: what a user's correction of GlandSeg's segments changed.

The computation is GlandSegLib.cohort.compare (and .pathlength for the added path length);
this module is the shell's view of it: arguments, the one-line errors and exit codes of
cli.main (2 usage, 3 input missing, 4 invalid input, 8 output exists), and one table on
the terminal.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    from GlandSegLib.cli.workflow import _parser

    p = _parser(sub, "compare", "measure a correction: corrected segments against GlandSeg's original ones, per gland")
    p.add_argument("original", help="GlandSeg's result: label map (.nii.gz/.nrrd/.mha), .seg.nrrd, RTSTRUCT, or a segment output folder")
    p.add_argument("corrected", help="the corrected segments: label map with GlandSeg's values, .seg.nrrd (e.g. saved by 3D Slicer) or RTSTRUCT")
    p.add_argument("-o", "--output", required=True, help="folder for comparison.csv and comparison.json")
    p.add_argument("--ct", default=None, metavar="DICOMFOLDER",
                   help="the CT an RTSTRUCT was drawn on (needed when either input is an RTSTRUCT)")
    p.add_argument("--tolerance", type=float, default=None, metavar="MM",
                   help="surface Dice and added path length tolerance for every gland (default: each organ's "
                        "inter-rater tolerance: lacrimal 2.5, parotid 2.85, submandibular 2.02 mm)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing comparison in the output folder")
    p.set_defaults(workflow_handler=cmd_compare)


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def cmd_compare(args: argparse.Namespace) -> int:
    from GlandSegLib.cli.workflow import UsageError
    from GlandSegLib.cohort.compare import compare, input_kind

    if args.tolerance is not None and not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        raise UsageError(f"--tolerance is a distance of 0 mm or more, not {args.tolerance}")
    kinds = [input_kind(Path(p)) for p in (args.original, args.corrected)]  # missing files: exit 3 before anything is read
    if "rtstruct" in kinds and args.ct is None:
        raise UsageError("an RTSTRUCT holds contours, not voxels: give the CT it was drawn on with --ct DICOMFOLDER")
    result = compare(args.original, args.corrected, args.output, ct=args.ct, tolerance_mm=args.tolerance,
                     overwrite=args.overwrite)
    geometry = result.comparison.geometry
    print(f"wrote {result.out / 'comparison.csv'} and comparison.json")
    if geometry["corrected_resampled"]:
        print(f"note: {geometry['note']}")
    print(f"  {'gland':<27}{'status':<11}{'Dice':>6}{'HD95 mm':>9}{'sDice':>7}{'volume ml':>18}{'change':>9}{'APL mm':>9}")
    for r in result.comparison.rows:
        volume = f"{r['volume_original_ml']:.2f} -> {r['volume_corrected_ml']:.2f}"
        change = "-" if r["volume_change_percent"] is None else f"{r['volume_change_percent']:+.1f}%"
        print(f"  {r['name']:<27}{r['status']:<11}{_num(r['dice'], '.3f'):>6}{_num(r['hd95_mm'], '.1f'):>9}"
              f"{_num(r['surface_dice'], '.3f'):>7}{volume:>18}{change:>9}{r['apl_mm']:>9.1f}")
    for w in result.comparison.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0
