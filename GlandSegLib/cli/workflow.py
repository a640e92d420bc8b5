"""The cohort-to-model commands of `glandseg`: prepare, train, export-model, evaluate, batch.

Kept apart from cli.py so the segment/install commands stay short; cli.py registers these
parsers and handlers. The rules are cli.py's: every user error is one line on stderr and
a GlandSegError exit code (2 usage, 3 input missing, 4 invalid input, 7 model problem,
8 output exists, 9 missing dependency, 10 batch finished with failed cases). Argument
errors found by argparse itself are one line too (`error: glandseg train: ...`).
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Callable

from GlandSegLib.errors import GlandSegError

FOLDS = ("0", "1", "2", "3", "4", "all")


class UsageError(GlandSegError):
    """Options that argparse accepts one by one but not together."""

    exit_code = 2


def _one_line_error(self: argparse.ArgumentParser, message: str) -> None:
    self.exit(2, f"error: {self.prog}: {message}\n")


def _parser(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.error = types.MethodType(_one_line_error, p)  # type: ignore[method-assign]
    return p


def _add_slurm(p: argparse.ArgumentParser, gpus: bool) -> None:
    g = p.add_argument_group("SLURM (with --slurm: write a job script instead of running)")
    g.add_argument("--slurm", action="store_true", help="write an sbatch script and exit")
    g.add_argument("--account", default=None)
    g.add_argument("--partition", default=None)
    g.add_argument("--time", default="24:00:00", help="wall time, [D-]HH:MM:SS (default 24:00:00)")
    g.add_argument("--modules", nargs="+", default=[], help="environment modules to load, e.g. cuda/12.1")
    g.add_argument("--cpus", type=int, default=8, help="CPUs per task (default 8)")
    g.add_argument("--mem", default="32G", help="memory per task (default 32G)")
    g.add_argument("--script", default=None, help="where to write the script")
    if not gpus:
        g.add_argument("--slurm-gpus", dest="gpus", type=int, default=1, help="GPUs per array task (default 1)")


def add_parsers(sub: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add the five sub-commands; each parser's `workflow_handler` default is its handler
    (cli.main calls it); the same {command: handler} table is returned."""
    from GlandSegLib.training.defaults import DEFAULT_BATCH, DEFAULT_EPOCHS, DEFAULT_FEATURES, DEFAULT_ITERATIONS, DEFAULT_PATCH, DEFAULT_SPACING

    p = _parser(sub, "prepare", "cohort of outlined CTs -> nnU-Net raw dataset + data report")
    p.add_argument("cohort", help="folder with one sub-folder per patient (DICOM CT + RTSTRUCT, CT + labelmap, or CT + masks)")
    p.add_argument("-o", "--output", required=True, help="NNUNET_RAW/DatasetNNN_Name to write")
    p.add_argument("--roi-map", default=None, help='JSON {"structure name": "parotid_l", ...} (null ignores a name)')
    p.add_argument("--holdout", type=float, default=0.1, help="fraction held out to imagesTs/labelsTs (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the hold-out split")
    p.add_argument("--spacing", type=float, nargs=3, default=list(DEFAULT_SPACING), metavar=("X", "Y", "Z"),
                   help=f"crop spacing in mm = the model spacing (default {' '.join(f'{s:g}' for s in DEFAULT_SPACING)})")
    p.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")

    t = _parser(sub, "train", "train an nnU-Net model (no mirroring) on a prepared dataset")
    t.add_argument("dataset", help="NNUNET_RAW/DatasetNNN_Name written by glandseg prepare")
    t.add_argument("--config", default="3d_compact", choices=("3d_compact", "3d_fullres"))
    t.add_argument("--fold", default="all", choices=FOLDS)
    t.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    t.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS, help="training iterations per epoch")
    t.add_argument("--gpus", type=int, default=1, help="GPUs (> 1: distributed data parallel)")
    t.add_argument("--continue", dest="continue_training", action="store_true", help="resume from the fold's last checkpoint")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--patch", type=int, nargs=3, default=list(DEFAULT_PATCH), metavar=("X", "Y", "Z"), help="3d_compact patch (voxels)")
    t.add_argument("--features", type=int, nargs="+", default=list(DEFAULT_FEATURES), help="3d_compact features per stage")
    t.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="3d_compact batch size")
    t.add_argument("--replan", action="store_true", help="plan and preprocess again even if done before")
    t.add_argument("--preprocessed", default=None, help="nnUNet_preprocessed (default: $nnUNet_preprocessed or beside nnUNet_raw)")
    t.add_argument("--results", default=None, help="nnUNet_results (default: $nnUNet_results or beside nnUNet_raw)")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: one per core)")
    _add_slurm(t, gpus=True)

    e = _parser(sub, "export-model", "zip a trained fold as a GlandSeg model (install it with install-model)")
    e.add_argument("results", help="nnU-Net's <results>/<Dataset>/<Trainer>__<Plans>__<config> folder")
    e.add_argument("-o", "--output", required=True, help="MODEL.zip to write")
    e.add_argument("--name", default=None, help="model name (default: the zip's name)")
    e.add_argument("--fold", default=None, choices=FOLDS, help="fold to export (default: the only finished one)")
    e.add_argument("--evaluation", default=None, help="glandseg evaluate output folder: its metrics go into the model card")
    e.add_argument("--overwrite", action="store_true")

    v = _parser(sub, "evaluate", "compare predicted with reference label maps")
    v.add_argument("pred", help="label map file, or folder of them (case.nii.gz or case/glands_labelmap.nii.gz)")
    v.add_argument("gt", help="reference label map file or folder (e.g. a dataset's labelsTs)")
    v.add_argument("-o", "--output", required=True, help="folder for metrics.csv, summary.json, report.html, boxplots.png")
    v.add_argument("--ct", default=None, help="CT file or folder (case_0000.nii.gz, case.nii.gz or case/): adds mean HU")
    v.add_argument("--overwrite", action="store_true")

    b = _parser(sub, "batch", "segment every patient of a cohort (resumable)")
    b.add_argument("cohort", help="folder with one sub-folder (DICOM or one CT image) or CT file per patient")
    b.add_argument("-o", "--output", required=True, help="output folder: one sub-folder per case, summary.csv")
    b.add_argument("--model", default=None)
    b.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    b.add_argument("--dicom-out", action="store_true", help="also write DICOM SEG and RTSTRUCT (DICOM inputs only)")
    b.add_argument("--keep-rejected", action="store_true", help="also write the segments the anatomy checks rejected or found outside the field of view (their status still says why): for unusual anatomy, or to see a model's raw output")
    b.add_argument("--overwrite", action="store_true", help="redo cases that are complete")
    b.add_argument("--case", nargs="+", default=None, help="only these case ids")
    b.add_argument("--index", type=int, default=None, help="only the case at this index (0-based; for array jobs)")
    b.add_argument("--trust-model", action="store_true")
    b.add_argument("--max-parallel", type=int, default=None, help="with --slurm: at most this many array tasks at once")
    _add_slurm(b, gpus=False)
    handlers = {"prepare": cmd_prepare, "train": cmd_train, "export-model": cmd_export_model, "evaluate": cmd_evaluate,
                "batch": cmd_batch}
    for name, parser in (("prepare", p), ("train", t), ("export-model", e), ("evaluate", v), ("batch", b)):
        parser.set_defaults(workflow_handler=handlers[name])
    return handlers


