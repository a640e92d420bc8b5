"""`--locator totalsegmentator`: the head box from TotalSegmentator's skull mask.

* box_from_skull, the step that turns a skull mask into the head box, on a synthetic skull
  (a cranial shell and a mandible-like arch) stored LPS, RAS and oblique; the expected box
  is computed here with numpy from the mask's physical voxel positions.
* The subprocess protocol (the CT written with its geometry, the arguments, skull.nii.gz
  read back, failures named) with a stand-in executable that thresholds bone: the real
  program needs weights that are downloaded once by the user, never by GlandSeg.
* The real TotalSegmentator on the sample CT where its `total --fast` weights are
  installed; skipped, with the reason, where they are not.
* Missing weights through the command line: exit code 9 and one line naming the fix.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import require

from GlandSegLib.errors import DependencyError, NoHeadError
from GlandSegLib.segmentation import totalseg
from GlandSegLib.segmentation.headbox import DEPTH_MM, HALF_WIDTH_MM
from GlandSegLib.segmentation.totalseg import FAST_TOTAL_DATASET, box_from_skull, locate_head_totalsegmentator

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"


def synthetic_skull(centre=(12.0, -20.0, 40.0)) -> tuple[sitk.Image, sitk.Image]:
    """(CT-like image, skull mask) on a 2 mm LPS grid: a 6 mm cranial shell around `centre` and
    a mandible arch in front of and below it; the image reaches 150 mm below the cranium."""
    sp = 2.0
    size = np.array([110, 120, 170])  # x, y, z voxels
    origin = np.array(centre) - np.array([110.0, 120.0, 240.0])
    z, y, x = np.indices(size[::-1]).astype(float)
    px, py, pz = origin[0] + x * sp - centre[0], origin[1] + y * sp - centre[1], origin[2] + z * sp - centre[2]
    r = np.sqrt((px / 70.0) ** 2 + (py / 85.0) ** 2 + (pz / 75.0) ** 2)
    shell = (r <= 1.0) & (r >= 1.0 - 6.0 / 75.0) & (pz > -30.0)
    arch = (np.abs(np.sqrt((px / 45.0) ** 2 + ((py + 20.0) / 60.0) ** 2) - 1.0) < 0.1) & (py < -20.0) & (pz > -95.0) & (pz < -80.0)
    mask = (shell | arch).astype(np.uint8)
    ct = np.where(mask > 0, 900, 30).astype(np.int16)
    out = []
    for a in (ct, mask):
        img = sitk.GetImageFromArray(a)
        img.SetSpacing((sp, sp, sp))
        img.SetOrigin([float(v) for v in origin])
        out.append(img)
    return out[0], out[1]


def expected_box(skull: sitk.Image, image: sitk.Image) -> tuple[np.ndarray, np.ndarray, float]:
    """The documented rule, in numpy: centre x of the skull +- HALF_WIDTH_MM; from 8 mm in front
    of its most anterior point, DEPTH_MM deep; from 60 mm below its lowest point up to its top,
    at most 170 mm above that lowest point; clipped to the image."""
    mask = sitk.GetArrayViewFromImage(skull) > 0
    idx = np.argwhere(mask)[:, ::-1].astype(float)
    d = np.array(skull.GetDirection()).reshape(3, 3)
    pts = np.array(skull.GetOrigin()) + (idx * np.array(skull.GetSpacing())) @ d.T
    cx = pts[:, 0].mean()
    z_low, y_front = pts[:, 2].min(), pts[:, 1].min() - 8.0
    lower = np.array([cx - HALF_WIDTH_MM, y_front, z_low - 60.0])
    upper = np.array([cx + HALF_WIDTH_MM, y_front + DEPTH_MM, min(pts[:, 2].max(), z_low + 170.0)])
    corners = np.array([image.TransformContinuousIndexToPhysicalPoint([float(c) for c in corner]) for corner in
                        np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in image.GetSize()], indexing="ij")).reshape(3, -1).T])
    return np.maximum(lower, corners.min(0)), np.minimum(upper, corners.max(0)), float(cx)


@pytest.mark.parametrize("grid", ["lps", "ras", "oblique10"])
def test_box_from_skull_follows_the_rule_on_any_storage(grid):
    from GlandSegLib.defaultmodel.phantom import reorient

    ct, skull = synthetic_skull()
    ct, skull = reorient(ct, grid), reorient(skull, grid, is_label=True)
    box = box_from_skull(skull, ct)
    lower, upper, cx = expected_box(skull, ct)
    assert box.method == "totalsegmentator"
    assert box.midline_x == pytest.approx(cx, abs=0.01)
    # box_from_skull takes extremes from a subsample of at most ~5000 mask voxels: within 2 mm
    assert np.allclose(box.lower, lower, atol=2.0), (box.lower, lower)
    assert np.allclose(box.upper, upper, atol=2.0), (box.upper, upper)


def test_the_box_is_clipped_to_the_image_and_an_empty_mask_is_no_head():
    ct, skull = synthetic_skull()
    cut = ct[:, :, 60:]  # the scan starts 20 mm below the mandible: the 60 mm margin below is cut
    box = box_from_skull(skull[:, :, 60:], cut)
    assert box.lower[2] == pytest.approx(cut.GetOrigin()[2] - 1.0, abs=1e-6)  # half a 2 mm voxel below the first slice
    empty = sitk.Image(skull.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(skull)
    with pytest.raises(NoHeadError, match="no skull"):
        box_from_skull(empty, ct)


# ----------------------------------------------------------------------------- the subprocess

STAND_IN = """#!{python}
# Stand-in for the TotalSegmentator command: the same arguments, the skull as bone > 300 HU.
import sys
from pathlib import Path
import SimpleITK as sitk
args = sys.argv[1:]
expected = ["--fast", "--roi_subset", "skull", "--quiet"]
if args[-4:] != expected or args[0] != "-i" or args[2] != "-o":
    sys.exit("unexpected arguments: " + " ".join(args))
