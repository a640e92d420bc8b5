"""Train GlandSeg's default model, in one command, on a CPU.

    python -m GlandSegLib.defaultmodel.train_default --out Resources/models/glandseg-v2 --work /tmp/glandseg-train \\
        --outlines ../shared/data/tcia-hn-labels --openkbp ../shared/data/openkbp/train-pats \\
        --phantoms-per-scan 6 --epochs 56 --iterations 40 --init glandseg-phantom-v1

Two sources, because no CT with all six gland outlines exists here (shared/data/README):
phantoms built around the real expert outlines of the TCIA `test` scans (all six glands,
real shapes and positions, synthetic CT values; `validation` scans are held out for
evaluation), and OpenKBP's real CTs, which outline only the parotids: there the rest of
the body is nnU-Net's ignore label (GlandSegLib.defaultmodel.openkbp), so real CT teaches the parotids
without teaching "no submandibular gland here". --init starts from an earlier model with
the same network (fine-tuning): the shipped glandseg-phantom-v1 already left nnU-Net's
all-background plateau, which costs several hundred CPU iterations from scratch.

Why every case goes through `locate_head` + `resample_box`: the network
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
Preparing the 336 cases takes ~15 min with two processes; each training iteration
~1.8 s on two quiet cores. Everything is seeded, so a rerun builds the same
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk

# the measured CPU default configuration lives beside the code that plans it
from GlandSegLib.training.defaults import DEFAULT_BATCH as BATCH
from GlandSegLib.training.defaults import DEFAULT_CONFIGURATION as CONFIGURATION
from GlandSegLib.training.defaults import DEFAULT_EPOCHS as EPOCHS
from GlandSegLib.training.defaults import DEFAULT_FEATURES as FEATURES
from GlandSegLib.training.defaults import DEFAULT_ITERATIONS as ITERATIONS
from GlandSegLib.training.defaults import DEFAULT_PATCH as PATCH
from GlandSegLib.training.defaults import DEFAULT_SPACING as SPACING
from GlandSegLib.defaultmodel.openkbp import BELOW_PAROTIDS_MM, RING_MM

DATASET_ID = 802
DATASET_NAME = "GlandSegOutlinesOpenKBP"
MODEL_NAME = "glandseg-v2"
PHANTOMS_PER_SCAN = 6  # the shipped recipe
INIT_MODEL = "glandseg-phantom-v1"

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
    """One training case: where it comes from, how it is stored, and its id in the dataset.

    source "outline": a phantom around one rater's TCIA outlines (all six glands supervised);
    source "openkbp": a real OpenKBP CT (parotids supervised, see GlandSegLib.defaultmodel.openkbp).
    """

    case_id: str
    source: str
    path: str
    rater: str = ""
    seed: int = 0
    field: str = ""
    spacing: tuple[float, float, float] | None = None
    truncate_vertex_mm: float = 0.0
    variant: str = "lps"
    appearance: str = "standard"  # or "randomised" (phantom.tissues.randomise_appearance)
    pseudo_labels: str = ""  # openkbp: a pseudo_labels file merged where the partial labels say nothing


def outline_specs(root: Path, per_scan: int, seed: int, split: str = "test", randomised: float = 0.0) -> list[CaseSpec]:
    """A fixed, seeded mix over the TCIA `split` scans: both raters in turn (their
    disagreement is real label noise the model should average over), fields and spacings
    in rotation, half stored plain LPS and the rest in the other storage variants, a
    quarter of the non-whole-body fields with the vertex cut off. `randomised`: the share of
    phantoms (every k-th, evenly spread) whose appearance is randomised; 0 for the shipped
    recipes, whose case list stays what it was."""
    from GlandSegLib.defaultmodel.phantom import OUTLINE_RATERS, VARIANTS, list_outline_cases

    rng = np.random.default_rng(seed)
    others = [v for v in VARIANTS if v != "lps"]
    specs = []
    for s, case_dir in enumerate(list_outline_cases(root, split)):
        for j in range(per_scan):
            i = s * per_scan + j
            field, spacing = _FIELDS[i % len(_FIELDS)]
            variant = "lps" if i % 2 == 0 else others[(i // 2) % len(others)]
            truncate = float(rng.integers(20, 61)) if (i % 4 == 3 and field != "wholebody") else 0.0
            specs.append(CaseSpec(f"tcia_{case_dir.name}_{j}", "outline", str(case_dir), OUTLINE_RATERS[(s + j) % 2],
                                  int(rng.integers(0, 2**31 - 1)), field, spacing, truncate, variant,
                                  appearance_of(i, randomised)))
    return specs


def appearance_of(i: int, randomised: float) -> str:
    """The appearance of the i-th phantom of a recipe in which a share `randomised` is
    randomised: every k-th, evenly spread, so a short --limit run keeps the share."""
    return "randomised" if int((i + 1) * randomised) > int(i * randomised) else "standard"


def add_appearance_option(ap: argparse.ArgumentParser, plain_recipe: str) -> None:
    """--randomise-appearance SHARE, as both recipes (this one and train_lacrimal) take it."""
    def share(text: str) -> float:
        value = float(text)
        if not 0.0 <= value <= 1.0:
            raise argparse.ArgumentTypeError(f"a share between 0 and 1, got {text}")
        return value

    ap.add_argument("--randomise-appearance", type=share, default=0.0, metavar="SHARE",
                    help=f"share of phantoms with randomised tissue and gland intensities (0-1; default 0: {plain_recipe})")


def openkbp_specs(folder: Path, pseudo_labels: Path | None = None) -> list[CaseSpec]:
    """Every OpenKBP patient in `folder` (train-pats only: validation-pats is held out), each
    with its file from GlandSegLib.defaultmodel.pseudo_labels where `pseudo_labels` holds one."""
    from GlandSegLib.defaultmodel.openkbp import list_patients
    from GlandSegLib.defaultmodel.pseudo_labels import pseudo_label_file

    if folder.name == "validation-pats":
        raise ValueError("validation-pats is held out for evaluation: train on train-pats")
    return [CaseSpec(f"openkbp_{p.name}", "openkbp", str(p), pseudo_labels=str(pseudo_label_file(pseudo_labels, p.name) or ""))
            for p in list_patients(folder)]


def _render(spec: CaseSpec) -> tuple[sitk.Image, sitk.Image]:
    """The case as a scanner would store it, with its training labels on the same grid."""
    if spec.source == "openkbp":
        from GlandSegLib.defaultmodel.openkbp import partial_labels

        ct = sitk.ReadImage(str(Path(spec.path) / "ct.nrrd"))
        return ct, partial_labels(ct, sitk.ReadImage(str(Path(spec.path) / "oar_labels.nrrd")))
    from GlandSegLib.defaultmodel.phantom import make_phantom_from_outlines, reorient

    ph = make_phantom_from_outlines(spec.path, spec.rater, spec.seed, field=spec.field, spacing=spec.spacing,
                                    truncate_vertex_mm=spec.truncate_vertex_mm, appearance=spec.appearance)
    return reorient(ph.ct, spec.variant, is_label=False), reorient(ph.labels, spec.variant, is_label=True)


def prepare_case(spec: CaseSpec, crop_spacing: Sequence[float]) -> tuple[str, sitk.Image | None, sitk.Image | None, dict]:
    """Render (or read), then crop exactly as inference does.

    Returns (case_id, ct_crop, label_crop, info); the crops are None when the locator
    refuses the case (reported, not fatal: a model should not learn from a wrong box).
    """
    from GlandSegLib.errors import NoHeadError
    from GlandSegLib.geometry import resample_box
    from GlandSegLib.segmentation.headbox import locate_head

    t0 = time.perf_counter()
    ct, labels = _render(spec)
    info = {"case_id": spec.case_id, "source": spec.source, "path": Path(spec.path).name}
    if spec.source == "outline":
        info.update({"rater": spec.rater, "field": spec.field, "spacing": list(spec.spacing or ()),
                     "variant": spec.variant, "truncate_vertex_mm": spec.truncate_vertex_mm, "seed": spec.seed,
                     "appearance": spec.appearance})
    try:
        box = locate_head(ct)
    except NoHeadError as exc:
        info["skipped"] = str(exc)
        return spec.case_id, None, None, info
    ct_crop = resample_box(ct, box, crop_spacing, is_label=False)
    lab_crop = resample_box(labels, box, crop_spacing, is_label=True)
    if spec.pseudo_labels:
        from GlandSegLib.defaultmodel.pseudo_labels import merge

        lab_crop = merge(lab_crop, sitk.ReadImage(spec.pseudo_labels))
        info["pseudo_labels"] = True
    present = np.bincount(sitk.GetArrayViewFromImage(lab_crop).ravel(), minlength=8)[1:7]
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
        how = (f"{info['rater']} {info['field']} {info['spacing']} {info['variant']}"
               f"{' vertex-' + str(int(info['truncate_vertex_mm'])) + 'mm' if info['truncate_vertex_mm'] else ''}"
               if info["source"] == "outline" else "real CT")
        log(f"case {case_id}: {how} -> crop {info['crop_size']} ({info['box_method']}) {info['seconds']} s"
            f"{' missing labels ' + str(missing) if missing else ''}")
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


def initial_checkpoint(model: str) -> Path:
    """The weights file of an installed or shipped model: where a recipe's --init starts from."""
    from GlandSegLib.models.registry import load_model_info

    info = load_model_info(model)
    return info.folder / f"fold_{info.folds[0]}" / info.checkpoint


