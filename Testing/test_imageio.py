"""Reading CTs: every format, DICOM series choice, and a clear refusal of bad input."""

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.errors import InputNotFoundError, InvalidInputError, SeriesChoiceError
from GlandSegLib.io.images import find_dicom_series, read_ct, write_image_atomic

from dicom_writer import write_ct_series


def _ct(size=(32, 28, 12), spacing=(1.2, 1.2, 2.5), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)):
    rng = np.random.default_rng(1)
    a = np.full(size[::-1], -1000, np.int16)
    a[:, 6:22, 6:26] = rng.integers(0, 80, size=(size[2], 16, 20))
    a[:, 10:14, 10:14] = 1200
    img = sitk.GetImageFromArray(a)
    img.SetSpacing(spacing)
    img.SetOrigin((-20.0, 15.5, -300.0))
    img.SetDirection(direction)
    return img


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_volume_formats_read_with_geometry(tmp_path, suffix):
    img = _ct()
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(img, str(path))
    before = path.read_bytes()
    ct = read_ct(path).image
    assert ct.GetPixelID() == sitk.sitkInt16
    assert np.allclose(ct.GetSpacing(), img.GetSpacing()) and np.allclose(ct.GetOrigin(), img.GetOrigin(), atol=1e-3)
    assert np.array_equal(sitk.GetArrayViewFromImage(ct), sitk.GetArrayViewFromImage(img))
    assert path.read_bytes() == before  # the input is never modified


def test_float_ct_is_rounded_to_int16(tmp_path):
    img = sitk.Cast(_ct(), sitk.sitkFloat32) + 0.4
    sitk.WriteImage(img, str(tmp_path / "f.nrrd"))
    ct = read_ct(tmp_path / "f.nrrd").image
    assert ct.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(_ct()))


def test_dicom_series_reads_with_lps_geometry(tmp_path):
    img = _ct(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_ct_series(img, tmp_path / "dcm")
    loaded = read_ct(tmp_path / "dcm")
    assert loaded.series is not None and loaded.series.modality == "CT"
    assert np.allclose(loaded.image.GetOrigin(), img.GetOrigin(), atol=1e-3)
    assert np.allclose(loaded.image.GetSpacing(), img.GetSpacing(), atol=1e-3)
    assert np.array_equal(sitk.GetArrayViewFromImage(loaded.image), sitk.GetArrayViewFromImage(img))


@pytest.mark.parametrize("representation,intercept,slope,bits", [
    (0, -1024.0, 1.0, 12),  # unsigned 12-bit, the most common scanner storage
    (0, -1000.0, 1.0, 16),  # unsigned, another intercept
    (1, -1024.0, 1.0, 16),  # signed, shifted
    (1, -3000.0, 1.0, 16),  # signed, a large intercept
    (0, -1024.0, 0.5, 16),  # a slope: HU = stored / 2 - 1024
])
def test_dicom_rescale_and_pixel_representation_give_the_same_hu(tmp_path, representation, intercept, slope, bits):
    """Scanners store CT pixels unsigned or signed with their own intercept (and sometimes a
    slope); every combination must read back as the same Hounsfield units, air to bone."""
    img = _ct()
    a = sitk.GetArrayFromImage(img)
    a[0, 0, :4] = [-1000, 0, 1, 3071]  # air, water, one HU, the top of the HU range
    img2 = sitk.GetImageFromArray(a)
    img2.CopyInformation(img)
    write_ct_series(img2, tmp_path / "dcm", pixel_representation=representation, rescale_intercept=intercept,
                    rescale_slope=slope, bits_stored=bits)
    import pydicom

    first = pydicom.dcmread(sorted((tmp_path / "dcm").iterdir())[0])
    assert (first.PixelRepresentation, float(first.RescaleIntercept), float(first.RescaleSlope)) == (representation, intercept, slope)
    assert int(first.pixel_array.min()) >= 0 or representation == 1  # truly stored unsigned
    loaded = read_ct(tmp_path / "dcm")
    assert loaded.image.GetPixelID() == sitk.sitkInt16
    assert np.array_equal(sitk.GetArrayViewFromImage(loaded.image), a)


def test_several_ct_series_need_a_choice(tmp_path):
    img = _ct()
    a = write_ct_series(img, tmp_path / "study" / "a", description="soft tissue")
    b = write_ct_series(img, tmp_path / "study" / "b", description="bone")
    assert {s.uid for s in find_dicom_series(tmp_path / "study")} == {a, b}
    with pytest.raises(SeriesChoiceError) as err:
        read_ct(tmp_path / "study")
    assert a in str(err.value) and b in str(err.value) and "--series" in str(err.value)
    assert read_ct(tmp_path / "study", series_uid=b).series.uid == b
    with pytest.raises(SeriesChoiceError):
        read_ct(tmp_path / "study", series_uid="1.2.3.4")


def test_non_ct_modality_is_refused(tmp_path):
    write_ct_series(_ct(), tmp_path / "mr", modality="MR")
    with pytest.raises(InvalidInputError, match="no CT series"):
        read_ct(tmp_path / "mr")


@pytest.mark.parametrize("kind", ["missing", "duplicate"])
def test_inconsistent_dicom_slices_are_refused(tmp_path, kind):
    kwargs = {"skip_slices": (5,)} if kind == "missing" else {"duplicate_slice": 3}
    write_ct_series(_ct(), tmp_path / "bad", **kwargs)
    with pytest.raises(InvalidInputError, match="uneven slice spacing" if kind == "missing" else "duplicate"):
        read_ct(tmp_path / "bad")


def test_gantry_tilt_is_read_onto_a_regular_grid(tmp_path):
    """A sheared series (0.9 mm along y per 2.5 mm slice) is regularised, not refused: slice k
    keeps its pixels, moved 0.75 pixel per slice within its plane onto a grid that covers all
    slices; the tilt and a warning come with it (Testing/test_tilted_dicom.py: real CTs)."""
    img = _ct()
    write_ct_series(img, tmp_path / "tilt", tilt_mm_per_slice=0.9)
    loaded = read_ct(tmp_path / "tilt")
    assert loaded.tilt_deg == pytest.approx(np.degrees(np.arctan(0.9 / 2.5)), abs=1e-9)
    assert len(loaded.warnings) == 1 and "gantry-tilted" in loaded.warnings[0]
    reg = loaded.image
    assert reg.GetSize() == (32, 28 + 9, 12)  # 11 slices x 0.75 pixel = 8.25 more rows, rounded up
    assert np.allclose(reg.GetOrigin(), img.GetOrigin()) and np.allclose(reg.GetSpacing(), img.GetSpacing())
    a, got = sitk.GetArrayFromImage(img), sitk.GetArrayFromImage(reg)
    assert np.array_equal(got[0, :28], a[0])  # slice 0 is where the series starts: not moved
    k = 4  # 3 whole pixels: an exact copy, 3.6 mm further along y
    assert np.array_equal(got[k, 3:31], a[k])
    write_ct_series(img, tmp_path / "plain")
    plain = read_ct(tmp_path / "plain")
    assert plain.tilt_deg is None and plain.warnings == []


def test_bad_inputs_get_one_line_errors(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_ct(tmp_path / "nope.nii.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no DICOM series"):
        read_ct(tmp_path / "empty")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "x.dcm").write_bytes(b"DICM" * 100)
    with pytest.raises(InvalidInputError):
        read_ct(tmp_path / "corrupt")
    (tmp_path / "junk.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InvalidInputError) as err:
        read_ct(tmp_path / "junk.nii.gz")
    assert "\n" not in str(err.value)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match="unsupported"):
        read_ct(tmp_path / "notes.txt")


def test_2d_image_is_refused(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((20, 20), np.int16) - 1000), str(tmp_path / "a.nrrd"))
    with pytest.raises(InvalidInputError, match="3D"):
        read_ct(tmp_path / "a.nrrd")
    flat = _ct(size=(32, 28, 1))
    sitk.WriteImage(flat, str(tmp_path / "b.nrrd"))
    with pytest.raises(InvalidInputError, match="3D"):
        read_ct(tmp_path / "b.nrrd")


