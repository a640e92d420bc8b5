"""`glandseg compare`: a correction measured, on segmentations whose answer is known by construction.

The added path length (APL) is checked against outlines whose length is known analytically
(a rectangular bump on anisotropic pixels, a slice added or removed), for invariance
under how the same anatomy is stored (flipped, permuted) and under mirroring the patient,
and on real outlines (the sample's expert glands, the PDDCA experts' glands).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.cli import main
from GlandSegLib.cohort.compare import compare, compare_images, compare_segmentations, read_seg_nrrd
from GlandSegLib.cohort.metrics import SURFACE_TOLERANCE_MM
from GlandSegLib.cohort.pathlength import added_path_length, axial_axis
from GlandSegLib.errors import InvalidInputError
from GlandSegLib.glands import BY_KEY, GLANDS

REPO = Path(__file__).resolve().parents[1]
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"
SX, SY, SZ = 0.7, 1.3, 2.0  # anisotropic pixels: a length counted in pixels would be wrong in mm
TOL = 2.0


def image(arr: np.ndarray, spacing=(SX, SY, SZ), origin=(-20.0, 10.0, -50.0), direction=None) -> sitk.Image:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(direction)
    return img


def corner_cut(sx: float = SX, sy: float = SY) -> float:
    """Length a contour loses at one convex pixel corner: the 0.5 iso-line cuts it diagonally."""
    return sx / 2 + sy / 2 - math.hypot(sx / 2, sy / 2)


def rectangle_perimeter(columns: int, rows: int) -> float:
    return 2 * (columns * SX + rows * SY) - 4 * corner_cut()


def block() -> np.ndarray:
    """A 40 x 20 pixel rectangle (28 x 26 mm) on slices 1-3 of 5."""
    a = np.zeros((5, 60, 90), bool)
    a[1:4, 20:40, 20:60] = True
    return a


def sample_labels() -> sitk.Image:
    return sitk.ReadImage(str(SAMPLE_LABELS))


def gland_box(labels: sitk.Image, margin: int = 2) -> sitk.Image:
    """The label map cropped to its glands, as Slicer and GlandSeg's .seg.nrrd crop it."""
    idx = np.argwhere(sitk.GetArrayViewFromImage(labels) > 0)
    lo = np.maximum(idx.min(axis=0) - margin, 0)[::-1]
    hi = np.minimum(idx.max(axis=0) + margin + 1, sitk.GetArrayViewFromImage(labels).shape)[::-1]
    return sitk.RegionOfInterest(labels, [int(v) for v in hi - lo], [int(v) for v in lo])


def edited(labels: sitk.Image) -> sitk.Image:
    """The sample's expert glands as a user might correct them: the right parotid loses its top
    slice, a 6 x 8 mm block is painted onto the right submandibular gland, the right lacrimal
    gland is shifted 4 mm laterally on its middle slice."""
    a = sitk.GetArrayFromImage(labels)
    z = np.nonzero((a == 3).any(axis=(1, 2)))[0]
    a[z.max()][a[z.max()] == 3] = 0
    k = int(np.median(np.nonzero((a == 5).any(axis=(1, 2)))[0]))
    ys, xs = np.nonzero(a[k] == 5)
    y0, x0 = int(ys.min()), int(xs[ys == ys.min()].min())
    a[k, y0 - 6:y0, x0:x0 + 8][a[k, y0 - 6:y0, x0:x0 + 8] == 0] = 5
    k = int(np.median(np.nonzero((a == 1).any(axis=(1, 2)))[0]))
    moved = np.roll(a[k] == 1, -4, axis=1)  # smaller x: the patient's right, lateral for the right gland
    a[k][a[k] == 1] = 0
    a[k][moved & (a[k] == 0)] = 1
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(labels)
    return out


def rows_by_key(rows: list[dict]) -> dict[str, dict]:
    return {r["gland"]: r for r in rows}


# --------------------------------------------------------------------------- APL, analytically


def test_untouched_glands_have_apl_exactly_zero():
    labels = sample_labels()  # real expert outlines
    rows = compare_segmentations(labels, sitk.Image(labels))
    assert len(rows) == 6
    for r in rows:
        assert r["status"] == "unchanged" and r["apl_mm"] == 0.0 and r["apl_slices"] == 0
        assert r["dice"] == 1.0 and r["hd95_mm"] == 0.0 and r["surface_dice"] == 1.0 and r["volume_change_ml"] == 0.0
        assert r["original_contour_mm"] == r["corrected_contour_mm"] > 100


