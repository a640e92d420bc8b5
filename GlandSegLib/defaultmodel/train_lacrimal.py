"""Train the lacrimal stage and ship it inside a two-stage model, in one command, on a CPU.

    python -m GlandSegLib.defaultmodel.train_lacrimal --base glandseg-v2 --out Resources/models/glandseg-v3 \\
        --work /tmp/glandseg-lacrimal --outlines ../shared/data/tcia-hn-labels \\
        --phantoms-per-scan 6 --epochs 50 --iterations 40 --init glandseg-v2

Cases: phantoms around the TCIA `test` outlines (both raters in turn; `validation` stays
held out), stored in the scanner spacings and storage variants GlandSeg meets, and one
80 mm box per side placed exactly as inference places it (GlandSegLib.segmentation.lacrimal): at the
expert parotid's centroid plus the mean parotid-to-lacrimal offset of these outlines, then
shifted by up to JITTER_MM per axis, because at inference the anchor is stage one's
parotid, not the expert's. Labels: the lacrimal glands only.

The output model is the base model's folder unchanged (stage one) plus `lacrimal/`, the
stage's own model folder, and `stages` in the top glandseg-model.json; checksums cover both.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.defaultmodel.phantom import OUTLINE_RATERS, list_outline_cases, outline_folder, read_outlines
from GlandSegLib.segmentation.lacrimal import (BOX_MM, LACRIMAL_LABELS, LACRIMAL_OF_PAROTID, SPACING_MM, STAGE_KIND,
                                               label_centroid, lacrimal_box)
from GlandSegLib.defaultmodel.train_default import (Log, _rounded, add_appearance_option, appearance_of, initial_checkpoint,
                                                    plan_unless_reused, raw_dataset_cases)
from GlandSegLib.training.defaults import DEFAULT_BATCH, DEFAULT_CONFIGURATION, DEFAULT_FEATURES

DATASET_ID = 803
DATASET_NAME = "GlandSegLacrimalStage"
STAGE_FOLDER = "lacrimal"
PATCH = (64, 64, 64)  # = BOX_MM / SPACING_MM: the box is one patch
JITTER_MM = 6.0
STAGE_ONE_HEADING = "## Stage one"  # a two-stage model card's part about stage one
PHANTOMS_PER_SCAN = 6

# scanner spacing (None: the outlines' own lattice), storage variant
_STORAGE: tuple[tuple[tuple[float, float, float] | None, str], ...] = (
    ((1.0, 1.0, 2.0), "lps"),
    ((0.8, 0.8, 3.0), "oblique10"),
    (None, "ras"),
    ((1.0, 1.0, 2.0), "anisotropic"),
    ((0.8, 0.8, 3.0), "feet_first"),
    ((1.0, 1.0, 2.0), "permuted"),
)


@dataclass(frozen=True)
class LacrimalSpec:
    case_id: str
    path: str
    rater: str
    seed: int
    spacing: tuple[float, float, float] | None
    variant: str
    truncate_vertex_mm: float
    jitter_mm: tuple[tuple[float, float, float], tuple[float, float, float]]  # right box, left box
    appearance: str = "standard"  # or "randomised" (phantom.tissues.randomise_appearance)


def measure_offsets(outlines_root: str | Path, split: str = "test") -> dict[int, list[float]]:
    """Mean lacrimal-minus-parotid centroid offset per side (LPS mm) over both raters' outlines."""
    found: dict[int, list[np.ndarray]] = {lac: [] for lac in LACRIMAL_LABELS}
    for case in list_outline_cases(outlines_root, split):
        for rater in OUTLINE_RATERS:
            try:
                o = read_outlines(outline_folder(case, rater), glands_only=True)
            except FileNotFoundError:
                continue
            for parotid, lacrimal in LACRIMAL_OF_PAROTID.items():
                if parotid in o.glands and lacrimal in o.glands:
                    found[lacrimal].append(o.centroid(o.glands[lacrimal]) - o.centroid(o.glands[parotid]))
    if any(not v for v in found.values()):
        raise ValueError(f"no outline set in {outlines_root} ({split}) has both a parotid and a lacrimal gland on each side")
    return {lac: [round(float(v), 2) for v in np.mean(rows, axis=0)] for lac, rows in found.items()}


