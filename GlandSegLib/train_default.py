"""Train GlandSeg's default model on synthetic phantoms, in one command, on a CPU.

    python -m GlandSegLib.train_default --out Resources/models/glandseg-phantom-v1 \\
        --work /tmp/glandseg-train [--cases 40] [--epochs 50] [--iterations 30] [--seed 0]

Why phantoms: no CT with all six gland outlines may be shipped (see shared/data/README);
the phantoms carry real gland sizes and positions, and they let the model and every test
run anywhere. Why every case goes through `locate_head` + `resample_box`: the network
must see exactly what inference feeds it (same locator, same box, same identity-direction
LPS grid, same interpolation), including scans stored RAS, permuted, feet-first, oblique
or anisotropic, and head-only, head-and-neck and whole-body fields.

The defaults were measured on the 2-core, no-GPU development machine, batch 2, 2 mm,
while other work shared the cores (best of 8-10 steps, forward+backward+step):

    patch 48^3, features (16, 32, 64, 128, 128)   3.75 M params  1.0-1.2 s/step  tile 0.25 s
    patch 64^3, features (16, 32, 64, 128, 160)   4.14 M params  3.4-3.6 s/step  tile 0.45 s
    patch 64^3, features (8, 16, 32, 64, 128)     1.41 M params  1.1-1.1 s/step  tile 0.31 s

(+0.05-0.3 s per iteration for augmentation in the training process). The last is the
default: as cheap to train as the first, but 128 mm of context, so a patch centred on a
parotid reaches the midline (~58 mm away), the main cue that tells right from left; and
a 100x100x135 crop needs 36 tiles instead of 80, so CPU inference is about twice as fast.
50 epochs x 30 iterations (+3 validation iterations each) take ~35 min, ~40 min with
phantom generation and preprocessing. Everything is seeded, so a rerun builds the same
cases and plans (training itself is not bit-reproducible across thread counts).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# the measured CPU default configuration lives beside the code that plans it
from .training import DEFAULT_BATCH as BATCH
from .training import DEFAULT_CONFIGURATION as CONFIGURATION
from .training import DEFAULT_EPOCHS as EPOCHS
from .training import DEFAULT_FEATURES as FEATURES
from .training import DEFAULT_ITERATIONS as ITERATIONS
from .training import DEFAULT_PATCH as PATCH
from .training import DEFAULT_SPACING as SPACING

DATASET_ID = 801
DATASET_NAME = "GlandSegPhantom"
MODEL_NAME = "glandseg-phantom-v1"
CASES = 40

# field, scanner spacing (x, y, z mm): the mix of inputs GlandSeg meets
_FIELDS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("head", (1.0, 1.0, 2.0)),
    ("headneck", (0.8, 0.8, 3.0)),
    ("wholebody", (1.0, 1.0, 2.0)),
    ("head", (0.8, 0.8, 3.0)),
    ("headneck", (1.0, 1.0, 2.0)),
    ("wholebody", (0.8, 0.8, 3.0)),
)


@dataclass(frozen=True)
class CaseSpec:
    """One phantom case: which phantom, how it is stored, and its id in the dataset."""

    case_id: str
    seed: int
    field: str
    spacing: tuple[float, float, float]
    truncate_vertex_mm: float
    variant: str


def case_specs(n: int, seed: int) -> list[CaseSpec]:
    """A fixed, seeded mix: fields and spacings in rotation, storage variants in rotation
    (half plain LPS, the rest the other variants), a quarter with the vertex cut off."""
    from .phantom import VARIANTS

    rng = np.random.default_rng(seed)
    others = [v for v in VARIANTS if v != "lps"]
    specs = []
    for i in range(n):
        field, spacing = _FIELDS[i % len(_FIELDS)]
        variant = "lps" if i % 2 == 0 else others[(i // 2) % len(others)]
        truncate = float(rng.integers(20, 61)) if (i % 4 == 3 and field != "wholebody") else 0.0
        specs.append(CaseSpec(f"phantom_{i:03d}", int(rng.integers(0, 2**31 - 1)), field, spacing, truncate, variant))
    return specs


def prepare_case(spec: CaseSpec, crop_spacing: Sequence[float]) -> tuple[str, sitk.Image | None, sitk.Image | None, dict]:
    """Render, store as the variant, then crop exactly as inference does.

    Returns (case_id, ct_crop, label_crop, info); the crops are None when the locator
    refuses the case (reported, not fatal: a model should not learn from a wrong box).
    """
    from .errors import NoHeadError
    from .geometry import resample_box
    from .headbox import locate_head
    from .phantom import make_phantom, reorient

    t0 = time.perf_counter()
    ph = make_phantom(spec.seed, field=spec.field, spacing=spec.spacing, truncate_vertex_mm=spec.truncate_vertex_mm, variation=True)
    ct = reorient(ph.ct, spec.variant, is_label=False)
    labels = reorient(ph.labels, spec.variant, is_label=True)
    del ph
    info = {"case_id": spec.case_id, "field": spec.field, "spacing": list(spec.spacing), "variant": spec.variant,
            "truncate_vertex_mm": spec.truncate_vertex_mm, "seed": spec.seed}
    try:
        box = locate_head(ct)
    except NoHeadError as exc:
        info["skipped"] = str(exc)
        return spec.case_id, None, None, info
    ct_crop = resample_box(ct, box, crop_spacing, is_label=False)
    lab_crop = resample_box(labels, box, crop_spacing, is_label=True)
    present = np.bincount(sitk.GetArrayViewFromImage(lab_crop).ravel(), minlength=7)[1:]
    info.update({"box_method": box.method, "crop_size": list(ct_crop.GetSize()), "gland_voxels": [int(v) for v in present],
                 "seconds": round(time.perf_counter() - t0, 1)})
    return spec.case_id, ct_crop, lab_crop, info


def _prepare(args: tuple[CaseSpec, tuple[float, float, float]]) -> tuple[str, sitk.Image | None, sitk.Image | None, dict]:
    return prepare_case(*args)


def generate_cases(specs: list[CaseSpec], crop_spacing: Sequence[float], jobs: int, log: Log,
                   infos: list[dict]) -> Iterator[tuple[str, sitk.Image, sitk.Image]]:
    """Yield prepared crops in spec order, rendering in `jobs` spawned processes (the
    phantoms are numpy/SimpleITK work; spawn keeps torch's threads out of the workers).
    Each case's info dict, skipped or not, is appended to `infos`."""
    work = [(s, tuple(float(v) for v in crop_spacing)) for s in specs]
    if jobs > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            yield from _collect(pool.map(_prepare, work), infos, log)
    else:
        yield from _collect(map(_prepare, work), infos, log)


def _collect(results, infos: list[dict], log: Log) -> Iterator[tuple[str, sitk.Image, sitk.Image]]:
    for case_id, ct, lab, info in results:
        infos.append(info)
        if ct is None or lab is None:
            log(f"case {case_id}: skipped ({info['skipped']})")
            continue
        missing = [i + 1 for i, v in enumerate(info["gland_voxels"]) if v == 0]
        log(f"case {case_id}: {info['field']} {info['spacing']} {info['variant']}"
            f"{' vertex-' + str(int(info['truncate_vertex_mm'])) + 'mm' if info['truncate_vertex_mm'] else ''}"
            f" -> crop {info['crop_size']} ({info['box_method']}){' missing labels ' + str(missing) if missing else ''}")
        yield case_id, ct, lab


def _rounded(value: float | None, digits: int) -> float | None:
    """For JSON: NaN (an epoch that saw no gland of a class) becomes null."""
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


class Log:
    """Progress lines with elapsed time since the command started."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, message: str) -> None:
        print(f"[{self.elapsed():7.1f} s] {message}", flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.train_default", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="model folder to write (e.g. Resources/models/glandseg-phantom-v1)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for nnU-Net raw/preprocessed/results")
    ap.add_argument("--cases", type=int, default=CASES)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--iterations", type=int, default=ITERATIONS, help="training iterations per epoch")
    ap.add_argument("--val-iterations", type=int, default=None, help="validation iterations per epoch (default: iterations/10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--patch", type=int, nargs=3, default=list(PATCH), metavar=("X", "Y", "Z"), help="patch size in voxels")
    ap.add_argument("--features", type=int, nargs="+", default=list(FEATURES), help="U-Net features per stage")
    ap.add_argument("--batch", type=int, default=BATCH)
    ap.add_argument("--oversample-foreground", type=float, default=0.8,
                    help="share of training patches centred on a gland (nnU-Net default 0.33 is too low for a short schedule)")
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="adam",
                    help="adam (AdamW 1e-3) learns the small glands within a CPU budget; sgd is nnU-Net's stock SGD")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="processes rendering phantoms")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: one per core; use 1 when other work shares the cores)")
    ap.add_argument("--continue", dest="continue_training", action="store_true",
                    help="resume training from the checkpoints in --work (cases and plans are reused)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    a = ap.parse_args(argv)
    if a.cases < 2:
        ap.error("--cases must be at least 2")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = Log()
    out = args.out.absolute()
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists (use --overwrite)", file=sys.stderr)
        return 8

    from .export import export_model
    from .nnunet_env import nnunet_environment
    from .training import plan_and_preprocess, train, write_raw_dataset

    random.seed(args.seed)
    np.random.seed(args.seed)
    with nnunet_environment(args.work, n_proc_da=0, torch_threads=args.threads) as folders:
        import torch

        torch.manual_seed(args.seed)
        specs = case_specs(args.cases, args.seed)
        raw = folders.raw / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
        infos: list[dict] = []
        if args.continue_training and (raw / "dataset.json").is_file():
            log(f"reusing {raw}")
            infos = json.loads((raw / "dataset.json").read_text()).get("glandseg", {}).get("cases", [])
        else:
            log(f"rendering {len(specs)} phantom cases ({args.jobs} processes), cropping at {list(SPACING)} mm")
            gen = generate_cases(specs, SPACING, max(1, args.jobs), log, infos)
            write_raw_dataset(gen, folders.raw, DATASET_ID, DATASET_NAME, SPACING,
                              "GlandSeg synthetic head phantoms, cropped by the fast head locator", overwrite=True)
            # the case list is complete only once the generator is exhausted
            ds = json.loads((raw / "dataset.json").read_text())
            ds["glandseg"]["cases"] = infos
            (raw / "dataset.json").write_text(json.dumps(ds, indent=2) + "\n")
            log(f"raw dataset written: {ds['numTraining']} cases in {raw}")
        t_cases = log.elapsed()

        if args.continue_training and (folders.preprocessed / raw.name / "nnUNetPlans.json").is_file():
            plan_seconds = 0.0
            log("reusing plans and preprocessed data")
        else:
            pr = plan_and_preprocess(DATASET_ID, CONFIGURATION, SPACING, args.patch, args.features, args.batch, progress=log)
            plan_seconds = pr.seconds_fingerprint + pr.seconds_planning + pr.seconds_preprocessing

        log(f"training {CONFIGURATION} fold all: {args.epochs} epochs x {args.iterations} iterations on {args.device}")
        tr = train(DATASET_ID, CONFIGURATION, "all", args.epochs, args.iterations, args.device,
                   continue_training=args.continue_training, progress=log, val_iterations_per_epoch=args.val_iterations,
                   oversample_foreground=args.oversample_foreground, optimizer=args.optimizer)
        t_train = log.elapsed()
        log(f"training done: {tr.seconds:.0f} s, {tr.seconds_per_iteration:.2f} s/iteration")

        used = [i for i in infos if "skipped" not in i]
        card = {
            "summary": ("GlandSeg's default model, trained only on synthetic phantoms. It proves the pipeline end "
                        "to end and is not validated for clinical use: retrain on real outlined CTs."),
            "training_data": {
                "source": "GlandSegLib.phantom.make_phantom (gland sizes and positions from the DeepMind TCIA "
                          "head-and-neck outlines, CC BY 4.0)",
                "cases": len(used),
                "skipped_by_locator": len(infos) - len(used),
                "fields": dict(Counter(i["field"] for i in used)),
                "scanner_spacings_mm": dict(Counter("x".join(f"{v:g}" for v in i["spacing"]) for i in used)),
                "storage_variants": dict(Counter(i["variant"] for i in used)),
                "vertex_truncated": sum(1 for i in used if i["truncate_vertex_mm"]),
                "seed": args.seed,
            },
            "training": {
                "command": "python -m GlandSegLib.train_default " + " ".join(sys.argv[1:] if argv is None else argv),
                "trainer": "nnUNetTrainerNoMirroring (stock nnunetv2, schedule shortened" + (", AdamW 1e-3)" if args.optimizer == "adam" else ")"),
                "configuration": CONFIGURATION,
                "fold": "all",
                "epochs": args.epochs,
                "iterations_per_epoch": args.iterations,
                "total_iterations": args.epochs * args.iterations,
                "val_iterations_per_epoch": tr.val_iterations_per_epoch,
                "batch_size": tr.batch_size,
                "oversample_foreground": args.oversample_foreground,
                "optimizer": args.optimizer,
                "patch_size": list(args.patch),
                "features_per_stage": list(args.features),
                "spacing_mm": list(SPACING),
                "device": args.device,
                "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} CPUs, torch {torch.__version__}",
                "seconds_cases": round(t_cases, 1),
                "seconds_plan_preprocess": round(plan_seconds, 1),
                "seconds_training": round(tr.seconds, 1),
                "seconds_per_iteration": _rounded(tr.seconds_per_iteration, 3),
                "seconds_total": round(t_train, 1),
                "final_train_loss": _rounded(tr.final_train_loss, 4),
                "final_pseudo_dice": [_rounded(d, 4) for d in tr.final_pseudo_dice],
                "resumed_from": tr.resumed_from,
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            "limitations": [
                "Synthetic anatomy only; accuracy on real CT is unknown until measured.",
                "Pseudo Dice is nnU-Net's training-time estimate on training patches, not a validation result.",
                "Inputs must be cropped by GlandSeg's fast locator and resampled to the model spacing.",
            ],
        }
        dest = export_model(tr.output_folder, out, MODEL_NAME, fold="all", card=card, overwrite=args.overwrite)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        log(f"exported {dest} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
