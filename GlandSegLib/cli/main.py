"""`glandseg`: the command line. Every user error is one line and a distinct exit code.

Exit codes: 0 ok, 2 usage, 3 input missing, 4 invalid input, 5 DICOM series choice needed,
6 no head found, 7 model problem, 8 output exists, 9 missing dependency, 10 batch finished
with failed cases, 130 cancelled, 70 internal error (a bug: please report it with the
traceback printed by --debug).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from GlandSegLib.errors import CancelledError, GlandSegError, InputNotFoundError, InvalidInputError

if TYPE_CHECKING:
    from GlandSegLib.progress import Progress

INTERNAL_ERROR = 70


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment the six glands on a CT")
    p.add_argument("input", help="DICOM folder, .nii/.nii.gz, .nrrd or .mha")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--model", default=None, help="installed model name or model folder (default: the shipped model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--locator", default="fast", choices=("fast", "totalsegmentator"))
    p.add_argument("--tile-step", type=float, default=None, metavar="F",
                   help="sliding-window step, fraction of the patch (default 0.5; 0.75: ~2.5x faster inference, results differ by Dice ~0.9)")
    p.add_argument("--box", type=float, nargs=6, default=None, metavar=("XMIN", "YMIN", "ZMIN", "XMAX", "YMAX", "ZMAX"),
                   help="use this head box (LPS mm) instead of the locator, e.g. one adjusted in Slicer")
    p.add_argument("--series", default=None, metavar="UID", help="DICOM series instance UID when the folder holds several CTs")
    p.add_argument("--uptake", default=None, metavar="IMAGE", help="PET/SPECT image: adds uptake statistics per gland")
    p.add_argument("--overwrite", action="store_true", help="replace existing results in the output folder")
    p.add_argument("--trust-model", action="store_true", help="allow a checkpoint that needs more than plain weights (runs its code!)")
    p.add_argument("--progress", default="auto", choices=("auto", "bar", "json", "none"))
    p.add_argument("--dicom-out", action="store_true",
                   help="DICOM input: also write a DICOM SEG and an RTSTRUCT that reference the source series")
    p.add_argument("--keep-identifiers", action="store_true",
                   help="record the input path and the patient's name, ID and birth date in the report (off: a hash and UIDs only)")
    p.add_argument("--keep-rejected", action="store_true",
                   help="also write the segments the anatomy checks rejected or found outside the field of view (their status still says why): for unusual anatomy, or to see a model's raw output")
    p.add_argument("--uncertainty", action="store_true",
                   help="also write uncertainty.nii.gz: per voxel 100 x (1 - the network's largest probability), uint8 0-100, on the CT grid")


def _add_phantom(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("phantom", help="write a synthetic CT with known glands (demo, tests, training)")
    p.add_argument("-o", "--output", required=True, help="folder for ct.nii.gz and labels.nii.gz")
    p.add_argument("--outlines", default=None, metavar="CASE",
                   help="build the CT around one TCIA outline case (tcia-hn-labels/nrrds/SPLIT/RATER/CASE): real glands and organs")
    p.add_argument("--rater", default="oncologist", help="whose outlines, with --outlines: oncologist or radiographer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--field", default="head", choices=("head", "headneck", "wholebody"))
    p.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                   help="voxel size in mm (default 1 1 2; with --outlines the outlines' own grid)")
    p.add_argument("--truncate-vertex-mm", type=float, default=0.0)
    p.add_argument("--length-mm", type=float, default=None, help="field length from the top (default: the field's own)")
    p.add_argument("--variant", default="lps", help="how the same anatomy is stored: lps, ras, flip_x, permuted, "
                   "feet_first, oblique10, anisotropic")
    p.add_argument("--overwrite", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    from GlandSegLib import __version__

    parser = argparse.ArgumentParser(prog="glandseg", description="Segment lacrimal, parotid and submandibular glands on CT.")
    parser.add_argument("--version", action="version", version=f"glandseg {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment(sub)
    _add_phantom(sub)
    m = sub.add_parser("models", help="list installed and shipped models, or remove an installed one")
    m.add_argument("action", nargs="?", default="list", choices=("list", "remove"))
    m.add_argument("name", nargs="?", help="model to remove")
    i = sub.add_parser("install-model", help="install a model from an exported zip or an nnU-Net results folder")
    i.add_argument("source", help="model .zip, or a folder with dataset.json, plans.json and fold_*/")
    i.add_argument("--name", default=None, help="name to install under (default: from the model)")
    i.add_argument("--overwrite", action="store_true", help="replace an installed model of the same name")
    i.add_argument("--trust-model", action="store_true", help="allow checkpoints that need more than plain weights (runs their code!)")
    from GlandSegLib.cli.workflow import add_parsers  # prepare, train, export-model, evaluate, batch

    add_parsers(sub)
    from GlandSegLib.cli.compare import add_parser as add_compare  # compare: a user's correction, measured

    add_compare(sub)
    return parser


def _progress_mode(choice: str) -> str:
    if choice != "auto":
        return choice
    return "bar" if sys.stderr.isatty() else "none"


def cmd_segment(args: argparse.Namespace) -> int:
    from GlandSegLib.progress import Progress

    mode = _progress_mode(args.progress)
    if mode == "json":
        # stdout carries only the JSON protocol; anything a library prints goes to stderr
        progress = Progress(mode, stream=sys.stdout)
        with contextlib.redirect_stdout(sys.stderr):
            return _run_segment(args, progress)
    return _run_segment(args, Progress(mode))


def _run_segment(args: argparse.Namespace, progress: Progress) -> int:
    from GlandSegLib.segmentation.pipeline import segment

    from GlandSegLib.segmentation.inference import TILE_STEP_RANGE

    lo, hi = TILE_STEP_RANGE
    if args.tile_step is not None and not lo <= args.tile_step <= hi:  # before reading the CT: fail fast
        raise InvalidInputError(f"--tile-step is a fraction of the patch between {lo:g} and {hi:g}, got {args.tile_step}")
    box = None
    if args.box is not None:
        from GlandSegLib.geometry import PhysicalBox

        try:
            box = PhysicalBox(args.box[:3], args.box[3:])
        except ValueError:
            raise InvalidInputError(f"--box needs min < max on every axis, got {args.box}") from None
    result = segment(args.input, args.output, model=args.model, device=args.device, locator=args.locator,
                     overwrite=args.overwrite, series_uid=args.series, uptake_path=args.uptake,
                     trust_model=args.trust_model, progress=progress, box=box, keep_identifiers=args.keep_identifiers,
                     dicom_out=args.dicom_out, tile_step=args.tile_step, uncertainty=args.uncertainty,
                     keep_rejected=args.keep_rejected)
    if progress.mode != "json":
        print(f"wrote {result.outdir}")
        for line in summary_lines(result.report):
            print(line)
    return 0


def summary_lines(report: dict) -> list[str]:
    """The terminal summary: the segments least confident first (the order to review them
    in), then the glands without a segment, each with its status. '!' marks a volume
    outside the experts' 5-95% range."""
    from GlandSegLib.segmentation.report import gland_status, glands_in_review_order

    lines = ["  review in this order (least confident first):",
             f"  {'gland':<27}{'volume':>10}  {'experts 5-95%':<15}{'confidence':>10}  {'HU mean ± SD':<15} status"]
    for row in glands_in_review_order(report):
        exp = row.get("expert_volume_ml") or {}
        experts = f"{exp['p5']:.2f}-{exp['p95']:.2f} ml" if exp else ""
        status = gland_status(row)
        if row.get("status_reason") and status != "found":
            status += f": {row['status_reason']}"
        if row["voxels"]:
            outside = exp and not exp["p5"] <= row["volume_ml"] <= exp["p95"]
            vol = f"{row['volume_ml']:7.2f} ml" + ("!" if outside else " ")
            conf = f"{row['confidence']:.2f}" if row.get("confidence") is not None else "-"
            hu = f"{row['hu_mean']:6.1f} ± {row['hu_sd']:5.1f}"
        else:
            vol, conf, hu = "-", "-", ""
        lines.append(f"  {row['name']:<27}{vol:>11} {experts:<15}{conf:>10}  {hu:<15} {status}")
    return lines