def lacrimal_specs(root: Path, per_scan: int, seed: int, split: str = "test", randomised: float = 0.0) -> list[LacrimalSpec]:
    """`randomised`: the share of phantoms whose tissue and gland intensities, noise and blur
    are drawn at random (train_default.appearance_of); 0 keeps glandseg-v3's case list."""
    rng = np.random.default_rng(seed)
    specs = []
    for s, case_dir in enumerate(list_outline_cases(root, split)):
        for j in range(per_scan):
            spacing, variant = _STORAGE[(s + j) % len(_STORAGE)]
            truncate = float(rng.integers(20, 61)) if j % 3 == 2 else 0.0
            jitter = tuple(tuple(float(v) for v in rng.uniform(-JITTER_MM, JITTER_MM, 3)) for _ in range(2))
            specs.append(LacrimalSpec(f"lac_{case_dir.name}_{j}", str(case_dir), OUTLINE_RATERS[(s + j) % 2],
                                      int(rng.integers(0, 2**31 - 1)), spacing, variant, truncate, jitter,  # type: ignore[arg-type]
                                      appearance_of(len(specs), randomised)))
    return specs


def prepare_boxes(spec: LacrimalSpec, offsets: dict[int, list[float]]) -> list[tuple[str, sitk.Image, sitk.Image, dict]]:
    """Both sides' training boxes of one phantom: (case id, CT, lacrimal labels, info)."""
    from GlandSegLib.geometry import resample_box
    from GlandSegLib.defaultmodel.phantom import make_phantom_from_outlines, reorient

    ph = make_phantom_from_outlines(spec.path, spec.rater, spec.seed, field="head", spacing=spec.spacing,
                                    truncate_vertex_mm=spec.truncate_vertex_mm, appearance=spec.appearance)
    ct, labels = reorient(ph.ct, spec.variant), reorient(ph.labels, spec.variant, is_label=True)
    out = []
    for (parotid, lacrimal), jitter in zip(sorted(LACRIMAL_OF_PAROTID.items()), spec.jitter_mm):
        centre = label_centroid(labels, parotid)
        if centre is None or label_centroid(labels, lacrimal) is None:
            continue  # not outlined, or above the scan: an unlabelled gland would teach "no gland here"
        box = lacrimal_box(centre + np.asarray(jitter), offsets[lacrimal])
        ct_box = resample_box(ct, box, [SPACING_MM] * 3)
        lab = sitk.GetArrayFromImage(resample_box(labels, box, [SPACING_MM] * 3, is_label=True))
        lab[~np.isin(lab, list(LACRIMAL_LABELS))] = 0
        lab_box = sitk.GetImageFromArray(lab)
        lab_box.CopyInformation(ct_box)
        side = "R" if lacrimal == 1 else "L"
        info = {"case_id": f"{spec.case_id}_{side}", "path": Path(spec.path).name, "rater": spec.rater,
                "spacing": list(spec.spacing or ()), "variant": spec.variant, "seed": spec.seed,
                "truncate_vertex_mm": spec.truncate_vertex_mm, "appearance": spec.appearance, "lacrimal_voxels": int((lab == lacrimal).sum())}
        out.append((info["case_id"], ct_box, lab_box, info))
    return out


def _prepare(args: tuple[LacrimalSpec, dict[int, list[float]]]) -> list[tuple[str, sitk.Image, sitk.Image, dict]]:
    return prepare_boxes(*args)


def generate_boxes(specs: list[LacrimalSpec], offsets: dict[int, list[float]], jobs: int, log: Log,
                   infos: list[dict]) -> Iterator[tuple[str, sitk.Image, sitk.Image]]:
    work = [(s, offsets) for s in specs]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = pool.map(_prepare, work)
            yield from _collect(results, infos, log)
    else:
        yield from _collect(map(_prepare, work), infos, log)


def _collect(results, infos: list[dict], log: Log) -> Iterator[tuple[str, sitk.Image, sitk.Image]]:
    for boxes in results:
        for case_id, ct, lab, info in boxes:
            infos.append(info)
            log(f"case {case_id}: {info['rater']} {info['spacing'] or 'source lattice'} {info['variant']}, "
                f"{info['lacrimal_voxels']} lacrimal voxels")
            yield case_id, ct, lab