if {fail!r}:
    print("loading weights...", file=sys.stderr)
    print("RuntimeError: out of memory", file=sys.stderr)
    sys.exit(1)
ct = sitk.ReadImage(args[1])
out = Path(args[3])
out.mkdir(parents=True)
sitk.WriteImage(sitk.Cast(ct > 300, sitk.sitkUInt8), str(out / "skull.nii.gz"))
"""


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    def install(fail: bool = False) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        exe = bin_dir / "TotalSegmentator"
        exe.write_text(STAND_IN.format(python=sys.executable, fail=fail))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        weights = tmp_path / "weights"
        (weights / FAST_TOTAL_DATASET).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(weights))
        return exe
    return install


def test_the_skull_mask_comes_back_on_the_input_geometry(stand_in):
    """RAS storage: the CT must reach the program with its geometry, and the mask come back with it."""
    from GlandSegLib.defaultmodel.phantom import reorient

    stand_in()
    ct, _ = synthetic_skull()
    ct = reorient(ct, "ras")
    box = locate_head_totalsegmentator(ct)
    direct = box_from_skull(sitk.Cast(ct > 300, sitk.sitkUInt8), ct)
    assert np.allclose(box.lower, direct.lower) and np.allclose(box.upper, direct.upper)
    assert box.midline_x == pytest.approx(direct.midline_x)


def test_a_failing_run_is_named_with_its_last_line(stand_in):
    stand_in(fail=True)
    ct, _ = synthetic_skull()
    with pytest.raises(DependencyError, match="TotalSegmentator failed: RuntimeError: out of memory"):
        locate_head_totalsegmentator(ct)


def test_missing_weights_are_exit_code_9_with_the_download_command(tmp_path, monkeypatch):
    from GlandSegLib.cli import main

    require("totalsegmentator", "the [test] extra installs TotalSegmentator")
    assert totalseg.find_executable() is not None
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "no-weights"))
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["segment", str(SAMPLE), "-o", str(tmp_path / "out"), "--locator", "totalsegmentator", "--progress", "none"])
    lines = err.getvalue().strip().splitlines()
    assert rc == 9 and len(lines) == 1, err.getvalue()
    assert "totalseg_download_weights -t total_fast" in lines[0] and "--locator fast" in lines[0]
    assert not (tmp_path / "out" / "report.json").exists()


def test_the_installed_program_is_found_without_an_activated_environment(monkeypatch):
    """`.venv/bin/glandseg` run without activating the environment (and Slicer's Python) has no
    console-script folder on PATH: TotalSegmentator installed beside GlandSeg must still be found."""
    import sysconfig

    require("totalsegmentator", "the [test] extra installs TotalSegmentator")
    beside = Path(sysconfig.get_path("scripts")) / ("TotalSegmentator.exe" if os.name == "nt" else "TotalSegmentator")
    assert beside.is_file(), f"pip put no TotalSegmentator command in {beside.parent}"
    monkeypatch.setenv("PATH", os.defpath)
    assert totalseg.find_executable() == str(beside)


def test_the_real_totalsegmentator_box_holds_every_gland_of_the_sample():
    exe = totalseg.find_executable()
    if exe is None or not (totalseg.weights_folder() / FAST_TOTAL_DATASET).is_dir():
        pytest.skip(f"TotalSegmentator's 'total --fast' weights are not in {totalseg.weights_folder()} "
                    "(`totalseg_download_weights -t total_fast` installs them; GlandSeg never downloads)")
    ct = sitk.ReadImage(str(SAMPLE))
    labels = sitk.ReadImage(str(SAMPLE_LABELS))
    box = locate_head_totalsegmentator(ct)
    arr = sitk.GetArrayViewFromImage(labels)
    pts = np.array(labels.GetOrigin()) + np.argwhere(arr > 0)[:, ::-1] * np.array(labels.GetSpacing())
    assert np.all(pts >= box.lower - 1e-6) and np.all(pts <= box.upper + 1e-6)
    xs = [pts[(arr[arr > 0] == v)][:, 0].mean() for v in (3, 4)]
    assert abs(box.midline_x - float(np.mean(xs))) < 10.0