# --------------------------------------------------------------------------- handlers


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_prepare(args: argparse.Namespace) -> int:
    from GlandSegLib.cohort.cases import RoiMap
    from GlandSegLib.cohort.prepare import prepare_dataset

    roi_map = RoiMap.load(args.roi_map)
    result = prepare_dataset(args.cohort, args.output, roi_map=roi_map, holdout=args.holdout, seed=args.seed,
                             spacing=args.spacing, dry_run=args.dry_run, overwrite=args.overwrite, log=_err)
    verb = "would write" if result.dry_run else "wrote"
    print(f"{verb} {result.dataset}: {len(result.train_ids)} training, {len(result.test_ids)} hold-out, "
          f"{len(result.failed)} skipped, {len(result.anomalies)} anomalies ({result.seconds:.0f} s)")
    for a in result.anomalies:
        print(f"  {a['case_id']:<20} {a['kind']:<20} {a['gland']:<32} {a['detail']}")
    for f in result.failed:
        print(f"  {f['case_id']:<20} skipped: {f['error']}")
    if not result.dry_run:
        print(f"report: {result.dataset / 'report.html'}")
    return 0


def _slurm_options(args: argparse.Namespace, job_name: str):
    from GlandSegLib.training.slurm import SlurmOptions

    opts = SlurmOptions(account=args.account, partition=args.partition, time=args.time, gpus=args.gpus, cpus=args.cpus,
                        mem=args.mem, modules=list(args.modules), job_name=job_name)
    opts.validate()
    return opts


def _write_script(path: Path, text: str) -> Path:
    from GlandSegLib.io.images import write_text_atomic

    write_text_atomic(text, path)
    path.chmod(0o755)
    return path


