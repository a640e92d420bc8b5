"""Crops, paste-back and model grids keep physical coordinates for every storage layout."""

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.geometry import PhysicalBox, crop, image_bounds, index_region, model_grid, paste, resample_box, resample_to


def _image(direction, spacing=(1.0, 1.5, 2.0), size=(40, 30, 20), origin=(-20.0, 10.0, -30.0), seed=0):
    rng = np.random.default_rng(seed)
    img = sitk.GetImageFromArray(rng.integers(-1000, 1000, size=size[::-1]).astype(np.int16))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _rot(deg, axis):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(deg)
    return tuple((np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k).ravel())


DIRECTIONS = {
    "lps": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "ras": (-1, 0, 0, 0, -1, 0, 0, 0, 1),
    "feet_first": (1, 0, 0, 0, 1, 0, 0, 0, -1),
    "permuted": (0, 0, 1, 1, 0, 0, 0, 1, 0),
    "oblique": _rot(10, (1, 1, 0)),
}


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_crop_then_paste_is_exact_on_the_input_grid(name):
    img = _image(DIRECTIONS[name])
    b = image_bounds(img)
    box = PhysicalBox(b.lower + 0.3 * b.size, b.upper - 0.25 * b.size)
    cropped = crop(img, box)
    back = paste(cropped, img)
    assert back.GetSize() == img.GetSize()
    assert np.allclose(back.GetOrigin(), img.GetOrigin()) and back.GetDirection() == img.GetDirection()
    full, pasted = sitk.GetArrayViewFromImage(img), sitk.GetArrayViewFromImage(back)
    inside = pasted != 0
    assert inside.sum() == np.prod(cropped.GetSize()) - np.sum(sitk.GetArrayViewFromImage(cropped) == 0)
    assert np.array_equal(pasted[inside], full[inside])
    # every voxel centre of the crop sits at the same physical point as in the original
    start, _ = index_region(img, box)
    p_crop = cropped.TransformIndexToPhysicalPoint((0, 0, 0))
    p_full = img.TransformIndexToPhysicalPoint(tuple(start))
    assert np.allclose(p_crop, p_full)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_crop_covers_the_box(name):
    img = _image(DIRECTIONS[name])
    b = image_bounds(img)
    box = PhysicalBox(b.center - 5, b.center + 6)
    cb = image_bounds(crop(img, box))
    assert np.all(cb.lower <= box.lower + 1e-6) and np.all(cb.upper >= box.upper - 1e-6)


def test_paste_refuses_a_region_off_the_grid():
    img = _image(DIRECTIONS["lps"])
    region = crop(img, PhysicalBox(image_bounds(img).center - 3, image_bounds(img).center + 3))
    region.SetOrigin(np.array(region.GetOrigin()) + 0.4)
    with pytest.raises(ValueError):
        paste(region, img)


def test_model_grid_is_identity_lps_and_covers_the_box():
    box = PhysicalBox([-50, -20, 100], [51, 80, 199])
    g = model_grid(box, (2.0, 2.0, 2.0))
    assert g.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    assert np.allclose(image_bounds(g).center, box.center)
    assert np.all(image_bounds(g).size >= box.size - 1e-6)


@pytest.mark.parametrize("name", sorted(DIRECTIONS))
def test_resample_box_puts_a_marker_at_its_physical_place(name):
    """A bright cube at a known LPS point lands at that point on the model grid, whatever the storage."""
    img = _image(DIRECTIONS[name], spacing=(1.0, 1.0, 1.0), size=(60, 60, 60), origin=(0.0, 0.0, 0.0))
    arr = np.full(img.GetSize()[::-1], -1000, np.int16)
    marker = sitk.GetImageFromArray(arr)
    marker.CopyInformation(img)
    target = np.array(img.TransformContinuousIndexToPhysicalPoint((20.0, 35.0, 40.0)))
    a = sitk.GetArrayFromImage(marker)
    for idx in np.ndindex(5, 5, 5):
        i = (18 + idx[0], 33 + idx[1], 38 + idx[2])
        a[i[2], i[1], i[0]] = 1000
    marker = sitk.GetImageFromArray(a)
    marker.CopyInformation(img)
    b = image_bounds(marker)
    out = resample_box(marker, PhysicalBox(b.lower, b.upper), (2.0, 2.0, 2.0))
    o = sitk.GetArrayViewFromImage(out)
    peak = np.argwhere(o > 0).mean(axis=0)
    found = np.array(out.TransformContinuousIndexToPhysicalPoint(peak[::-1].tolist()))
    assert np.linalg.norm(found - target) < 1.5
    assert out.GetPixelID() == sitk.sitkFloat32


def test_labels_resample_nearest_and_keep_type():
    img = _image(DIRECTIONS["oblique"])
    lab = sitk.Cast(sitk.BinaryThreshold(img, 0, 2000, 3, 0), sitk.sitkUInt8)
    out = resample_to(lab, model_grid(image_bounds(lab), (1.5, 1.5, 1.5)), is_label=True)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(out))) <= {0, 3}
