"""Optional head locator from TotalSegmentator's skull mask, run in a subprocess.

A subprocess because importing TotalSegmentator monkey-patches nnU-Net's predictor and
its run overwrites the nnUNet_* environment variables. Its weights are downloaded only
when the user runs `totalseg_download_weights` themselves; GlandSeg never triggers a
download, and refuses clearly when they are missing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.errors import DependencyError, NoHeadError
from GlandSegLib.geometry import centroid_lps
from GlandSegLib.segmentation.headbox import DEPTH_MM, HALF_WIDTH_MM, HeadBox, _clip

FAST_TOTAL_DATASET = "Dataset297_TotalSegmentator_total_3mm_1559subj"


def weights_folder() -> Path:
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    home = Path(os.environ.get("TOTALSEG_HOME_DIR", Path.home() / ".totalsegmentator"))
    return home / "nnunet" / "results"


def find_executable() -> str | None:
    """The TotalSegmentator command: on PATH, or among this Python's own console scripts, where
    pip put it beside GlandSeg (a virtual environment that is not activated, Slicer's Python)."""
    return shutil.which("TotalSegmentator") or shutil.which("TotalSegmentator", path=sysconfig.get_path("scripts"))


def locate_head_totalsegmentator(image: sitk.Image, timeout_s: int = 1800) -> HeadBox:
    exe = find_executable()
    if exe is None:
        raise DependencyError("TotalSegmentator is not installed (pip install TotalSegmentator)")
    if not (weights_folder() / FAST_TOTAL_DATASET).is_dir():
        raise DependencyError(
            f"TotalSegmentator's 'total --fast' weights are not installed in {weights_folder()}; "
            "download them once with `totalseg_download_weights -t total_fast` (needs network), or use --locator fast")
    with tempfile.TemporaryDirectory(prefix="glandseg-ts-") as tmp:
        src = Path(tmp) / "ct.nii.gz"
        sitk.WriteImage(image, str(src))
        out = Path(tmp) / "seg"
        cmd = [exe, "-i", str(src), "-o", str(out), "--fast", "--roi_subset", "skull", "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not (out / "skull.nii.gz").is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise DependencyError(f"TotalSegmentator failed: {tail[0][:200]}")
        skull = sitk.ReadImage(str(out / "skull.nii.gz"))
    return box_from_skull(skull, image)


def box_from_skull(skull: sitk.Image, image: sitk.Image) -> HeadBox:
    """The skull mask spans mandible to vertex: the glands lie from 60 mm below its lowest
    point (submandibular) to 170 mm above it (lacrimal)."""
    arr = sitk.GetArrayViewFromImage(skull) > 0
    if arr.sum() < 100:
        raise NoHeadError("TotalSegmentator found no skull in this image")
    idx = np.argwhere(arr)
    pts = np.array([skull.TransformContinuousIndexToPhysicalPoint([float(i[2]), float(i[1]), float(i[0])]) for i in idx[:: max(1, len(idx) // 5000)]])
    c = centroid_lps(arr, skull)
    z_low = float(pts[:, 2].min())
    y_front = float(pts[:, 1].min()) - 8.0
    lower = np.array([c[0] - HALF_WIDTH_MM, y_front, z_low - 60.0])
    upper = np.array([c[0] + HALF_WIDTH_MM, y_front + DEPTH_MM, min(float(pts[:, 2].max()), z_low + 170.0)])
    return _clip(HeadBox(lower, upper, midline_x=float(c[0]), method="totalsegmentator"), image)
