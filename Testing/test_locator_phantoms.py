"""The fast locator on synthetic scans of every field of view and storage orientation."""

import time

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.errors import NoHeadError
from GlandSegLib.segmentation.headbox import locate_head
from GlandSegLib.defaultmodel.phantom import make_phantom, no_head_phantom, reorient


def _gland_points(labels: sitk.Image) -> np.ndarray:
    a = sitk.GetArrayViewFromImage(labels)
    idx = np.argwhere(a > 0)[:, ::-1].astype(float)  # x, y, z index
    d = np.array(labels.GetDirection()).reshape(3, 3) * np.array(labels.GetSpacing())
    return idx @ d.T + np.array(labels.GetOrigin())


def _assert_box_holds_glands(box, labels, midline_x):
    pts = _gland_points(labels)
    assert len(pts) > 0
    inside = np.all((pts >= box.lower - 1e-6) & (pts <= box.upper + 1e-6), axis=1)
    assert inside.all(), f"{(~inside).sum()} gland voxels outside {box}"
    assert abs(box.midline_x - midline_x) < 10.0


@pytest.mark.parametrize("field,kwargs", [
    ("head", {}), ("headneck", {}), ("wholebody", {}), ("head", {"truncate_vertex_mm": 60.0}),
])
def test_box_holds_every_gland(field, kwargs):
    ph = make_phantom(11, field=field, spacing=(1.5, 1.5, 2.5), **kwargs)
    box = locate_head(ph.ct)
    _assert_box_holds_glands(box, ph.labels, ph.midline_x)


@pytest.mark.parametrize("variant", ["ras", "feet_first", "permuted", "oblique10", "anisotropic"])
def test_locator_ignores_storage_orientation(variant):
    ph = make_phantom(12, field="headneck", spacing=(1.5, 1.5, 2.5))
    ct = reorient(ph.ct, variant)
    labels = reorient(ph.labels, variant, is_label=True)
    box = locate_head(ct)
    _assert_box_holds_glands(box, labels, ph.midline_x)
    ref = locate_head(ph.ct)
    assert np.allclose(box.center, ref.center, atol=8.0)


def test_scans_without_a_head_are_refused():
    with pytest.raises(NoHeadError, match="no head"):
        locate_head(no_head_phantom(3))


def test_whole_body_is_fast_enough():
    """Not a benchmark (see Testing/benchmark.py): a guard against a gross slowdown."""
    ph = make_phantom(5, field="wholebody", spacing=(0.98, 0.98, 1.5), size_xy=512, length_mm=1500)
    t = time.perf_counter()
    box = locate_head(ph.ct)
    elapsed = time.perf_counter() - t
    _assert_box_holds_glands(box, ph.labels, ph.midline_x)
    assert elapsed < 10.0