def test_mr_like_intensities_are_refused(tmp_path):
    mr = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 1200, (12, 28, 32)).astype(np.int16))
    sitk.WriteImage(mr, str(tmp_path / "mr.nii.gz"))
    with pytest.raises(InvalidInputError, match="do not look like a CT"):
        read_ct(tmp_path / "mr.nii.gz")


def test_bad_header_geometry_is_refused(tmp_path):
    path = tmp_path / "neg.nhdr"
    sitk.WriteImage(_ct(), str(path))
    text = path.read_text().replace("space directions: (1.2", "space directions: (-0.0")
    path.write_text(text)
    with pytest.raises(InvalidInputError):
        read_ct(path)
    huge = tmp_path / "huge.nhdr"
    sitk.WriteImage(_ct(), str(huge))
    huge.write_text(huge.read_text().replace("sizes: 32 28 12", "sizes: 100000 100000 100000"))
    with pytest.raises(InvalidInputError, match="beyond any CT|cannot read"):
        read_ct(huge)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    write_image_atomic(_ct(), tmp_path / "out" / "x.nii.gz")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["x.nii.gz"]


def test_atomic_write_gives_ordinary_permissions(tmp_path):
    import os
    import stat

    write_image_atomic(_ct(), tmp_path / "y.nrrd")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "y.nrrd").stat().st_mode) == 0o666 & ~mask


def test_non_orthonormal_direction_is_refused(tmp_path):
    path = tmp_path / "skew.nhdr"
    sitk.WriteImage(_ct(), str(path))
    text = path.read_text()
    start = text.index("space directions:")
    end = text.index("\n", start)
    path.write_text(text[:start] + "space directions: (1.2,0,0) (1.2,1.2,0) (0,0,2.5)" + text[end:])
    with pytest.raises(InvalidInputError, match="orthonormal"):
        read_ct(path)


def test_mixed_slice_orientations_are_refused(tmp_path):
    import pydicom

    folder = tmp_path / "mixed"
    write_ct_series(_ct(), folder)
    f = sorted(folder.iterdir())[4]
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(f)
    with pytest.raises(InvalidInputError, match="orientation"):
        read_ct(folder)
