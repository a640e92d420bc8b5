import numpy as np
import pytest

from GlandSegLib.cohort.metrics import dice, hd95, surface_dice, volume_error_percent


def _ball(shape, center, r, spacing=(1.0, 1.0, 1.0)):
    zz, yy, xx = np.indices(shape)
    d = ((zz - center[0]) * spacing[0]) ** 2 + ((yy - center[1]) * spacing[1]) ** 2 + ((xx - center[2]) * spacing[2]) ** 2
    return d <= r * r


def test_dice_identical_disjoint_and_half():
    a = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True
    b = np.zeros_like(a)
    b[2:6, 2:6, 4:8] = True
    assert dice(a, a) == 1.0
    assert dice(a, ~a & False) == 0.0
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros_like(a), np.zeros_like(a)) is None


def test_hd95_of_shifted_ball_equals_the_shift_in_mm():
    spacing = (3.0, 1.0, 1.0)  # anisotropic: a shift of 2 slices is 6 mm
    a = _ball((40, 40, 40), (20, 20, 20), 8, spacing)
    b = np.roll(a, 2, axis=0)
    assert hd95(a, b, spacing) == pytest.approx(6.0, abs=0.5)
    assert hd95(a, a, spacing) == 0.0


def test_surface_dice_tolerance():
    a = _ball((40, 40, 40), (20, 20, 20), 10)
    b = np.roll(a, 2, axis=2)  # 2 mm shift
    assert surface_dice(a, b, (1, 1, 1), 2.5) > 0.95
    assert surface_dice(a, b, (1, 1, 1), 0.5) < 0.6
    assert surface_dice(a, np.zeros_like(a), (1, 1, 1), 2.0) == 0.0


def test_volume_error():
    a = np.zeros((5, 5, 5), bool)
    a[:2] = True
    b = np.zeros_like(a)
    b[:1] = True
    assert volume_error_percent(a, b) == pytest.approx(100.0)
    assert volume_error_percent(a, np.zeros_like(a)) is None
