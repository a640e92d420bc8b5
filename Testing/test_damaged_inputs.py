"""Inputs that lie: a truncated file, NaN voxels or one corrupt slice must be named, never segmented.

ITK's readers fill what a file does not hold with zeros, and GDCM silently drops a DICOM
slice it cannot read; these tests build damaged copies of real files in every format
GlandSeg reads, cut inside the header, in the first slices and in the last slices, and
check that every reader refuses them with the file and the damage in plain words, and
that `segment`, `batch` and `prepare` never run on partial data.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_writer import write_ct_series  # noqa: E402

from GlandSegLib.cli import main  # noqa: E402
from GlandSegLib.errors import InvalidInputError  # noqa: E402
from GlandSegLib.io.images import read_ct  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
LIBRARY_WORDS = ("itk", ".cxx", ".h:", "Exception thrown", "Traceback", "sitk")

# name -> (compress, file whose bytes are cut: the image itself or its detached data file)
FORMATS = {
    "ct.nii.gz": (True, "ct.nii.gz"),
    "ct.nii": (False, "ct.nii"),
    "gz.nrrd": (True, "gz.nrrd"),
    "raw.nrrd": (False, "raw.nrrd"),
    "det.nhdr": (True, "det.raw.gz"),
    "z.mha": (True, "z.mha"),
    "raw.mha": (False, "raw.mha"),
    "det.mhd": (False, "det.raw"),
    "zdet.mhd": (True, "zdet.zraw"),
}


@pytest.fixture(scope="module")
def sample_ct() -> sitk.Image:
    """A real file's image (the shipped sample), cut to 80 slices to keep the copies small."""
    image = sitk.ReadImage(str(SAMPLE))
    return image[:, :, 40:120]


@pytest.fixture(scope="module")
def stored(tmp_path_factory, sample_ct) -> Path:
    folder = tmp_path_factory.mktemp("formats")
    for name, (compress, _data) in FORMATS.items():
        sitk.WriteImage(sample_ct, str(folder / name), compress)
    return folder


def _damaged_copy(stored: Path, tmp_path: Path, name: str, keep: int | float) -> tuple[Path, Path]:
    """Copy one stored image (and its data file) to tmp_path, cutting the data-holding file
    to `keep` bytes (int) or to that fraction of its length (float)."""
    for f in stored.iterdir():
        if f.stem.split(".")[0] == name.split(".")[0]:
            shutil.copy(f, tmp_path / f.name)
    cut = tmp_path / FORMATS[name][1]
    data = cut.read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    cut.write_bytes(data[:n])
    return tmp_path / name, cut


def _assert_plain(message: str) -> None:
    assert not any(w.lower() in message.lower() for w in LIBRARY_WORDS), f"library text in: {message}"
    assert "\n" not in message


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_undamaged_copies_read_as_the_original(stored, sample_ct, name):
    """The control: the checks let a whole file through, with every voxel."""
    image = read_ct(stored / name).image
    assert np.array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(sample_ct))


@pytest.mark.parametrize("where", ["header", "first slices", "middle", "last slices"])
@pytest.mark.parametrize("name", sorted(FORMATS))
def test_truncated_files_are_refused_with_the_file_and_the_damage(stored, tmp_path, name, where):
    header_cut = 60 if FORMATS[name][1] == name else 1  # detached data files have no header
    keep = {"header": header_cut, "first slices": 0.05, "middle": 0.5, "last slices": 0.995}[where]
    image_path, cut = _damaged_copy(stored, tmp_path, name, keep)
    with pytest.raises(InvalidInputError) as err:
        read_ct(image_path)
    message = str(err.value)
    assert cut.name in message and ("truncated" in message or "corrupt" in message), message
    _assert_plain(message)


@pytest.mark.parametrize("name", ["ct.nii.gz", "gz.nrrd", "z.mha"])
def test_a_corrupt_byte_inside_a_compressed_stream_is_caught(stored, tmp_path, name):
    image_path, cut = _damaged_copy(stored, tmp_path, name, 1.0)
    data = bytearray(cut.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cut.write_bytes(bytes(data))
    with pytest.raises(InvalidInputError, match="corrupt"):
        read_ct(image_path)


@pytest.mark.parametrize("name,expected", [
    ("x.nii.gz", "not a compressed NIfTI file (it holds PNG data)"),
    ("x.nii", "not a NIfTI file (it holds PNG data)"),
    ("x.nrrd", "not a NRRD file (it holds PNG data)"),
    ("x.mha", "not a MetaImage file (it holds PNG data)"),
])
def test_a_png_under_an_image_name_is_named_as_png(tmp_path, name, expected):
    png = tmp_path / "picture.png"
    sitk.WriteImage(sitk.Image(16, 16, sitk.sitkUInt8), str(png))
    renamed = tmp_path / name
    shutil.copy(png, renamed)
    with pytest.raises(InvalidInputError) as err:
        read_ct(renamed)
    assert str(err.value) == f"{renamed}: {expected}"


def test_an_empty_file_is_named_as_empty(tmp_path):
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="it is empty"):
        read_ct(tmp_path / "ct.nii.gz")