def raw_dataset_cases(raw: Path, reuse: bool, write: Callable[[list[dict]], object], log: Log,
                      **glandseg: object) -> list[dict]:
    """The per-case records of the raw dataset at `raw`: with --continue, the recorded ones;
    else `write(infos)` writes the dataset (its case generator fills `infos`), and the list,
    complete only once the generator is exhausted, goes into dataset.json with `glandseg`."""
    if reuse and (raw / "dataset.json").is_file():
        log(f"reusing {raw}")
        return json.loads((raw / "dataset.json").read_text()).get("glandseg", {}).get("cases", [])
    infos: list[dict] = []
    write(infos)
    ds = json.loads((raw / "dataset.json").read_text())
    ds["glandseg"]["cases"] = infos
    ds["glandseg"].update(glandseg)
    (raw / "dataset.json").write_text(json.dumps(ds, indent=2) + "\n")
    log(f"raw dataset written: {ds['numTraining']} cases in {raw}")
    return infos


def plan_unless_reused(dataset_id: int, spacing: Sequence[float], patch: Sequence[int], features: Sequence[int],
                       batch: int, reuse: bool, preprocessed: Path, log: Log) -> float:
    """Seconds spent planning and preprocessing; none with --continue where plans exist."""
    from GlandSegLib.training.planning import plan_and_preprocess

    if reuse and (preprocessed / "nnUNetPlans.json").is_file():
        log("reusing plans and preprocessed data")
        return 0.0
    pr = plan_and_preprocess(dataset_id, CONFIGURATION, spacing, patch, features, batch, progress=log)
    return pr.seconds_fingerprint + pr.seconds_planning + pr.seconds_preprocessing


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.train_default", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="model folder to write (e.g. Resources/models/glandseg-phantom-v1)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for nnU-Net raw/preprocessed/results")
    ap.add_argument("--outlines", type=Path, default=None,
                    help="tcia-hn-labels folder (phantoms from its `test` split; `validation` is held out)")
    ap.add_argument("--phantoms-per-scan", type=int, default=PHANTOMS_PER_SCAN)
    add_appearance_option(ap, "the shipped recipe")
    ap.add_argument("--openkbp", type=Path, default=None, help="OpenKBP train-pats folder (real CT, parotids)")
    ap.add_argument("--pseudo-labels", type=Path, default=None,
                    help="folder written by GlandSegLib.defaultmodel.pseudo_labels: submandibular labels on those OpenKBP CTs")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N cases of each source (quick runs)")
    ap.add_argument("--init", default=None,
                    help="start from this installed model's weights (name or folder; same network), e.g. " + INIT_MODEL
                    + "; with --continue, only where --work has no checkpoint yet (reuse prepared cases, new start)")
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
    if a.outlines is None and a.openkbp is None:
        ap.error("give --outlines and/or --openkbp")
    if a.phantoms_per_scan < 1:
        ap.error("--phantoms-per-scan must be at least 1")
    return a