@pytest.mark.parametrize("side", ["top", "right"])
def test_a_bump_adds_its_outer_outline_beyond_the_tolerance(side):
    """A rectangular bump of height H (outwards) and width W on one slice: the user drew its
    top (W) and the parts of its sides farther than the tolerance (H - tol each), less the two
    convex corners the iso-line cuts; analytic to the piece size (a quarter of 0.7 mm)."""
    o = block()
    c = o.copy()
    if side == "top":  # 10 rows (13 mm) outwards along y, 10 columns (7 mm) wide
        c[2, 10:20, 30:40] = True
        height, width = 10 * SY, 10 * SX
    else:  # 15 columns (10.5 mm) outwards along x, 10 rows (13 mm) wide
        c[2, 25:35, 60:75] = True
        height, width = 15 * SX, 10 * SY
    ref = image(o)
    result = added_path_length(o, c, ref, TOL)
    exact = width + 2 * (height - TOL) - 2 * corner_cut()
    assert result.apl_mm == pytest.approx(exact, abs=0.01)  # top: 28.48 mm, right: 29.48 mm
    assert result.apl_mm == pytest.approx(width + 2 * (height - TOL), abs=1.0)  # the textbook figure, corners aside
    assert result.slices_with_added_path == 1
    assert result.original_mm == pytest.approx(3 * rectangle_perimeter(40, 20), abs=1e-9)
    zero = added_path_length(o, c, ref, 0.0)  # no tolerance: the whole bump outline and its base corners count
    assert zero.apl_mm > result.apl_mm + 2 * TOL - 0.5


def test_tolerance_decides_whether_a_moved_edge_counts():
    o = block()
    c = o.copy()
    c[2] = np.roll(o[2], 2, axis=1)  # 1.4 mm along x: within 2 mm
    ref = image(o)
    assert added_path_length(o, c, ref, TOL).apl_mm == 0.0
    within = compare_images(image(o * 3), image(c * 3)).rows[2]  # as the right parotid (tolerance 2.85 mm)
    assert within["status"] == "edited" and within["apl_mm"] == 0.0 and within["dice"] < 1.0
    far = o.copy()
    far[2] = np.roll(o[2], 6, axis=1)  # 4.2 mm along x, beyond 2 mm
    r = added_path_length(o, far, ref, TOL)
    # counted: the new right side with its two cut corners; the new left side (the eraser's
    # edge, 4.2 mm inside) less 2 mm at each end, where the old top and bottom edges are
    # near; the top and bottom edges' 5.5 new pixels less where they are within 2 mm of the
    # old corner (half a row above it: sqrt(2^2 - 0.65^2) mm)
    right = 19 * SY + 2 * math.hypot(SX / 2, SY / 2)
    left = 20 * SY - 2 * TOL
    ends = 2 * (5.5 * SX - math.sqrt(TOL ** 2 - (SY / 2) ** 2))
    assert r.apl_mm == pytest.approx(right + left + ends, abs=0.01)  # 52.1 mm
    assert added_path_length(o, c, ref, 0.0).apl_mm > 0  # with no tolerance even 1.4 mm counts


def test_a_slice_added_counts_its_whole_outline_a_slice_removed_counts_nothing():
    o = block()
    grown = o.copy()
    grown[4] = o[3]
    r = rows_by_key(compare_images(image(o * 4), image(grown * 4)).rows)["parotid_l"]
    assert r["status"] == "edited" and r["apl_slices"] == 1
    assert r["apl_mm"] == pytest.approx(rectangle_perimeter(40, 20), abs=0.1)  # 88.6 mm: the user drew it all
    assert r["volume_change_ml"] == pytest.approx(800 * SX * SY * SZ / 1000, abs=1e-3)
    trimmed = o.copy()
    trimmed[3] = False
    r = rows_by_key(compare_images(image(o * 4), image(trimmed * 4)).rows)["parotid_l"]
    assert r["status"] == "edited" and r["apl_mm"] == 0.0 and r["dice"] == pytest.approx(0.8)
    assert r["volume_change_percent"] == pytest.approx(-100 / 3, abs=0.1)
    rows = rows_by_key(compare_images(image(o * 5), image(o * 6)).rows)
    assert rows["submandibular_r"]["status"] == "removed" and rows["submandibular_r"]["apl_mm"] == 0.0
    assert rows["submandibular_l"]["status"] == "added"
    assert rows["submandibular_l"]["apl_mm"] == pytest.approx(3 * rectangle_perimeter(40, 20), abs=0.1)
    assert rows["parotid_r"]["status"] == "absent" and rows["parotid_r"]["dice"] is None