def assemble_two_stage(base: Path, stage: Path, out: Path, name: str, *, overwrite: bool = False) -> Path:
    """out = the base model's files + the stage folder as out/lacrimal, indexed together.

    A base that is itself two-stage (the shipped model, to retrain its lacrimal stage) gives
    its stage one only: its own lacrimal stage is left behind, and so are its prior weights,
    fitted on the stage being replaced (prior_calibration fits the new model's, as after every
    assembly). Written in a temporary sibling and renamed into place, like every model folder.
    """
    from GlandSegLib.io.images import replace_dir_atomic
    from GlandSegLib.models.registry import METADATA, PRIOR_WEIGHTS_KEY, file_table

    base, out = base.absolute(), out.absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        base_index = json.loads((base / METADATA).read_text())
        left_behind = {"evaluation.json", *(str(sub) for sub in (base_index.get("stages") or {}).values())}
        shutil.copytree(base, tmp, dirs_exist_ok=True,
                        ignore=lambda folder, names: [n for n in names if Path(folder) == base and n in left_behind])
        shutil.copytree(stage, tmp / STAGE_FOLDER)
        index = dict(base_index)
        for key in (PRIOR_WEIGHTS_KEY, "prior_calibration"):
            index.pop(key, None)
        index["name"] = name
        index["stages"] = {STAGE_KIND: STAGE_FOLDER}
        index["base_model"] = base_index.get("name", base.name)
        card = tmp / "model_card.md"
        stage_one = card.read_text().split("\n", 1)[1]
        if STAGE_ONE_HEADING in stage_one:  # a two-stage base: its stage one's part of the card
            stage_one = stage_one.split(STAGE_ONE_HEADING, 1)[1]
        card.write_text(f"# {name}\n\nTwo stages: `{index['base_model']}` (all six glands on the 2 mm head crop) "
                        f"and `{STAGE_FOLDER}/` (lacrimal glands on one {BOX_MM:g} mm box per side at {SPACING_MM:g} mm, "
                        "anchored at stage one's parotid; see its own model_card.md).\n\n"
                        + STAGE_ONE_HEADING + "\n\n" + stage_one.split("## Measured quality")[0].strip() + "\n")
        index["files"] = file_table(tmp)
        (tmp / METADATA).write_text(json.dumps(index, indent=2) + "\n")
        tmp.chmod(0o755)
        replace_dir_atomic(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m GlandSegLib.defaultmodel.train_lacrimal", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="stage-one model (name or folder), e.g. glandseg-v2; a two-stage model gives its stage one")
    ap.add_argument("--out", type=Path, required=True, help="two-stage model folder to write")
    ap.add_argument("--name", default=None, help="model name (default: the --out folder's name)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for nnU-Net raw/preprocessed/results")
    ap.add_argument("--outlines", type=Path, required=True, help="tcia-hn-labels (phantoms from its `test` split)")
    ap.add_argument("--phantoms-per-scan", type=int, default=PHANTOMS_PER_SCAN)
    ap.add_argument("--limit", type=int, default=None, help="only the first N phantoms (quick runs)")
    ap.add_argument("--init", default=None, help="start from this model's weights (same network), e.g. glandseg-v2")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    add_appearance_option(ap, "glandseg-v3's recipe")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--jobs", type=int, default=2, help="processes rendering phantoms")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--continue", dest="continue_training", action="store_true",
                    help="resume from the checkpoints in --work (cases and plans are reused)")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    if a.phantoms_per_scan < 1:
        ap.error("--phantoms-per-scan must be at least 1")
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = Log()
    out = args.out.absolute()
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists (use --overwrite)", file=sys.stderr)
        return 8

    from GlandSegLib.models.export import export_model
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.training.nnunet_env import nnunet_environment
    from GlandSegLib.training.dataset import write_raw_dataset
    from GlandSegLib.training.trainer import train

    base = load_model_info(args.base)  # verified before hours of work
    init = initial_checkpoint(args.init) if args.init and not args.continue_training else None
    random.seed(args.seed)
    np.random.seed(args.seed)
    offsets = measure_offsets(args.outlines, "test")
    log(f"parotid -> lacrimal offsets (test split, LPS mm): right {offsets[1]}, left {offsets[2]}")
    spacing = [SPACING_MM] * 3
    with nnunet_environment(args.work, n_proc_da=0, torch_threads=args.threads) as folders:
        import torch

        torch.manual_seed(args.seed)
        raw = folders.raw / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"

        def write(infos: list[dict]) -> None:
            specs = lacrimal_specs(args.outlines, args.phantoms_per_scan, args.seed,
                                   randomised=args.randomise_appearance)[: args.limit]
            log(f"preparing {len(specs)} phantoms, two boxes each, at {SPACING_MM} mm")
            write_raw_dataset(generate_boxes(specs, offsets, max(1, args.jobs), log, infos), folders.raw, DATASET_ID,
                              DATASET_NAME, spacing, "Lacrimal stage: 80 mm boxes beside each orbit, anchored at the "
                              "parotid, from phantoms around TCIA expert outlines", overwrite=True,
                              extra={"stage": STAGE_KIND})

        infos = raw_dataset_cases(raw, args.continue_training, write, log, crop={
            "locator": "stage one's parotid + offsets_mm", "box_mm": BOX_MM, "spacing_mm": spacing,
            "functions": ["GlandSegLib.segmentation.lacrimal.stage_boxes", "GlandSegLib.geometry.resample_box"]})
        t_cases = log.elapsed()
        plan_seconds = plan_unless_reused(DATASET_ID, spacing, PATCH, DEFAULT_FEATURES, DEFAULT_BATCH,
                                          args.continue_training, folders.preprocessed / raw.name, log)
        log(f"training: {args.epochs} epochs x {args.iterations} iterations on {args.device}")
        tr = train(DATASET_ID, DEFAULT_CONFIGURATION, "all", args.epochs, args.iterations, args.device,
                   continue_training=args.continue_training, progress=log, oversample_foreground=1.0,
                   optimizer="adam", initial_weights=init)
        log(f"training done: {tr.seconds:.0f} s, {tr.seconds_per_iteration:.2f} s/iteration")
        card = {
            "summary": (f"GlandSeg's lacrimal stage: one {BOX_MM:g} mm box per side at {SPACING_MM:g} mm, placed at stage "
                        "one's parotid centroid plus the offsets below. Not a standalone model: run it through a "
                        "two-stage model folder."),
            "training_data": {
                "phantoms": "GlandSegLib.defaultmodel.phantom.make_phantom_from_outlines (head field) on the `test` split of the "
                            "DeepMind TCIA head-and-neck outlines (Nikolov et al. 2018, CC BY 4.0), both raters",
                "boxes": len(infos),
                "offsets_mm": {str(k): v for k, v in offsets.items()},
                "jitter_mm": JITTER_MM,
                "seed": args.seed,
                "randomised_appearance_share": args.randomise_appearance,
                "initial_weights": args.init,
            },
            "training": {
                "command": "python -m GlandSegLib.defaultmodel.train_lacrimal " + " ".join(sys.argv[1:] if argv is None else argv),
                "trainer": "nnUNetTrainerNoMirroring (stock nnunetv2, schedule shortened, AdamW 1e-3)",
                "configuration": DEFAULT_CONFIGURATION, "fold": "all", "epochs": args.epochs,
                "iterations_per_epoch": args.iterations, "total_iterations": args.epochs * args.iterations,
                "batch_size": tr.batch_size, "oversample_foreground": 1.0, "patch_size": list(PATCH),
                "features_per_stage": list(DEFAULT_FEATURES), "spacing_mm": spacing, "device": args.device,
                "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} CPUs, torch {torch.__version__}",
                "seconds_cases": round(t_cases, 1), "seconds_plan_preprocess": round(plan_seconds, 1),
                "seconds_training": round(tr.seconds, 1), "seconds_per_iteration": _rounded(tr.seconds_per_iteration, 3),
                "final_train_loss": _rounded(tr.final_train_loss, 4),
                "final_pseudo_dice": [_rounded(d, 4) for d in tr.final_pseudo_dice],
                "resumed_from": tr.resumed_from,
                "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            "limitations": ["Learned from phantoms only: no real CT with lacrimal outlines exists here.",
                            "Needs stage one's parotid on the same side; without it that side's lacrimal is not searched."],
        }
        stage_index = {"stage": {"kind": STAGE_KIND, "anchor": "parotid", "offsets_mm": {str(k): v for k, v in offsets.items()},
                                 "box_mm": BOX_MM, "spacing_mm": SPACING_MM}}
        stage_dir = export_model(tr.output_folder, Path(args.work) / "stage_export", f"{out.name}-{STAGE_FOLDER}",
                                 fold="all", card=card, overwrite=True, index_extra=stage_index)
        dest = assemble_two_stage(base.folder, stage_dir, out, args.name or out.name, overwrite=args.overwrite)
        size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        log(f"wrote {dest} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