def cmd_phantom(args: argparse.Namespace) -> int:
    from GlandSegLib.errors import DependencyError, OutputExistsError
    from GlandSegLib.io.images import write_image_atomic

    try:
        from GlandSegLib.defaultmodel.phantom import (OUTLINE_RATERS, VARIANTS, make_phantom, make_phantom_from_outlines,
                                                      reorient)
    except ModuleNotFoundError as exc:  # the 3D Slicer extension ships the runtime only
        if not (exc.name or "").startswith("GlandSegLib.defaultmodel"):
            raise
        raise DependencyError("`glandseg phantom` needs GlandSeg's default-model tools (GlandSegLib/defaultmodel), "
                              "which the 3D Slicer extension does not ship: run it from a pip install of glandseg") from exc

    if args.variant not in VARIANTS:
        raise InvalidInputError(f"--variant must be one of {', '.join(VARIANTS)}, not {args.variant!r}")
    if args.rater not in OUTLINE_RATERS:
        raise InvalidInputError(f"--rater must be one of {', '.join(OUTLINE_RATERS)}, not {args.rater!r}")
    out = Path(args.output)
    if (out / "ct.nii.gz").exists() and not args.overwrite:
        raise OutputExistsError(f"{out / 'ct.nii.gz'} exists; use --overwrite")
    spacing = tuple(args.spacing) if args.spacing else None
    if args.outlines:
        try:
            ph = make_phantom_from_outlines(args.outlines, args.rater, args.seed, field=args.field, spacing=spacing,
                                            truncate_vertex_mm=args.truncate_vertex_mm, length_mm=args.length_mm)
        except FileNotFoundError as exc:
            raise InputNotFoundError(str(exc)) from None
    else:
        ph = make_phantom(args.seed, field=args.field, spacing=spacing or (1.0, 1.0, 2.0),
                          truncate_vertex_mm=args.truncate_vertex_mm, length_mm=args.length_mm)
    write_image_atomic(reorient(ph.ct, args.variant), out / "ct.nii.gz")
    write_image_atomic(reorient(ph.labels, args.variant, is_label=True), out / "labels.nii.gz")
    print(f"wrote {out / 'ct.nii.gz'} and {out / 'labels.nii.gz'}")
    return 0


