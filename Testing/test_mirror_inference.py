"""Left-right mirrored inference (inference.MIRROR_KEY) with the shipped network on the sample CT.

The network is trained without mirroring because its right and left glands are different
classes; the mirrored pass must therefore trade right and left before averaging. These tests
check the property that makes it correct: the result for a mirrored patient is the mirror of
the result, gland for gland with sides exchanged, and left stays left.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.errors import ModelError
from GlandSegLib.glands import GLANDS, partner

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
WIDTH_X = 96  # 64-voxel patch, step 32: tiles at 0 and 32, the same after a flip
HEIGHT_Z = 96  # the lower 192 mm of the head crop: parotid and submandibular glands, half the tiles


@pytest.fixture(scope="module")
def model_crop() -> sitk.Image:
    """The sample's head crop on the model grid, cut to WIDTH_X voxels around its middle in x,
    so the sliding window's tiles are placed symmetrically (the test compares exact mirrors),
    and to its lower HEIGHT_Z voxels (identity direction: index 0 is the inferior end)."""
    from GlandSegLib.geometry import crop, model_grid, resample_to
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.pipeline import find_head

    ct = read_ct(SAMPLE).image
    box = find_head(ct, "fast")
    full = resample_to(crop(ct, box), model_grid(box, load_model_info(None).spacing_xyz))
    size = list(full.GetSize())
    assert size[0] >= WIDTH_X and size[2] >= HEIGHT_Z
    start = (size[0] - WIDTH_X) // 2
    return sitk.RegionOfInterest(full, [WIDTH_X, size[1], HEIGHT_Z], [start, 0, 0])


def _mirrored_patient(image: sitk.Image) -> sitk.Image:
    out = sitk.GetImageFromArray(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)[..., ::-1]))
    out.CopyInformation(image)
    return out


def _labels(probs: dict[int, np.ndarray]) -> np.ndarray:
    keys = np.asarray(sorted(probs))
    return keys[np.argmax(np.stack([probs[k] for k in keys]), axis=0)]


@pytest.fixture(scope="module")
def predictions(model_crop) -> dict[str, tuple[dict, dict]]:
    """Raw probabilities (no prior weights: they differ by side, so they are not symmetric
    themselves) for the crop and for the mirrored patient, plain and mirrored inference."""
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    info = load_model_info(None)
    out = {}
    for name, mirror in (("plain", False), ("mirrored", True)):
        predictor = GlandPredictor(info, "cpu", prior_weights={}, mirror=mirror)
        out[name] = (predictor.predict_probabilities(model_crop),
                     predictor.predict_probabilities(_mirrored_patient(model_crop)))
        out[name + "_tiles"] = predictor.n_tiles(model_crop.GetSize()[::-1])
    return out


def _mirror_error(p: dict, q: dict) -> float:
    """Largest difference between the prediction q for the mirrored patient and the mirrored
    prediction p with sides exchanged: 0 for an exactly left-right equivariant predictor."""
    worst = float(np.abs(q[0] - p[0][..., ::-1]).max())
    for g in GLANDS:
        worst = max(worst, float(np.abs(q[partner(g).label] - p[g.label][..., ::-1]).max()))
    return worst


def test_mirrored_inference_is_exactly_left_right_equivariant_and_plain_inference_is_not(predictions):
    assert predictions["mirrored_tiles"] == 2 * predictions["plain_tiles"]
    assert _mirror_error(*predictions["mirrored"]) < 1e-4
    assert _mirror_error(*predictions["plain"]) > 0.05  # the network alone is not symmetric: the test can fail


def test_mirrored_inference_keeps_left_left_and_changes_little(predictions):
    """Exchanging sides the wrong way round would put every gland on the other side; the
    mirrored average must keep each gland where the plain prediction has it. (Stage one's
    lacrimal glands are left out: the lacrimal stage replaces them.)"""
    plain, mirrored = _labels(predictions["plain"][0]), _labels(predictions["mirrored"][0])
    x = np.arange(plain.shape[-1])
    for g in GLANDS:
        if g.organ == "lacrimal":
            continue
        a, b = plain == g.label, mirrored == g.label
        assert a.sum() > 100 and b.sum() > 100, g.key
        centre_plain = (a.sum(axis=(0, 1)) * x).sum() / a.sum()
        centre_mirrored = (b.sum(axis=(0, 1)) * x).sum() / b.sum()
        assert abs(centre_mirrored - centre_plain) < 3, g.key  # voxels of 2 mm; the wrong side is > 10 away
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.6, g.key


def test_a_model_without_both_sides_of_a_gland_cannot_be_mirrored():
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    info = load_model_info(None)
    one_sided = dataclasses.replace(info, label_map={v: c for v, c in info.label_map.items() if c != 4}, stages={})
    with pytest.raises(ModelError, match="partner"):
        GlandPredictor(one_sided, "cpu", mirror=True)
    assert GlandPredictor(one_sided, "cpu", mirror=False).mirror is False  # plain inference still works
    assert GlandPredictor(info, "cpu").mirror is False  # the shipped model does not ask for it


def test_a_second_stage_can_ask_for_mirroring_alone():
    """The lacrimal stage's own index may ask for the mirrored pass while stage one (the
    parotids, fitted without it) stays plain; a choice made by the caller holds for both."""
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import MIRROR_KEY, GlandPredictor

    info = load_model_info(None)
    plain_stage = info.stages["lacrimal"]
    mirrored_stage = dataclasses.replace(plain_stage, metadata={**plain_stage.metadata, "inference": {MIRROR_KEY: True}})
    model = dataclasses.replace(info, stages={"lacrimal": mirrored_stage})

    asked = GlandPredictor(model, "cpu")
    assert asked.mirror is False and asked.lacrimal.mirror is True
    assert asked.lacrimal.n_tiles((64, 64, 64)) == 2 * GlandPredictor(plain_stage, "cpu").n_tiles((64, 64, 64))
    assert GlandPredictor(model, "cpu", mirror=False).lacrimal.mirror is False
    assert GlandPredictor(info, "cpu", mirror=True).lacrimal.mirror is True
    assert GlandPredictor(info, "cpu").lacrimal.mirror is False  # a stage that says nothing follows its model


def test_the_mirrored_lacrimal_stage_is_left_right_equivariant_on_its_box():
    """The lacrimal stage predicts one box per side: mirrored, a right box looks like a left one,
    so the averaged pass must give the mirror of a mirrored box's result with sides exchanged."""
    from GlandSegLib.geometry import PhysicalBox, model_grid, resample_to
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.models.registry import load_model_info
    from GlandSegLib.segmentation.inference import GlandPredictor

    stage = load_model_info(None).stages["lacrimal"]
    ct = read_ct(SAMPLE).image
    truth = sitk.ReadImage(str(SAMPLE).replace("_ct.", "_labels."))
    centre = _label_centre(truth, 1)  # the right lacrimal gland
    half = 32 * stage.spacing_xyz[0]
    box = resample_to(ct, model_grid(PhysicalBox(centre - half, centre + half), stage.spacing_xyz))
    assert box.GetSize() == (64, 64, 64)
    mirrored = GlandPredictor(stage, "cpu", prior_weights={}, mirror=True)
    assert _mirror_error(mirrored.predict_probabilities(box), mirrored.predict_probabilities(_mirrored_patient(box))) < 1e-4
    plain = GlandPredictor(stage, "cpu", prior_weights={}, mirror=False)
    assert _mirror_error(plain.predict_probabilities(box), plain.predict_probabilities(_mirrored_patient(box))) > 0.05


def _label_centre(labels: sitk.Image, value: int) -> np.ndarray:
    idx = np.argwhere(sitk.GetArrayViewFromImage(labels) == value).mean(axis=0)[::-1]
    return np.asarray(labels.TransformContinuousIndexToPhysicalPoint([float(i) for i in idx]))