@pytest.mark.parametrize("storage", ["flip_x", "ras", "feet_first", "permuted"])
def test_apl_and_metrics_do_not_depend_on_storage(storage):
    """The same anatomy stored flipped or with permuted axes (the slices across the
    head-feet axis are then not the third axis) gives the same figures."""
    labels = sample_labels()
    corrected = edited(labels)

    def store(img):
        if storage == "permuted":
            return sitk.PermuteAxes(img, (2, 0, 1))
        return sitk.Flip(img, {"flip_x": [True, False, False], "ras": [True, True, False], "feet_first": [False, False, True]}[storage])

    want = compare_segmentations(labels, corrected)
    got = compare_segmentations(store(labels), store(corrected))
    if storage == "permuted":
        assert axial_axis(store(labels)) == 0  # (2, 0, 1): the new first axis is the old third
    for w, g in zip(want, got):
        for key in ("status", "dice", "hd95_mm", "surface_dice", "volume_original_ml", "volume_corrected_ml", "apl_slices"):
            assert g[key] == w[key], (w["gland"], key)
        for key in ("apl_mm", "original_contour_mm", "corrected_contour_mm"):
            assert g[key] == pytest.approx(w[key], abs=0.11), (w["gland"], key)  # rounding to 0.1 mm
    w = rows_by_key(want)
    assert w["submandibular_r"]["apl_mm"] > 0 and w["lacrimal_r"]["apl_mm"] > 0 and w["parotid_r"]["apl_mm"] == 0.0
    assert w["parotid_r"]["status"] == "edited" and w["parotid_l"]["status"] == "unchanged"


def test_mirroring_the_patient_mirrors_the_figures():
    """The corrections made to the right glands, mirrored onto the left (arrays flipped along x,
    geometry kept), give the left glands the right glands' figures."""
    labels = sample_labels()
    corrected = edited(labels)

    def mirror(img):
        a = sitk.GetArrayFromImage(img)[:, :, ::-1]
        swapped = a.copy()
        for g in GLANDS:  # the patient's right gland becomes the left one
            swapped[a == g.label] = BY_KEY[g.key[:-1] + ("l" if g.side == "R" else "r")].label
        out = sitk.GetImageFromArray(swapped)
        out.CopyInformation(img)
        return out

    want = rows_by_key(compare_segmentations(labels, corrected))
    got = rows_by_key(compare_segmentations(mirror(labels), mirror(corrected)))
    for organ in ("lacrimal", "parotid", "submandibular"):
        r, m = want[f"{organ}_r"], got[f"{organ}_l"]
        assert m["apl_mm"] == pytest.approx(r["apl_mm"], abs=0.11) and m["dice"] == r["dice"] and m["status"] == r["status"]
        assert got[f"{organ}_r"]["apl_mm"] == 0.0


def test_slices_are_the_nearest_to_axial():
    img = image(block())
    assert axial_axis(img) == 2
    a = math.radians(10)  # 10 degrees about x: still mostly axial slices
    oblique = (1, 0, 0, 0, math.cos(a), -math.sin(a), 0, math.sin(a), math.cos(a))
    assert axial_axis(image(block(), direction=oblique)) == 2
    sagittal = (0, 0, 1, 1, 0, 0, 0, 1, 0)  # i runs along y, j along z, k along x
    assert axial_axis(image(block(), direction=sagittal)) == 1


# --------------------------------------------------------------------------- geometry