def cmd_install_model(args: argparse.Namespace) -> int:
    from GlandSegLib.models.install import install_model
    from GlandSegLib.models.registry import load_model_info

    target = install_model(args.source, args.name, overwrite=args.overwrite, trust=args.trust_model)
    info = load_model_info(str(target))
    print(f"installed {info.name} in {target}")
    for w in info.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from GlandSegLib.models.registry import load_model_info, model_roots

    if args.action == "remove":
        from GlandSegLib.models.install import remove_model

        if not args.name:
            raise InvalidInputError("glandseg models remove NAME: give the model's name")
        print(f"removed {remove_model(args.name)}")
        return 0

    for root in model_roots():
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            try:
                info = load_model_info(str(folder))
                status = f"{info.configuration}, spacing {info.spacing_xyz} mm, folds {','.join(info.folds)}"
                for kind, stage in sorted(info.stages.items()):
                    status += f"; {kind} stage at {stage.spacing_xyz} mm"
            except GlandSegError as exc:
                status = f"unusable: {exc}"
            print(f"{folder.name:<32} {status}  [{root}]")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"segment": cmd_segment, "phantom": cmd_phantom, "models": cmd_models, "install-model": cmd_install_model}

    owner = os.getpid()

    def on_term(_signum, _frame):  # Cancel from the Slicer panel sends SIGTERM
        if os.getpid() != owner:  # a forked worker (nnU-Net's pools) inherited this handler: die, as SIGTERM asks
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise CancelledError("cancelled")

    signal.signal(signal.SIGTERM, on_term)
    try:
        handler = handlers.get(args.command) or getattr(args, "workflow_handler")
        return handler(args)
    except GlandSegError as exc:
        if args.debug or os.environ.get("GLANDSEG_DEBUG"):  # everything: the chain of causes and the library's words
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            if exc.detail:
                print(f"detail: {exc.detail}", file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: cancelled", file=sys.stderr)
        return CancelledError.exit_code
    except MemoryError:
        print("error: out of memory", file=sys.stderr)
        return INTERNAL_ERROR
    except Exception as exc:  # a bug, not a user error: say so plainly
        if args.debug or os.environ.get("GLANDSEG_DEBUG"):
            raise
        print(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}); rerun with --debug and report it", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