def all_specs(args: argparse.Namespace) -> list[CaseSpec]:
    specs: list[CaseSpec] = []
    if args.outlines is not None:
        specs += outline_specs(args.outlines, args.phantoms_per_scan, args.seed,
                               randomised=args.randomise_appearance)[: args.limit]
    if args.openkbp is not None:
        specs += openkbp_specs(args.openkbp, args.pseudo_labels)[: args.limit]
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = Log()
    out = args.out.absolute()
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists (use --overwrite)", file=sys.stderr)
        return 8

    from GlandSegLib.defaultmodel.pseudo_labels import labelling_models

    try:  # before the half hour of case preparation: the card must name who made the labels
        labellers = labelling_models(args.pseudo_labels) if args.pseudo_labels else []
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: --pseudo-labels: {exc}", file=sys.stderr)
        return 2

    from GlandSegLib.models.export import export_model
    from GlandSegLib.training.nnunet_env import nnunet_environment
    from GlandSegLib.training.dataset import write_raw_dataset
    from GlandSegLib.training.trainer import train

    random.seed(args.seed)
    np.random.seed(args.seed)
    with nnunet_environment(args.work, n_proc_da=0, torch_threads=args.threads) as folders:
        import torch

        torch.manual_seed(args.seed)
        specs = all_specs(args)
        init = initial_checkpoint(args.init) if args.init else None  # the trainer ignores it when resuming
        raw = folders.raw / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"

        def write(infos: list[dict]) -> None:
            log(f"preparing {len(specs)} cases ({args.jobs} processes), cropping at {list(SPACING)} mm")
            write_raw_dataset(generate_cases(specs, SPACING, max(1, args.jobs), log, infos), folders.raw, DATASET_ID,
                              DATASET_NAME, SPACING,
                              "Phantoms around TCIA expert outlines (six glands) and OpenKBP real CTs (parotids, "
                              "ignore label elsewhere in the body), cropped by the fast head locator",
                              overwrite=True, ignore_label=any(s.source == "openkbp" for s in specs))

        infos = raw_dataset_cases(raw, args.continue_training, write, log)
        t_cases = log.elapsed()
        plan_seconds = plan_unless_reused(DATASET_ID, SPACING, args.patch, args.features, args.batch,
                                          args.continue_training, folders.preprocessed / raw.name, log)

        log(f"training {CONFIGURATION} fold all: {args.epochs} epochs x {args.iterations} iterations on {args.device}")
        tr = train(DATASET_ID, CONFIGURATION, "all", args.epochs, args.iterations, args.device,
                   continue_training=args.continue_training, progress=log, val_iterations_per_epoch=args.val_iterations,
                   oversample_foreground=args.oversample_foreground, optimizer=args.optimizer, initial_weights=init)
        t_train = log.elapsed()
        log(f"training done: {tr.seconds:.0f} s, {tr.seconds_per_iteration:.2f} s/iteration")

        used = [i for i in infos if "skipped" not in i]
        phantoms = [i for i in used if i["source"] == "outline"]
        card = {
            "summary": ("GlandSeg's default model: all six glands learned from phantoms built around real expert "
                        "outlines, parotids also from real CTs. Not validated for clinical use: check every "
                        "segment, and retrain on your own outlined CTs (docs: 'Build your own model')."),
            "training_data": {
                "phantoms": {
                    "source": "GlandSegLib.defaultmodel.phantom.make_phantom_from_outlines on the `test` split of the DeepMind "
                              "TCIA head-and-neck outlines (Nikolov et al. 2018, CC BY 4.0), both raters",
                    "cases": len(phantoms),
                    "scans": len({i["path"] for i in phantoms}),
                    "raters": dict(Counter(i["rater"] for i in phantoms)),
                    "fields": dict(Counter(i["field"] for i in phantoms)),
                    "scanner_spacings_mm": dict(Counter("x".join(f"{v:g}" for v in i["spacing"]) for i in phantoms)),
                    "storage_variants": dict(Counter(i["variant"] for i in phantoms)),
                    "vertex_truncated": sum(1 for i in phantoms if i["truncate_vertex_mm"]),
                },
                "real_ct": {
                    "source": "OpenKBP train-pats (Babier et al. 2021; repository MIT, CTs from TCIA collections, "
                              "CC BY): parotids supervised; air, the other outlined organs, a "
                              f"{RING_MM:g} mm ring around each parotid and everything more than {BELOW_PAROTIDS_MM:g} mm "
                              "below the parotids are background; the rest of the body is nnU-Net's ignore label",
                    "cases": sum(1 for i in used if i["source"] == "openkbp"),
                    "submandibular_pseudo_labels": {
                        "source": "GlandSegLib.defaultmodel.pseudo_labels with " + ", ".join(labellers)
                                  + ": the model's plausible glands, core labelled, boundary band ignored, shell background",
                        "cases": sum(1 for i in used if i.get("pseudo_labels")),
                    } if args.pseudo_labels else None,
                },
                "skipped_by_locator": [i["case_id"] for i in infos if "skipped" in i],
                "seed": args.seed,
                "initial_weights": args.init,
            },
            "training": {
                "command": "python -m GlandSegLib.defaultmodel.train_default " + " ".join(sys.argv[1:] if argv is None else argv),
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
                "Lacrimal and submandibular glands were learned from phantoms only (synthetic CT around real "
                "outlines); their accuracy on real CT is not measured here (no real CT with those outlines).",
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