def test_same_lattice_crops_and_growth_are_compared_voxel_for_voxel():
    """A Slicer segmentation cropped to its segments' extent, or grown beyond the original's
    grid, is on the same voxel lattice: compared exactly, nothing outside the original lost."""
    labels = sample_labels()
    crop = gland_box(labels)
    assert crop.GetSize() != labels.GetSize()
    cmp = compare_images(labels, crop)
    assert cmp.geometry["corrected_resampled"] is False
    assert all(r["status"] == "unchanged" for r in cmp.rows), [(r["gland"], r["status"]) for r in cmp.rows]
    full = compare_segmentations(labels, edited(labels))
    cropped = compare_segmentations(crop, edited(labels))  # the same outlines on another extent: the same figures
    assert [(r["status"], r["dice"], r["apl_mm"]) for r in cropped] == [(r["status"], r["dice"], r["apl_mm"]) for r in full]
    grown = sitk.ConstantPad(labels, [0, 0, 0], [0, 0, 4])  # four slices above the original's grid
    a = sitk.GetArrayFromImage(grown)
    a[-3, 100:110, 100:110] = 1  # a piece of right lacrimal gland painted above the original grid
    grown_img = sitk.GetImageFromArray(a)
    grown_img.CopyInformation(grown)
    cmp = compare_images(labels, grown_img)
    r = rows_by_key(cmp.rows)["lacrimal_r"]
    assert cmp.geometry["size"][2] == labels.GetSize()[2] + 3 and not cmp.geometry["corrected_resampled"]
    assert r["volume_change_ml"] == pytest.approx(100 * 2.0 / 1000) and r["apl_slices"] == 1
    assert r["apl_mm"] == pytest.approx(4 * 10 - 4 * corner_cut(1.0, 1.0), abs=0.1)


def test_another_lattice_is_resampled_with_nearest_neighbour_and_says_so():
    o = block()
    fine = np.repeat(np.repeat(np.repeat(o, 2, 0), 2, 1), 2, 2)  # the same content at half the spacing
    origin = (-20.0, 10.0, -50.0)
    fine_img = image(fine, spacing=(SX / 2, SY / 2, SZ / 2), origin=tuple(p - s / 4 for p, s in zip(origin, (SX, SY, SZ))))
    cmp = compare_images(image(o * 3), sitk.Cast(fine_img * 3, sitk.sitkUInt8))
    assert cmp.geometry["corrected_resampled"] is True and "nearest neighbour" in cmp.geometry["note"]
    r = cmp.rows[2]
    assert r["dice"] == 1.0 and r["apl_mm"] == 0.0


def test_segmentations_without_common_space_are_refused():
    o = block() * 3
    with pytest.raises(InvalidInputError, match="do not overlap in physical space") as err:
        compare_images(image(o), image(o, origin=(1000.0, 10.0, -50.0)))
    assert "\n" not in str(err.value)


def test_values_that_are_no_gland_are_ignored_not_wrapped(tmp_path):
    """259 must not become 3 (the right parotid) on the way to 8 bits; a file says what it ignored."""
    o = block().astype(np.int16) * 3
    c = o.copy()
    c[1:4, 45:55, 65:80] = 259
    wide_o, wide_c = sitk.GetImageFromArray(o), sitk.GetImageFromArray(c)  # int16, as some tools write label maps
    assert [r["status"] for r in compare_segmentations(wide_o, wide_c)][2] == "unchanged"
    sitk.WriteImage(wide_c, str(tmp_path / "c.nrrd"))
    result = compare(tmp_path / "c.nrrd", tmp_path / "c.nrrd", tmp_path / "out")
    assert any("259" in w and "ignored" in w for w in result.comparison.warnings)


# --------------------------------------------------------------------------- inputs and the command


def test_glandseg_seg_nrrd_on_its_crop_matches_the_labelmap(tmp_path):
    from GlandSegLib.io.segfile import write_seg_nrrd

    labels = sample_labels()
    write_seg_nrrd(gland_box(labels), tmp_path / "glands.seg.nrrd")
    sitk.WriteImage(labels, str(tmp_path / "glands_labelmap.nii.gz"))
    result = compare(tmp_path, tmp_path / "glands.seg.nrrd", tmp_path / "out")  # a segment folder as the original
    assert [r["status"] for r in result.comparison.rows] == ["unchanged"] * 6
    assert result.report["original"]["kind"] == "labelmap" and result.report["corrected"]["kind"] == "seg.nrrd"


