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


def _held_out_dice() -> dict[str, float]:
    import json

    ev = json.loads((load_model_info(None).folder / "evaluation.json").read_text())
    return {k: v["dice_median"] or 0.0 for k, v in ev["heldout_phantoms"]["summary"].items()}


def _found(labels: sitk.Image) -> list:
    arr = sitk.GetArrayFromImage(labels)
    return [g for g in GLANDS if (arr == g.label).sum() > 0]


def test_the_reference_result_finds_the_parotids(results):
    """What the shipped model finds; the checks below compare every gland it finds."""
    found = {g.key for g in _found(results["lps"])}
    assert {"parotid_r", "parotid_l"} <= found, found


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "lps"])
def test_variants_agree_in_physical_space(results, variant):
    ref = results["lps"]
    on_ref = sitk.GetArrayFromImage(resample_to(results[variant], ref, is_label=True))
    ref_arr = sitk.GetArrayFromImage(ref)
    held_out = _held_out_dice()
    reinterpolated = variant in ("oblique10", "anisotropic")
    for g in _found(ref):
        d = dice(on_ref == g.label, ref_arr == g.label)
        # Lossless variants hold the same voxels: 0.95 for every gland the model has learned
        # (held-out Dice >= 0.75 in its evaluation.json). Oblique and anisotropic variants
        # re-interpolate the CT itself, and a gland the model knows less well moves with that
        # (measured with glandseg-v2 at tile step 0.75: right submandibular at 0.76 on both,
        # left submandibular 0.88-0.89, the parotids >= 0.90), which measures the model, not
        # the geometry: the laterality test below still holds for every gland.
        if reinterpolated:
            floor = 0.85 if held_out.get(g.key, 0.0) >= 0.80 else 0.7
        else:
            floor = 0.95 if held_out.get(g.key, 0.0) >= 0.75 else 0.7
        assert d is not None and d >= floor, f"{variant} {g.name}: Dice {d:.3f}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_left_gland_is_on_the_patients_left(results, phantom, variant):
    labels = results[variant]
    arr = sitk.GetArrayFromImage(labels)
    for g in _found(results["lps"]):
        c = centroid_lps(arr == g.label, labels)
        assert c is not None, f"{variant}: {g.name} missing"
        assert (c[0] > phantom.midline_x) == (g.side == "L"), f"{variant}: {g.name} at x={c[0]:.1f}"
