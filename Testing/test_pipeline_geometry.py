"""One CT stored seven ways gives the same glands in physical space, left on the left.

The CT is the shipped sample (a phantom around real expert outlines of a held-out TCIA
scan, see Resources/sample/README.md); each variant stores the same physical content
differently (RAS, flipped, permuted axes, feet-first, oblique 10 degrees, anisotropic
0.7x0.7x3 mm). Each result is resampled onto the LPS variant's grid and compared there.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.geometry import centroid_lps, resample_to
from GlandSegLib.glands import GLANDS
from GlandSegLib.io.images import write_image_atomic
from GlandSegLib.segmentation.inference import GlandPredictor
from GlandSegLib.cohort.metrics import dice
from GlandSegLib.models.registry import load_model_info
from GlandSegLib.defaultmodel.phantom import VARIANTS, reorient
from GlandSegLib.segmentation.pipeline import segment

REPO = Path(__file__).resolve().parents[1]
SAMPLE_CT = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
SAMPLE_LABELS = REPO / "Resources" / "sample" / "phantom_head_labels.nii.gz"


@pytest.fixture(scope="module")
def predictor():
    return GlandPredictor(load_model_info(None), "cpu")


@pytest.fixture(scope="module")
def phantom():
    """The sample CT, and the patient's midline: halfway between the true parotids."""
    ct, labels = sitk.ReadImage(str(SAMPLE_CT)), sitk.ReadImage(str(SAMPLE_LABELS))
    arr = sitk.GetArrayFromImage(labels)
    xs = [centroid_lps(arr == g.label, labels)[0] for g in GLANDS if g.organ == "parotid"]
    return SimpleNamespace(ct=ct, labels=labels, midline_x=float(np.mean(xs)))


@pytest.fixture(scope="module")
def results(predictor, phantom, tmp_path_factory):
    out = {}
    root = tmp_path_factory.mktemp("variants")
    for variant in VARIANTS:
        path = root / f"{variant}.nii.gz"
        write_image_atomic(reorient(phantom.ct, variant), path)
        out[variant] = segment(path, root / variant, predictor=predictor).labels
    return out


def _found(labels: sitk.Image) -> list:
    arr = sitk.GetArrayFromImage(labels)
    return [g for g in GLANDS if (arr == g.label).sum() > 0]


# What these bounds protect: the pipeline's geometry. The same anatomy stored differently
# must give the same glands in physical space, whatever the model. They are fixed numbers,
# not the model's own evaluation:
# * lossless storage (RAS, flipped, permuted, feet-first) holds the very same voxels: the
#   model sees the same crop, and the result must be the same (measured: Dice 1.000 for
#   every gland, glandseg-v3, tile step 0.5).
# * oblique (10 degrees) and anisotropic (0.7 x 0.7 x 3 mm) storage re-interpolate the CT
#   itself, so the crop differs slightly and so may the boundary. Measured with glandseg-v3,
#   tile step 0.5, on CPU: oblique lacrimal R/L 0.892/0.876, parotid 0.962/0.956,
#   submandibular 0.934/0.945; anisotropic lacrimal 0.882/0.877, parotid 0.958/0.958,
#   submandibular 0.936/0.939. A geometry error breaks 0.85: the reference result moved by
#   1 mm gives lacrimal Dice 0.74-0.76 (2 mm: parotid 0.86-0.87, submandibular 0.81-0.83).
# A model that misses this bound is a model whose result depends on how a scan is stored:
# report it, do not lower the bound.
LOSSLESS_DICE = 0.99
REINTERPOLATED_DICE = 0.85


def test_the_reference_result_finds_every_gland(results):
    """Every gland is compared below, so every gland must be there to compare."""
    found = {g.key for g in _found(results["lps"])}
    assert found == {g.key for g in GLANDS}, found


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "lps"])
def test_variants_agree_in_physical_space(results, variant):
    ref = results["lps"]
    on_ref = sitk.GetArrayFromImage(resample_to(results[variant], ref, is_label=True))
    ref_arr = sitk.GetArrayFromImage(ref)
    floor = REINTERPOLATED_DICE if variant in ("oblique10", "anisotropic") else LOSSLESS_DICE
    low = {}
    for g in GLANDS:
        d = dice(on_ref == g.label, ref_arr == g.label)
        if d is None or d < floor:
            low[g.key] = d
    assert not low, f"{variant}: Dice below {floor} against the LPS result: {low}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_left_gland_is_on_the_patients_left(results, phantom, variant):
    labels = results[variant]
    arr = sitk.GetArrayFromImage(labels)
    for g in _found(results["lps"]):
        c = centroid_lps(arr == g.label, labels)
        assert c is not None, f"{variant}: {g.name} missing"
        assert (c[0] > phantom.midline_x) == (g.side == "L"), f"{variant}: {g.name} at x={c[0]:.1f}"
