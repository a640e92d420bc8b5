"""The synthetic CTs: deterministic, anatomically placed glands, CT-like HU, honest geometry.

Two kinds: make_phantom (procedural anatomy) and make_phantom_from_outlines (real expert
outlines from the TCIA set with a synthesized CT around them; needs shared/data).

Positions are checked in physical LPS space (continuous index -> physical point), never with
raw array indices, because the phantom's origin moves per seed and `reorient` changes the
storage order on purpose.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from GlandSegLib.glands import BY_KEY, GLANDS, gland
from GlandSegLib.segmentation.headbox import locate_head
from GlandSegLib.names import match_gland
from GlandSegLib.defaultmodel.phantom import (VARIANTS, Phantom, list_outline_cases, make_phantom, make_phantom_from_outlines,
                                 no_head_phantom, outline_folder, read_outlines, reorient)

SPACING = (2.0, 2.0, 2.0)
# Realistic volumes (ml, expert outlines), tolerated +-40% for voxelisation and shape noise.
VOLUME_ML = {"parotid": (13.0, 38.0), "submandibular": (4.5, 11.0), "lacrimal": (0.35, 0.7)}
LOSSLESS = ("lps", "ras", "flip_x", "permuted", "feet_first")


def centroids(labels: sitk.Image) -> dict[int, np.ndarray]:
    """Physical centroid of each label; mean index -> point is exact for an affine grid."""
    a = sitk.GetArrayViewFromImage(labels)
    out = {}
    for g in GLANDS:
        idx = np.argwhere(a == g.label)
        if len(idx):
            out[g.label] = np.array(labels.TransformContinuousIndexToPhysicalPoint(idx.mean(0)[::-1].tolist()))
    return out


def volumes_ml(labels: sitk.Image) -> dict[int, float]:
    a = sitk.GetArrayViewFromImage(labels)
    voxel = float(np.prod(labels.GetSpacing())) / 1000.0
    return {g.label: float((a == g.label).sum()) * voxel for g in GLANDS}


def mean_hu(ph: Phantom, label: int) -> float:
    return float(sitk.GetArrayViewFromImage(ph.ct)[sitk.GetArrayViewFromImage(ph.labels) == label].mean())


def brain_enclosed_by_bone(ct_slice: np.ndarray, pixel_mm2: float) -> tuple[float, float]:
    """Area (cm2) and mean HU of soft tissue that a closed bony ring encloses in one axial slice."""
    bone = ct_slice > 300
    inside = ndimage.binary_fill_holes(bone) & ~bone
    area = float(inside.sum()) * pixel_mm2 / 100.0
    return area, float(ct_slice[inside].mean()) if inside.any() else float("nan")


def axial_slice_at(image: sitk.Image, z_mm: float) -> np.ndarray:
    k = image.TransformPhysicalPointToIndex((image.GetOrigin()[0], image.GetOrigin()[1], z_mm))[2]
    return sitk.GetArrayViewFromImage(image)[k]


@pytest.fixture(scope="module")
def heads() -> dict[int, Phantom]:
    return {seed: make_phantom(seed, spacing=SPACING) for seed in (0, 1, 2)}


def test_grid_types_and_storage(heads):
    ph = heads[0]
    assert ph.ct.GetPixelID() == sitk.sitkInt16 and ph.labels.GetPixelID() == sitk.sitkUInt8
    assert ph.ct.GetSize() == ph.labels.GetSize() and ph.ct.GetOrigin() == ph.labels.GetOrigin()
    assert ph.ct.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    assert ph.ct.GetSpacing() == SPACING
    assert ph.ct.GetSize() == (120, 120, 120)  # head field: 240 mm in-plane and long
    a = sitk.GetArrayViewFromImage(ph.ct)
    assert -1024 <= a.min() and a.max() <= 3071
    assert abs(np.median(a[:, :5, :5]) + 1000) < 30  # corners are air
    assert set(np.unique(sitk.GetArrayViewFromImage(ph.labels))) == {0, *[g.label for g in GLANDS]}
    # z index increases superiorly: the glands sit in the lower part, the skull cap on top
    zc = {lab: p[2] for lab, p in centroids(ph.labels).items()}
    assert zc[BY_KEY["lacrimal_r"].label] > zc[BY_KEY["parotid_r"].label] > zc[BY_KEY["submandibular_r"].label]


def test_same_seed_same_bytes_other_seed_differs(heads):
    again = make_phantom(0, spacing=SPACING)
    for a, b in ((again.ct, heads[0].ct), (again.labels, heads[0].labels)):
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
        assert a.GetOrigin() == b.GetOrigin()
    assert again.midline_x == heads[0].midline_x
    other = heads[1]
    assert other.ct.GetOrigin() != heads[0].ct.GetOrigin()
    assert volumes_ml(other.labels) != volumes_ml(heads[0].labels)


def test_without_variation_the_head_sits_at_the_origin_and_is_symmetric():
    ph = make_phantom(0, spacing=SPACING, variation=False)
    assert ph.midline_x == 0.0
    c, v = centroids(ph.labels), volumes_ml(ph.labels)
    for organ in VOLUME_ML:
        r, left = gland(organ, "R").label, gland(organ, "L").label
        assert abs(c[r][0] + c[left][0]) < 2.5 and np.allclose(c[r][1:], c[left][1:], atol=2.5)
        assert abs(v[r] - v[left]) <= 0.15 * v[r]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_gland_present_with_realistic_volume(heads, seed):
    vols = volumes_ml(heads[seed].labels)
    for g in GLANDS:
        lo, hi = VOLUME_ML[g.organ]
        assert 0.6 * lo <= vols[g.label] <= 1.4 * hi, (g.key, vols[g.label])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_left_glands_on_patient_left_in_physical_space(heads, seed):
    ph = heads[seed]
    c = centroids(ph.labels)
    for organ in VOLUME_ML:
        r, left = c[gland(organ, "R").label], c[gland(organ, "L").label]
        assert left[0] > ph.midline_x > r[0], organ  # +x is the patient's left in LPS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_glands_placed_as_on_real_outlines(heads, seed):
    """Offsets between glands as measured on the TCIA expert outlines (loose bounds)."""
    ph = heads[seed]
    c = centroids(ph.labels)
    for side in ("R", "L"):
        lac, par, sub = (c[gland(o, side).label] for o in ("lacrimal", "parotid", "submandibular"))
        assert 40 <= abs(par[0] - ph.midline_x) <= 75
        assert 15 <= abs(sub[0] - ph.midline_x) <= 45
        assert 30 <= abs(lac[0] - ph.midline_x) <= 55
        assert 50 <= lac[2] - par[2] <= 95 and 30 <= par[1] - lac[1] <= 70  # above and anterior
        assert 25 <= par[2] - sub[2] <= 60 and 5 <= par[1] - sub[1] <= 40  # below and anterior


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parotid_is_fattier_than_submandibular(heads, seed):
    ph = heads[seed]
    for side in ("R", "L"):
        parotid, sub = mean_hu(ph, gland("parotid", side).label), mean_hu(ph, gland("submandibular", side).label)
        assert -60 < parotid < sub < 80


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_brain_is_enclosed_by_a_bony_ring(heads, seed):
    ph = heads[seed]
    c = centroids(ph.labels)
    z_brain = np.mean([c[BY_KEY["lacrimal_r"].label][2], c[BY_KEY["lacrimal_l"].label][2]]) + 15.0
    area, hu = brain_enclosed_by_bone(axial_slice_at(ph.ct, z_brain), SPACING[0] * SPACING[1])
    assert area > 100.0  # cm2: a brain cross-section, not a vertebral canal
    assert 20.0 < hu < 50.0


def test_truncated_vertex_keeps_the_glands(heads):
    full = heads[0]
    cut = make_phantom(0, spacing=SPACING, truncate_vertex_mm=50.0)
    top = lambda im: im.TransformIndexToPhysicalPoint((0, 0, im.GetSize()[2] - 1))[2]
    assert top(full.ct) - top(cut.ct) >= 50.0
    assert abs(cut.ct.GetOrigin()[2] - full.ct.GetOrigin()[2]) < SPACING[2]  # same lower end
    a = sitk.GetArrayViewFromImage(cut.ct)[-1]
    assert (a > 300).sum() * SPACING[0] * SPACING[1] > 500.0  # the top slice cuts through skull
    assert (a > -300).sum() * SPACING[0] * SPACING[1] > 100e2  # ... and through a wide head
    cf, cc = centroids(full.labels), centroids(cut.labels)
    vf, vc = volumes_ml(full.labels), volumes_ml(cut.labels)
    for g in GLANDS:
        assert np.allclose(cf[g.label], cc[g.label], atol=1.5) and abs(vf[g.label] - vc[g.label]) <= 0.25 * vf[g.label]


@pytest.fixture(scope="module")
def reoriented(heads):
    ph = heads[2]
    return ph, {v: (reorient(ph.ct, v), reorient(ph.labels, v, is_label=True)) for v in VARIANTS}


@pytest.mark.parametrize("variant", VARIANTS)
def test_reorient_keeps_physical_content(reoriented, variant):
    ph, out = reoriented
    ct, labels = out[variant]
    assert ct.GetPixelID() == sitk.sitkInt16 and labels.GetPixelID() == sitk.sitkUInt8
    ref, got = centroids(ph.labels), centroids(labels)
    tol = 2.0 if variant in LOSSLESS else 3.0
    for g in GLANDS:
        assert np.linalg.norm(ref[g.label] - got[g.label]) < tol, (g.key, ref[g.label], got[g.label])
    for organ in VOLUME_ML:
        assert got[gland(organ, "L").label][0] > ph.midline_x > got[gland(organ, "R").label][0]
    if variant in LOSSLESS:  # back onto the original grid: every voxel identical
        back = sitk.Resample(ct, ph.ct, sitk.Transform(), sitk.sitkNearestNeighbor, -2000, sitk.sitkInt16)
        assert np.array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(ph.ct))


def test_reorient_storage_really_differs(reoriented):
    ph, out = reoriented
    d = {v: np.array(out[v][0].GetDirection()).reshape(3, 3) for v in VARIANTS}
    assert np.allclose(d["ras"], np.diag([-1, -1, 1])) and np.allclose(d["flip_x"], np.diag([-1, 1, 1]))
    assert np.allclose(d["feet_first"], np.diag([1, 1, -1])) and not np.allclose(d["permuted"], np.eye(3))
    assert abs(np.degrees(np.arccos((np.trace(d["oblique10"]) - 1) / 2)) - 10.0) < 1e-6
    assert out["anisotropic"][0].GetSpacing() == pytest.approx((0.7, 0.7, 3.0))
    assert out["permuted"][0].GetSize() == tuple(ph.ct.GetSize()[i] for i in (2, 0, 1))
    with pytest.raises(ValueError):
        reorient(ph.ct, "sideways")


def test_whole_body_has_lungs_and_a_head_on_top():
    ph = make_phantom(4, field="wholebody", spacing=(4.0, 4.0, 6.0))
    size, sp = ph.ct.GetSize(), ph.ct.GetSpacing()
    assert size == (125, 125, 250) and 480 <= size[0] * sp[0] <= 520
    a = sitk.GetArrayViewFromImage(ph.ct)
    body = np.stack([ndimage.binary_fill_holes(s > -400) for s in a])
    lung = body & (a < -600) & (a > -950)
    assert lung.sum() * np.prod(sp) / 1e6 > 2.0  # litres
    lung_slices = np.nonzero(lung.sum((1, 2)) * sp[0] * sp[1] > 50e2)[0]  # > 50 cm2: not an airway
    lung_z = np.array([ph.ct.TransformIndexToPhysicalPoint((0, 0, int(k)))[2] for k in lung_slices])
    c = centroids(ph.labels)
    assert len(c) == 6 and lung_z.max() < min(p[2] for p in c.values()) - 80.0  # lungs well below the glands
    z_brain = np.mean([c[BY_KEY["lacrimal_r"].label][2], c[BY_KEY["lacrimal_l"].label][2]]) + 15.0
    area, hu = brain_enclosed_by_bone(axial_slice_at(ph.ct, z_brain), sp[0] * sp[1])
    assert area > 100.0 and 15.0 < hu < 55.0
    widths = [(s > -400).any(0).sum() * sp[0] for s in a]
    assert max(widths[-30:]) < 200 and max(widths[:100]) > 300  # a head (top 180 mm) on a wider body


def test_grid_overrides():
    ph = make_phantom(5, field="wholebody", spacing=(4.0, 4.0, 8.0), size_xy=64, length_mm=800)
    assert ph.ct.GetSize() == (64, 64, 100) and ph.labels.GetSize() == (64, 64, 100)
    hn = make_phantom(5, field="headneck", spacing=(4.0, 4.0, 5.0))
    assert hn.ct.GetSize()[2] * 5.0 == pytest.approx(350.0, abs=5.0)
    a = sitk.GetArrayViewFromImage(hn.ct)
    assert (a[0] > -400).any(0).sum() * 4.0 > 300  # shoulders at the lower end
    with pytest.raises(ValueError):
        make_phantom(0, field="legs")


def test_no_head_phantom_has_no_brain_like_enclosed_region():
    ct = no_head_phantom(3)
    assert ct.GetPixelID() == sitk.sitkInt16 and ct.GetSpacing() == (1.5, 1.5, 3.0)
    a = sitk.GetArrayViewFromImage(ct)
    assert (a > -400).mean() > 0.15 and (a > 300).any()  # a body with bones
    px = 1.5 * 1.5
    for k in range(0, a.shape[0], 2):
        area, hu = brain_enclosed_by_bone(a[k], px)
        assert area < 15.0 or not 15.0 < hu < 50.0, (k, area, hu)
    assert np.array_equal(a, sitk.GetArrayFromImage(no_head_phantom(3)))  # a copy: the image is a temporary


# ---------------------------------------------------------------- phantoms from real expert outlines
# Real anatomy from the TCIA outline set (shared/data/tcia-hn-labels): skipped where it is absent.
FULL_CASE = "0522c0017"  # every organ outlined, all six glands
CUT_CASE = "TCGA-CV-A6JY"  # left submandibular resected, scan cut through the skull, part of the mandible removed


@pytest.fixture(scope="module")
def outline_cases(shared_data) -> dict:
    root = shared_data / "tcia-hn-labels"
    if not root.is_dir():
        pytest.skip(f"TCIA outline set not found at {root}")
    return {c.name: c for c in list_outline_cases(root, "all")}


@pytest.fixture(scope="module")
def outline_head(outline_cases) -> Phantom:
    return make_phantom_from_outlines(outline_cases[FULL_CASE], seed=0)


def source_glands(case_dir, rater: str = "oncologist") -> tuple[sitk.Image, np.ndarray]:
    """The expert's glands as one labelmap on the source lattice, cropped around them, and the
    voxel count per label on the whole scan; read straight from the files, not through phantom.py."""
    folder = case_dir.parent.parent / rater / case_dir.name / "segmentations"
    masks, ref = {}, None
    for f in sorted(folder.glob("*.nrrd")):
        g = match_gland(f.stem)
        if g is not None:
            ref = sitk.ReadImage(str(f))
            masks[g.label] = sitk.GetArrayFromImage(ref) > 0
    union = np.any(list(masks.values()), axis=0)
    lo = np.maximum([np.flatnonzero(union.any(axis=tuple(j for j in range(3) if j != k)))[0] - 2 for k in range(3)], 0)
    hi = [np.flatnonzero(union.any(axis=tuple(j for j in range(3) if j != k)))[-1] + 3 for k in range(3)]
    lab = np.zeros(tuple(np.subtract(hi, lo)), np.uint8)
    counts = np.zeros(7, int)
    for label, m in masks.items():
        lab[m[tuple(slice(a, b) for a, b in zip(lo, hi))]] = label
        counts[label] = int(m.sum())
    img = sitk.GetImageFromArray(lab)
    img.SetOrigin(ref.TransformIndexToPhysicalPoint([int(v) for v in lo[::-1]]))
    img.SetSpacing(ref.GetSpacing())
    return img, counts


def on_grid(image: sitk.Image, reference: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8))


def test_outline_cases_are_listed_and_both_raters_found(outline_cases, shared_data):
    root = shared_data / "tcia-hn-labels"
    assert len(list_outline_cases(root, "test")) == 28 and len(list_outline_cases(root, "validation")) == 7
    case = outline_cases["0522c0659"]  # a case whose files use underscores (Parotid_Lt.nrrd)
    for rater in ("oncologist", "radiographer"):
        folder = outline_folder(case, rater)
        assert folder.parts[-3:] == (rater, case.name, "segmentations")
    assert sorted(read_outlines(outline_folder(case, "radiographer"), glands_only=True).glands) == [g.label for g in GLANDS]
    with pytest.raises(ValueError):
        make_phantom_from_outlines(case, rater="student")
    with pytest.raises(ValueError):
        make_phantom_from_outlines(case, field="legs")


def test_outline_phantom_is_deterministic_and_leaves_the_source_alone(outline_cases, outline_head):
    case = outline_cases[FULL_CASE]
    files = sorted(outline_folder(case).glob("*.nrrd"))
    before = [(f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    again = make_phantom_from_outlines(case, seed=0)
    for a, b in ((again.ct, outline_head.ct), (again.labels, outline_head.labels)):
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
        assert a.GetOrigin() == b.GetOrigin() and a.GetSpacing() == b.GetSpacing()
    other = make_phantom_from_outlines(case, seed=1)
    assert not np.array_equal(sitk.GetArrayViewFromImage(other.ct)[:40], sitk.GetArrayViewFromImage(outline_head.ct)[:40])
    assert volumes_ml(other.labels) == volumes_ml(outline_head.labels)  # the seed never changes the anatomy
    assert [(f.stat().st_size, f.stat().st_mtime_ns) for f in files] == before


def test_outline_phantom_grid_and_tissues(outline_head):
    ph = outline_head
    assert ph.ct.GetPixelID() == sitk.sitkInt16 and ph.labels.GetPixelID() == sitk.sitkUInt8
    assert ph.ct.GetSpacing() == pytest.approx((0.98, 0.98, 2.5)) and ph.ct.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    a = sitk.GetArrayViewFromImage(ph.ct)
    assert -1024 <= a.min() and a.max() <= 3071 and abs(np.median(a[:, :5, :5]) + 1000) < 30
    for side in ("R", "L"):  # HU ranges of make_phantom: the parotid is the fattiest gland
        parotid = mean_hu(ph, gland("parotid", side).label)
        assert -60 < parotid < mean_hu(ph, gland("submandibular", side).label) < 80
        assert parotid < mean_hu(ph, gland("lacrimal", side).label) < 80
    body = (a > -400).mean(axis=(1, 2))
    assert body[:-int(10 / ph.ct.GetSpacing()[2])].min() > 0.03  # one body from the neck to the top of the head
    assert ((a > 1800).sum() * np.prod(ph.ct.GetSpacing()) / 1000) > 2.0  # teeth (and petrous bone): ml


@pytest.mark.parametrize("case_name", [FULL_CASE, CUT_CASE])
def test_outline_labels_are_the_source_voxels(outline_cases, outline_head, case_name):
    case = outline_cases[case_name]
    ph = outline_head if case_name == FULL_CASE else make_phantom_from_outlines(case, seed=2)
    src, counts = source_glands(case)
    assert ph.labels.GetSpacing() == pytest.approx(src.GetSpacing())
    index = np.array(ph.labels.GetOrigin()) - np.array(src.GetOrigin())
    assert np.allclose(index / np.array(src.GetSpacing()), np.rint(index / np.array(src.GetSpacing())), atol=1e-4)
    assert np.array_equal(on_grid(ph.labels, src), sitk.GetArrayViewFromImage(src))  # voxel for voxel
    got = np.bincount(sitk.GetArrayViewFromImage(ph.labels).ravel(), minlength=7)
    assert np.array_equal(got[1:], counts[1:])  # and none anywhere else, none cut off by the field of view
    if case_name == CUT_CASE:
        assert counts[gland("submandibular", "L").label] == 0  # resected in the source: stays empty


def test_outline_labels_survive_another_spacing(outline_cases):
    """1 mm isotropic (a common model spacing) and back: the round trip through a coarser grid
    loses what that grid cannot hold (lacrimal Dice ~0.9 at 1.2 x 1.2 x 2 mm, ~0.8 at 1.5 x 1.5 x 3)."""
    case = outline_cases[FULL_CASE]
    ph = make_phantom_from_outlines(case, seed=0, spacing=(1.0, 1.0, 1.0))
    assert ph.labels.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
    src, _ = source_glands(case)
    back = on_grid(ph.labels, src)
    ref = sitk.GetArrayViewFromImage(src)
    for g in GLANDS:
        a, b = back == g.label, ref == g.label
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.9, g.key


def test_outline_left_glands_stay_on_the_patient_left(outline_head):
    ph = outline_head
    for variant in VARIANTS:
        c = centroids(reorient(ph.labels, variant, is_label=True))
        for organ in VOLUME_ML:
            left, right = c[gland(organ, "L").label], c[gland(organ, "R").label]
            assert left[0] > ph.midline_x > right[0], (variant, organ)


def test_outline_skull_encloses_the_brain(outline_head):
    ph = outline_head
    c = centroids(ph.labels)
    z_lac = np.mean([c[BY_KEY["lacrimal_r"].label][2], c[BY_KEY["lacrimal_l"].label][2]])
    sp = ph.ct.GetSpacing()
    for dz in (10.0, 25.0, 40.0):
        area, hu = brain_enclosed_by_bone(axial_slice_at(ph.ct, z_lac + dz), sp[0] * sp[1])
        assert area > 100.0 and 15.0 < hu < 50.0, (dz, area, hu)


@pytest.mark.parametrize("case_name,field,kwargs", [
    (FULL_CASE, "head", {}),
    (FULL_CASE, "head", {"truncate_vertex_mm": 60.0}),
    (CUT_CASE, "head", {}),
    (CUT_CASE, "wholebody", {"spacing": (3.0, 3.0, 5.0)}),
])
def test_locator_finds_the_cranium_of_outline_phantoms(outline_cases, case_name, field, kwargs):
    ph = make_phantom_from_outlines(outline_cases[case_name], seed=4, field=field, **kwargs)
    box = locate_head(ph.ct)
    assert box.method == "cranium"
    a = sitk.GetArrayViewFromImage(ph.labels)
    idx = np.argwhere(a > 0)[:, ::-1].astype(float)
    pts = idx * np.array(ph.labels.GetSpacing()) + np.array(ph.labels.GetOrigin())
    assert len(pts) and np.all((pts >= box.lower - 1e-6) & (pts <= box.upper + 1e-6))
    assert abs(box.midline_x - ph.midline_x) < 10.0
    if field == "wholebody":
        assert ph.ct.GetSize()[2] * 5.0 == pytest.approx(1500.0, abs=10.0)
        assert (sitk.GetArrayViewFromImage(ph.ct)[0] > -400).any(axis=0).sum() >= 2  # legs at the lower end


def test_randomised_appearance_keeps_the_anatomy_and_breaks_the_painted_boundary(outline_cases, outline_head):
    """Appearance randomisation (for training on real-looking variety): same labels as the
    standard phantom of the seed, other intensities; over several seeds the glands' HU spread
    over the whole range and some glands match the muscle beside them (no edge to learn)."""
    case = outline_cases[FULL_CASE]
    rand = make_phantom_from_outlines(case, seed=0, appearance="randomised")
    assert np.array_equal(sitk.GetArrayViewFromImage(rand.labels), sitk.GetArrayViewFromImage(outline_head.labels))
    assert not np.array_equal(sitk.GetArrayViewFromImage(rand.ct), sitk.GetArrayViewFromImage(outline_head.ct))
    assert np.array_equal(sitk.GetArrayViewFromImage(make_phantom_from_outlines(case, seed=0, appearance="randomised").ct),
                          sitk.GetArrayViewFromImage(rand.ct))  # seeded: reproducible
    with pytest.raises(ValueError, match="appearance"):
        make_phantom_from_outlines(case, seed=0, appearance="pastel")


def test_randomised_gland_intensities_cover_the_real_range():
    from GlandSegLib.defaultmodel.phantom.tissues import (GLAND_LIKE_MUSCLE, RANDOM_GLAND_HU, draw_case, draw_outline_params,
                                                          randomise_appearance)

    gland_hu, like_muscle, halos = [], 0, []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        p, q = draw_case(rng), draw_outline_params(rng)
        standard = {k: g["hu"] for k, g in p["glands"].items()}
        randomise_appearance(p, q, np.random.default_rng([seed, 7]))
        for key, g in p["glands"].items():
            gland_hu.append(g["hu"])
            like_muscle += abs(g["hu"] - p["hu"]["muscle"]) <= 15
        halos.append(q["halo"])
        assert len(standard) == len(p["glands"])
    lo, hi = RANDOM_GLAND_HU
    assert min(gland_hu) < lo + 20 and max(gland_hu) > hi - 20  # fatty parotids to dense submandibular glands
    assert like_muscle / len(gland_hu) > GLAND_LIKE_MUSCLE * 0.8
    assert min(halos) < 0.3  # some glands have no fat rim at all


def test_training_specs_randomise_an_even_share(shared_data):
    from GlandSegLib.defaultmodel.train_default import outline_specs

    root = shared_data / "tcia-hn-labels"
    plain = outline_specs(root, 2, seed=0)
    half = outline_specs(root, 2, seed=0, randomised=0.5)
    assert {s.appearance for s in plain} == {"standard"}  # the shipped recipe is unchanged
    assert [dataclasses.replace(s, appearance="standard") for s in half] == plain
    flags = [s.appearance == "randomised" for s in half]
    assert sum(flags) == len(half) // 2 and flags[:4] == [False, True, False, True]