def test_slicer_seg_nrrd_with_layers_renamed_and_extra_segments(tmp_path):
    """As 3D Slicer saves an edited segmentation: overlapping segments in two layers, segment
    IDs Slicer made up, names that say which gland, a segment that is no gland."""
    slicerio = pytest.importorskip("slicerio")
    o = block()
    layer0 = np.zeros(o.shape, np.uint8)
    layer0[o] = 1  # "Parotid_R"
    layer0[1:4, 45:55, 65:80] = 2  # "Tumour": not a gland
    layer1 = np.zeros(o.shape, np.uint8)
    layer1[1:4, 30:45, 50:70] = 7  # "left submandibular gland", overlapping the parotid
    voxels = np.stack([layer0, layer1]).transpose(0, 3, 2, 1)  # slicerio: layer, i, j, k
    ijk = np.eye(4)
    ijk[:3, :3] = np.diag([SX, SY, SZ])
    ijk[:3, 3] = (-20.0, 10.0, -50.0)
    slicerio.write_segmentation(str(tmp_path / "edited.seg.nrrd"), {
        "voxels": voxels, "ijkToLPS": ijk, "encoding": "gzip", "segments": [
            {"id": "Segment_1", "name": "Parotid_R", "labelValue": 1, "layer": 0, "color": [1, 0, 0]},
            {"id": "Segment_2", "name": "Tumour", "labelValue": 2, "layer": 0, "color": [0, 1, 0]},
            {"id": "Segment_3", "name": "left submandibular gland", "labelValue": 7, "layer": 1, "color": [0, 0, 1]}]})
    seg = read_seg_nrrd(tmp_path / "edited.seg.nrrd")
    a = sitk.GetArrayFromImage(seg.labels)
    assert np.allclose(seg.labels.GetSpacing(), (SX, SY, SZ)) and np.allclose(seg.labels.GetOrigin(), (-20.0, 10.0, -50.0))
    overlap = o & (layer1 == 7)
    assert np.all(a[overlap] == 6)  # overlap rule: the voxel goes to the smaller gland (the submandibular)
    assert np.array_equal(a == 3, o & ~overlap) and np.array_equal(a == 6, layer1 == 7)
    assert any("Tumour" in w for w in seg.warnings) and any("claimed by both" in w for w in seg.warnings)


