"""GlandSeg benchmark: wall time and peak memory per stage of `segment` on whole-body CTs.

Not a test: run it on the machine you want numbers for (`make bench`, or
`python Testing/benchmark.py --slices 1000 --repeats 3`). Writes a Markdown table and a
JSON file. Peak RSS per stage is sampled every 10 ms from /proc (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from GlandSegLib.progress import Progress  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class MeasuringProgress(Progress):
    """Progress that also records the peak RSS reached during each stage."""

    def __init__(self) -> None:
        super().__init__("none")
        self.peak_mb: dict[str, float] = {}
        self._stage = "setup"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            m = rss_mb()
            self.peak_mb[self._stage] = max(self.peak_mb.get(self._stage, 0.0), m)
            time.sleep(0.01)

    def start(self, stage: str, message: str = "") -> None:
        self._stage = stage
        super().start(stage, message)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def gpu_peak_mb() -> float | None:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
    except ImportError:
        pass
    return None


SHARED = Path(os.environ.get("GLANDSEG_SHARED", REPO.parent / "shared"))
BENCH_SCAN = SHARED / "data" / "tcia-hn-labels" / "nrrds" / "validation" / "oncologist" / "0522c0014"


def make_ct(slices: int, folder: Path) -> Path:
    """A whole-body CT around real outlines of a held-out scan (the anatomy the default model
    knows); a procedural phantom where ../shared is absent (timings alike, Dice not meaningful)."""
    from GlandSegLib.io.images import write_image_atomic
    from GlandSegLib.defaultmodel.phantom import make_phantom, make_phantom_from_outlines

    path = folder / f"wholebody_512x512x{slices}.nii"  # uncompressed: reading measures I/O, not gzip
    if path.exists():
        return path
    kw = dict(field="wholebody", spacing=(0.98, 0.98, 1.5), size_xy=512, length_mm=slices * 1.5)
    ph = make_phantom_from_outlines(BENCH_SCAN, "oncologist", 7, **kw) if BENCH_SCAN.is_dir() else make_phantom(7, **kw)
    write_image_atomic(ph.ct, path, compress=False)
    return path


def run(slices: int, repeats: int, device: str, model: str | None, work: Path, tile_step: float | None = None) -> dict:
    from GlandSegLib.segmentation.pipeline import segment

    ct_path = make_ct(slices, work)
    runs = []
    for r in range(repeats):
        prog = MeasuringProgress()
        t0 = time.perf_counter()
        result = segment(ct_path, work / f"out_{slices}_{r}", model=model, device=device, overwrite=True, progress=prog,
                         tile_step=tile_step)
        wall = time.perf_counter() - t0
        prog.close()
        runs.append({"wall_s": wall, "timings_s": dict(prog.timings), "peak_rss_mb": dict(prog.peak_mb),
                     "gpu_peak_mb": gpu_peak_mb(), "crop_box": result.report["crop_box"]})
    stages = list(runs[0]["timings_s"])
    return {
        "size": [512, 512, slices],
        "wall_s_median": statistics.median(r["wall_s"] for r in runs),
        "stage_s_median": {s: statistics.median(r["timings_s"].get(s, 0.0) for r in runs) for s in stages},
        "stage_peak_rss_mb_max": {s: max(r["peak_rss_mb"].get(s, 0.0) for r in runs) for s in stages},
        "peak_rss_mb": max(max(r["peak_rss_mb"].values()) for r in runs),
        "gpu_peak_mb": runs[-1]["gpu_peak_mb"],
        "runs": runs,
    }


OLD_BOX_MM = (600.0, 600.0, 375.0)  # the old pipeline's fixed box, centred on the skull


def compare_old_box(slices: int, device: str, model: str | None, work: Path) -> dict:
    """The same model on GlandSeg's head box and on the old pipeline's 600x600x375 mm box."""
    import numpy as np
    import SimpleITK as sitk

    from GlandSegLib.geometry import PhysicalBox, model_grid
    from GlandSegLib.glands import GLANDS
    from GlandSegLib.segmentation.headbox import locate_head
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.cohort.metrics import dice
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.pipeline import segment

    ct_path = make_ct(slices, work)
    ct = read_ct(ct_path).image
    head = locate_head(ct)
    skull = np.array(head.details.get("skull_base_lps_mm", head.center))
    half = np.array(OLD_BOX_MM) / 2
    old = PhysicalBox(skull - half, skull + half)
    predictor = GlandPredictor(load_model_info(model), device)
    spacing = predictor.info.spacing_xyz
    out: dict = {"model_spacing_mm": spacing}
    labels = {}
    for name, box in (("glandseg", None), ("old_box", old)):
        prog = MeasuringProgress()
        t0 = time.perf_counter()
        res = segment(ct_path, work / f"cmp_{name}", predictor=predictor, device=device, overwrite=True, progress=prog, box=box)
        prog.close()
        used = _used_box(res.report)
        voxels = int(np.prod(model_grid(used, spacing).GetSize()))
        out[name] = {"box_mm": [round(float(v), 1) for v in used.size], "voxels_through_network": voxels,
                     "wall_s": round(time.perf_counter() - t0, 2), "inference_s": prog.timings.get("inference"),
                     "peak_rss_mb": round(max(prog.peak_mb.values()), 1)}
        labels[name] = sitk.GetArrayFromImage(res.labels)
    out["voxel_ratio"] = round(out["old_box"]["voxels_through_network"] / out["glandseg"]["voxels_through_network"], 2)
    # the old pipeline's box in full (it reaches beyond this scan's 502 mm field of view)
    out["old_box_nominal_voxels"] = int(np.prod(model_grid(old, spacing).GetSize()))
    out["voxel_ratio_nominal"] = round(out["old_box_nominal_voxels"] / out["glandseg"]["voxels_through_network"], 2)
    out["dice_glandseg_vs_old_box"] = {g.key: dice(labels["glandseg"] == g.label, labels["old_box"] == g.label) for g in GLANDS}
    return out


def compare_tile_steps(slices: int, steps: list[float], device: str, model: str | None, work: Path) -> dict:
    """Inference time and agreement between sliding-window steps (the first is the reference)."""
    import SimpleITK as sitk

    from GlandSegLib.geometry import model_grid
    from GlandSegLib.glands import GLANDS
    from GlandSegLib.segmentation.inference import GlandPredictor
    from GlandSegLib.cohort.metrics import dice
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.pipeline import segment

    ct_path = make_ct(slices, work)
    info = load_model_info(model)
    rows, labels = [], {}
    for step in steps:
        predictor = GlandPredictor(info, device, tile_step_size=step)
        prog = MeasuringProgress()
        res = segment(ct_path, work / f"step_{step}", predictor=predictor, overwrite=True, progress=prog)
        prog.close()
        labels[step] = sitk.GetArrayFromImage(res.labels)
        shape_zyx = tuple(int(v) for v in reversed(model_grid(_used_box(res.report), info.spacing_xyz).GetSize()))
        rows.append({"tile_step": step, "tiles": predictor.n_tiles(shape_zyx),
                     "inference_s": round(prog.timings["inference"], 2), "peak_rss_mb": round(max(prog.peak_mb.values()), 1)})
    ref = steps[0]
    for row in rows:
        row["dice_vs_step_" + str(ref)] = {g.key: dice(labels[row["tile_step"]] == g.label, labels[ref] == g.label) for g in GLANDS}
    return {"slices": slices, "rows": rows}


def _used_box(report: dict):
    """The head box a `segment` run used, from its report."""
    from GlandSegLib.geometry import PhysicalBox

    return PhysicalBox(report["crop_box"]["lower_lps_mm"], report["crop_box"]["upper_lps_mm"])


def markdown(results: list[dict], machine: str) -> str:
    stages = list(results[0]["stage_s_median"])
    head = "| CT | " + " | ".join(stages) + " | total | peak RSS |\n|---|" + "---|" * (len(stages) + 2) + "\n"
    rows = []
    for r in results:
        cells = [f"{r['stage_s_median'][s]:.2f} s / {r['stage_peak_rss_mb_max'][s] / 1024:.2f} GB" for s in stages]
        rows.append(f"| {'x'.join(map(str, r['size']))} | " + " | ".join(cells) + f" | **{r['wall_s_median']:.1f} s** | {r['peak_rss_mb'] / 1024:.2f} GB |")
    return f"Measured on {machine}; median of runs, per stage: wall time / peak RSS during the stage.\n\n" + head + "\n".join(rows) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, nargs="+", default=[300, 1000, 1500])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=str(REPO / "out" / "bench"))
    ap.add_argument("--compare-old-box", action="store_true", help="also run the old pipeline's 600x600x375 mm box on 512x512x1000")
    ap.add_argument("--tile-step", type=float, default=None, help="sliding-window step for the main table (default: the device's)")
    ap.add_argument("--compare-tile-steps", type=float, nargs="+", default=None, metavar="STEP",
                    help="also time these steps on 512x512x1000 and give each one's Dice against the first")
    args = ap.parse_args()
    import torch

    machine = f"{platform.node() or 'unknown'}: {os.cpu_count()} CPU cores, torch {torch.__version__}, " + (
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="glandseg-bench-") as tmp:
        for n in args.slices:
            res = run(n, args.repeats, args.device, args.model, Path(tmp), args.tile_step)
            results.append(res)
            print(f"512x512x{n}: {res['wall_s_median']:.1f} s, peak RSS {res['peak_rss_mb'] / 1024:.2f} GB", flush=True)
        comparison = compare_old_box(1000, args.device, args.model, Path(tmp)) if args.compare_old_box else None
        steps = compare_tile_steps(1000, args.compare_tile_steps, args.device, args.model, Path(tmp)) if args.compare_tile_steps else None
    (out / "benchmark.json").write_text(json.dumps({"machine": machine, "tile_step": args.tile_step, "results": results,
                                                    "old_box_comparison": comparison, "tile_steps": steps}, indent=2))
    table = markdown(results, machine)
    if steps:
        ref = steps["rows"][0]["tile_step"]
        table += "\n| tile step | tiles | inference | peak RSS | Dice vs step " + str(ref) + " (min over glands found) |\n|---|---|---|---|---|\n"
        for row in steps["rows"]:
            found = [v for v in row["dice_vs_step_" + str(ref)].values() if v is not None]
            table += (f"| {row['tile_step']} | {row['tiles']} | {row['inference_s']:.1f} s | {row['peak_rss_mb'] / 1024:.2f} GB | "
                      f"{min(found):.3f} |\n" if found else "n/a |\n")
    if comparison:
        g, o = comparison["glandseg"], comparison["old_box"]
        table += ("\n| box | size (mm) | voxels through the network | inference | total | peak RSS |\n|---|---|---|---|---|---|\n"
                  f"| GlandSeg head box | {' x '.join(map(str, g['box_mm']))} | {g['voxels_through_network']:,} | {g['inference_s']:.1f} s | {g['wall_s']:.1f} s | {g['peak_rss_mb'] / 1024:.2f} GB |\n"
                  f"| old pipeline box | {' x '.join(map(str, o['box_mm']))} | {o['voxels_through_network']:,} | {o['inference_s']:.1f} s | {o['wall_s']:.1f} s | {o['peak_rss_mb'] / 1024:.2f} GB |\n\n"
                  f"The old box, clipped to this scan, sends {comparison['voxel_ratio']}x more voxels through the network "
                  f"({comparison['voxel_ratio_nominal']}x for the full 600 x 600 x 375 mm box). Dice between the two results: "
                  + ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a" for k, v in comparison["dice_glandseg_vs_old_box"].items()) + ".\n")
    (out / "benchmark.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