def test_non_finite_voxels_are_refused_with_count_and_slices(tmp_path, sample_ct):
    arr = sitk.GetArrayFromImage(sample_ct).astype(np.float32)
    arr[10:20, 50:60, 50:60] = np.nan  # 10 slices, 100 voxels each
    arr[70, 0, 0] = np.inf
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(sample_ct)
    sitk.WriteImage(img, str(tmp_path / "nan.nrrd"))
    with pytest.raises(InvalidInputError) as err:
        read_ct(tmp_path / "nan.nrrd")
    assert "1,001 voxels are not numbers" in str(err.value) and "11 slices between 10 and 70" in str(err.value)


# ----------------------------------------------------------------------------- DICOM


@pytest.fixture(scope="module")
def dicom_series(tmp_path_factory, sample_ct) -> Path:
    folder = tmp_path_factory.mktemp("dicom") / "series"
    write_ct_series(sample_ct[:, :, :30], folder)
    return folder


def _copy_series(src: Path, dst: Path) -> list[Path]:
    shutil.copytree(src, dst)
    return sorted(dst.iterdir())


def _slice_number(path: Path) -> int:
    """1-based position of a file's slice along the slice normal (identity direction: z)."""
    import pydicom

    zs = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in path.parent.iterdir())
    return zs.index(float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])) + 1


@pytest.mark.parametrize("kind", ["pixel data cut", "header cut", "a few bytes short"])
def test_a_damaged_dicom_slice_is_named_with_its_place(dicom_series, tmp_path, kind):
    files = _copy_series(dicom_series, tmp_path / "s")
    victim = files[len(files) // 2] if kind != "a few bytes short" else files[-1]
    number = _slice_number(victim)
    data = victim.read_bytes()
    victim.write_bytes({"pixel data cut": data[: len(data) // 2], "header cut": data[:300],
                        "a few bytes short": data[:-7]}[kind])
    with pytest.raises(InvalidInputError) as err:
        read_ct(tmp_path / "s")
    message = str(err.value)
    assert f"1 of {len(files)} files cannot be read" in message and victim.name in message, message
    assert f"The other {len(files) - 1} slices are complete" in message
    if kind != "header cut":  # a header cut before the position cannot tell where the slice was
        assert f"slice {number} of {len(files)}, {victim.name}: truncated pixel data" in message, message
    _assert_plain(message)


def test_missing_slices_are_told_apart_from_unreadable_ones(dicom_series, tmp_path):
    files = _copy_series(dicom_series, tmp_path / "s")
    files[len(files) // 2].unlink()
    with pytest.raises(InvalidInputError) as err:
        read_ct(tmp_path / "s")
    assert "missing from the folder (no file holds them)" in str(err.value) and "cannot be read" not in str(err.value)


def test_real_planning_ct_with_one_truncated_slice(shared_data, tmp_path):
    """The PDDCA planning CT (107 real slices): one file cut in its pixel data."""
    files = _copy_series(shared_data / "pddca-0522c0001" / "ct-dicom", tmp_path / "ct")
    victim = files[51]
    number = _slice_number(victim)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInputError) as err:
        read_ct(tmp_path / "ct")
    assert f"slice {number} of 107, {victim.name}: truncated pixel data" in str(err.value)
    assert read_ct(shared_data / "pddca-0522c0001" / "ct-dicom").image.GetSize() == (512, 512, 107)


# ----------------------------------------------------------------------------- the commands


def test_segment_refuses_a_truncated_file_and_writes_nothing(stored, tmp_path):
    image_path, cut = _damaged_copy(stored, tmp_path, "ct.nii.gz", 0.5)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "GlandSegLib.cli", "segment", str(image_path), "-o", str(out)],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 4
    assert r.stderr.strip() == f"error: {cut}: file is truncated or corrupt (gzip stream ends early)"
    assert not out.exists()
    debug = subprocess.run([sys.executable, "-m", "GlandSegLib.cli", "--debug", "segment", str(image_path), "-o", str(out)],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
    assert debug.returncode == 4 and "Traceback" in debug.stderr  # --debug shows everything
    assert debug.stderr.strip().splitlines()[-1] == r.stderr.strip() and not out.exists()


def test_prepare_skips_a_damaged_case_and_says_why(tmp_path, capsys):
    """The rest of the cohort goes on; the damaged case is listed with the damage."""
    from cohort_helpers import cohort

    work = tmp_path / "cohort"
    for case in ("pat04", "pat05"):
        shutil.copytree(cohort() / case, work / case)
    damaged = work / "pat05" / "image.nii.gz"
    data = damaged.read_bytes()
    damaged.write_bytes(data[: len(data) * 2 // 3])
    rc = main(["prepare", str(work), "-o", str(tmp_path / "nnUNet_raw" / "Dataset990_Damaged"), "--dry-run",
               "--holdout", "0"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1 training, 0 hold-out, 1 skipped" in out
    assert f"pat05                skipped: {damaged}: file is truncated or corrupt (gzip stream ends early)" in out


def test_the_slicer_module_shows_the_same_one_line_message(stored, tmp_path):
    """The module runs the same command line and shows its error line, nothing else."""
    sys.path.insert(0, str(REPO / "GlandSeg"))
    from GlandSegSlicerLib import process

    image_path, cut = _damaged_copy(stored, tmp_path, "ct.nii.gz", 0.3)
    with pytest.raises(process.GlandSegRunError) as err:
        process.run_cli(process.segment_arguments(image_path, tmp_path / "out", device="cpu"), timeout_s=300)
    assert err.value.exit_code == 4
    assert str(err.value) == f"{cut}: file is truncated or corrupt (gzip stream ends early)"