def _ct_from_sample(tmp_path: Path) -> tuple[Path, sitk.Image]:
    """A DICOM CT of 40 slices of the sample (through the parotids) and its true labels."""
    from dicom_writer import write_ct_series

    ct = sitk.ReadImage(str(REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"))[:, :, 40:80]
    labels = sample_labels()[:, :, 40:80]
    write_ct_series(ct, tmp_path / "ct")
    return tmp_path / "ct", labels


def test_rtstruct_against_labelmap_through_the_command(tmp_path, capsys):
    """GlandSeg's own RTSTRUCT (the outlines of its label map) rasterizes back to the same
    voxels: compared with --ct, every gland is unchanged; without --ct, a usage error."""
    from GlandSegLib.io.dicom_out import write_dicom_outputs
    from GlandSegLib.io.images import find_dicom_series

    ct_dir, labels = _ct_from_sample(tmp_path)
    series = find_dicom_series(ct_dir)[0]
    write_dicom_outputs(labels, series.files, tmp_path / "dicom")
    sitk.WriteImage(labels, str(tmp_path / "labels.nrrd"))
    rs = tmp_path / "dicom" / "glands_rtstruct.dcm"
    rc = main(["compare", str(tmp_path / "labels.nrrd"), str(rs), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "--ct" in err[0]
    rc = main(["compare", str(tmp_path / "labels.nrrd"), str(rs), "-o", str(tmp_path / "out"), "--ct", str(ct_dir)])
    out = capsys.readouterr().out
    assert rc == 0
    report = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert report["corrected"]["kind"] == "rtstruct"
    present = [r for r in report["glands"] if r["status"] != "absent"]
    assert len(present) >= 3 and all(r["status"] == "unchanged" and r["apl_mm"] == 0.0 for r in present)
    assert "unchanged" in out


def test_the_command_writes_csv_and_json_and_a_table(tmp_path, capsys):
    labels = sample_labels()
    sitk.WriteImage(labels, str(tmp_path / "orig.nii.gz"))
    sitk.WriteImage(edited(labels), str(tmp_path / "corrected.nrrd"))
    before = (tmp_path / "orig.nii.gz").read_bytes()
    rc = main(["compare", str(tmp_path / "orig.nii.gz"), str(tmp_path / "corrected.nrrd"), "-o", str(tmp_path / "out")])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["comparison.csv", "comparison.json"]
    assert (tmp_path / "orig.nii.gz").read_bytes() == before
    table = [line for line in out if any(g.name in line for g in GLANDS)]
    assert len(table) == 6 and "edited" in table[4] and "unchanged" in table[3]
    with open(tmp_path / "out" / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    report = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert [r["gland"] for r in rows] == [r["gland"] for r in report["glands"]] == [g.key for g in GLANDS]
    for r, j in zip(rows, report["glands"]):
        assert float(r["apl_mm"]) == j["apl_mm"] and r["status"] == j["status"]
    assert report["tolerance_mm"] == SURFACE_TOLERANCE_MM and "Vaassen" in report["added_path_length"]["reference"]
    again = main(["compare", str(tmp_path / "orig.nii.gz"), str(tmp_path / "corrected.nrrd"), "-o", str(tmp_path / "out")])
    assert again == 8
    assert main(["compare", str(tmp_path / "nope.nii.gz"), str(tmp_path / "corrected.nrrd"), "-o", str(tmp_path / "o2")]) == 3
    assert main(["compare", str(tmp_path / "orig.nii.gz"), str(tmp_path / "corrected.nrrd"), "-o", str(tmp_path / "o3"),
                 "--tolerance", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error:") for line in err)


def _grown(labels: sitk.Image, pixels: int) -> sitk.Image:
    """Every gland dilated in-plane by a disk of `pixels` (no slice added)."""
    r = np.arange(-pixels, pixels + 1)
    disk = (r[:, None] ** 2 + r[None, :] ** 2 <= pixels ** 2)[None]
    a = sitk.GetArrayViewFromImage(labels)
    out = sitk.GetImageFromArray(ndimage.binary_dilation(a > 0, structure=disk).astype(np.uint8) * int(a.max()))
    out.CopyInformation(labels)
    return out


def test_real_outlines_moved_within_and_beyond_the_tolerance(shared_data):
    """The PDDCA experts' parotids and submandibular glands (a real CT's grid, 1.12 mm pixels),
    grown in-plane by 1 pixel (1.1 mm: within every tolerance), 2 pixels (2.2 mm: within the
    parotid's, beyond the submandibular gland's) and 4 pixels (4.5 mm: beyond all)."""
    folder = shared_data / "pddca-0522c0001" / "structures"
    for name, label in {"Parotid_R": 3, "Parotid_L": 4, "Submandibular_R": 5, "Submandibular_L": 6}.items():
        mask = sitk.ReadImage(str(folder / f"{name}.nrrd"))  # one gland at a time: grown glands must not clip each other
        original = sitk.GetImageFromArray((sitk.GetArrayFromImage(mask) > 0).astype(np.uint8) * label)
        original.CopyInformation(mask)
        original = gland_box(original, margin=6)  # on the CT's own lattice, just large enough to grow into
        near = compare_segmentations(original, _grown(original, 1))[label - 1]
        mid = compare_segmentations(original, _grown(original, 2))[label - 1]
        far = compare_segmentations(original, _grown(original, 4))[label - 1]
        # Dice falls to 0.86-0.88 for a one-pixel rim a user would never redraw; APL stays 0
        assert near["status"] == "edited" and near["apl_mm"] == 0.0 and near["dice"] < 0.9, (name, near)
        if label in (3, 4):  # 2.24 mm: within the parotid's 2.85 mm
            assert mid["apl_mm"] == 0.0, (name, mid)
        else:  # beyond the submandibular gland's 2.02 mm: measured 42-48 % of the outline
            assert 0.2 * mid["corrected_contour_mm"] < mid["apl_mm"] < 0.8 * mid["corrected_contour_mm"], (name, mid)
        assert far["apl_mm"] == pytest.approx(far["corrected_contour_mm"], rel=0.01), (name, far)  # all of it redrawn