def cmd_train(args: argparse.Namespace) -> int:
    from GlandSegLib.training.run import elapsed_log, setup, train_dataset

    if args.epochs < 1 or args.iterations < 1:
        raise UsageError("--epochs and --iterations must be at least 1")
    if args.slurm:
        from GlandSegLib.training.slurm import glandseg_command, sbatch_script

        s = setup(args.dataset, args.preprocessed, args.results)
        opts = _slurm_options(args, f"glandseg-train-{s.dataset_id:03d}")
        cmd = ["train", str(s.dataset), "--config", args.config, "--fold", args.fold, "--epochs", str(args.epochs),
               "--iterations", str(args.iterations), "--gpus", str(args.gpus),
               "--device", "cpu" if args.device == "cpu" else "cuda",
               "--preprocessed", str(s.folders.preprocessed), "--results", str(s.folders.results),
               "--patch", *map(str, args.patch), "--features", *map(str, args.features), "--batch", str(args.batch)]
        cmd += ["--continue"] if args.continue_training else []
        cmd += ["--replan"] if args.replan else []
        if args.device == "cpu":
            opts.gpus = 0
        script = Path(args.script) if args.script else s.dataset / f"train_{args.config}_fold{args.fold}.sbatch"
        text = sbatch_script(glandseg_command(*cmd), opts, log=str(s.dataset / "train-%j.log"))
        print(f"wrote {_write_script(script, text)}; submit with: sbatch {script}")
        return 0
    record = train_dataset(args.dataset, args.config, args.fold, args.epochs, args.iterations, gpus=args.gpus,
                           device=args.device, continue_training=args.continue_training, replan=args.replan,
                           patch=args.patch, features=args.features, batch=args.batch, preprocessed=args.preprocessed,
                           results=args.results, torch_threads=args.threads, log=elapsed_log(),
                           command=["glandseg", *sys.argv[1:]])
    print(f"trained {record['configuration']} fold {record['fold']}: {record['output_folder']}")
    print(f"export with: glandseg export-model {record['output_folder']} -o MODEL.zip")
    return 0


def cmd_export_model(args: argparse.Namespace) -> int:
    from GlandSegLib.models.export_zip import export_model_zip

    path = export_model_zip(args.results, args.output, name=args.name, fold=args.fold, evaluation=args.evaluation,
                            overwrite=args.overwrite)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); install with: glandseg install-model {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from GlandSegLib.cohort.evaluate import evaluate

    result = evaluate(args.pred, args.gt, args.output, ct=args.ct, overwrite=args.overwrite, log=_err)
    print(f"wrote {result.out}: {len(result.summary['cases'])} cases")
    for name, g in result.summary["glands"].items():
        print(f"  {name:<16} Dice {_m(g['dice'])}  surface Dice {_m(g['surface_dice'])}  HD95 {_m(g['hd95_mm'])} mm  "
              f"APL {_m(g['apl_mm'], '.0f')} mm  swaps {g['swaps']}")
    return 0


def _m(stat: dict, fmt: str = ".3f") -> str:
    return format(stat["median"], fmt) if stat.get("n") else "  -  "


def cmd_batch(args: argparse.Namespace) -> int:
    from GlandSegLib.cohort.batch import discover_inputs, run_batch, slurm_array_args

    if args.case and args.index is not None:
        raise UsageError("--case and --index exclude each other")
    if args.slurm:
        from GlandSegLib.models.registry import glandseg_home, load_model_info
        from GlandSegLib.training.slurm import glandseg_command, sbatch_script

        cases = discover_inputs(args.cohort)
        load_model_info(args.model)  # a bad model fails here, not in every array task
        opts = _slurm_options(args, "glandseg-batch")
        out = Path(args.output).absolute()
        cmd = ["batch", str(Path(args.cohort).absolute()), "-o", str(out), "--index", "$SLURM_ARRAY_TASK_ID",
               "--device", args.device]
        cmd += ["--model", args.model] if args.model else []
        cmd += ["--dicom-out"] if args.dicom_out else []
        cmd += ["--overwrite"] if args.overwrite else []
        cmd += ["--keep-rejected"] if args.keep_rejected else []
        cmd += ["--trust-model"] if args.trust_model else []
        out.mkdir(parents=True, exist_ok=True)
        script = Path(args.script) if args.script else out / "batch_array.sbatch"
        text = sbatch_script(glandseg_command(*cmd), opts, env={"GLANDSEG_HOME": str(glandseg_home().absolute())},
                             log=str(out / "batch-%A_%a.log"), array=slurm_array_args(len(cases), args.max_parallel))
        print(f"wrote {_write_script(script, text)} ({len(cases)} array tasks); submit with: sbatch {script}")
        return 0
    rows = run_batch(args.cohort, args.output, model=args.model, device=args.device, dicom_out=args.dicom_out,
                     overwrite=args.overwrite, only=args.case, index=args.index, trust_model=args.trust_model, log=_err,
                     keep_rejected=args.keep_rejected)
    print(f"{len(rows)} cases done; summary: {Path(args.output) / 'summary.csv'}")
    return 0

