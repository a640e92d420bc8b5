"""Cropped cases -> nnU-Net v2 raw dataset (DatasetNNN_Name: imagesTr, labelsTr, dataset.json).

Cases arrive already cropped and resampled by GlandSeg's inference recipe (head box ->
identity-direction LPS grid at the model spacing), so what the network sees in training is
what it sees at inference; each case is checked for that before it is written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from GlandSegLib.glands import GLANDS, IGNORE_LABEL
from GlandSegLib.errors import InvalidInputError
from GlandSegLib.training.defaults import LOCATOR, RAW_FILE_ENDING

_DATASET_DIR = re.compile(r"^Dataset(\d{3})_([A-Za-z0-9][A-Za-z0-9_\-]*)$")
_CASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

def parse_dataset_path(path: str | Path) -> tuple[Path, int, str]:
    """NNUNET_RAW/DatasetNNN_Name -> (raw root, id, name); InvalidInputError otherwise."""
    p = Path(path).absolute()
    m = _DATASET_DIR.match(p.name)
    if not m or not 1 <= int(m.group(1)) <= 999:
        raise InvalidInputError(f"{path}: the output must be a folder named DatasetNNN_Name (NNN = 001..999), e.g. nnUNet_raw/Dataset501_Glands")
    return p.parent, int(m.group(1)), m.group(2)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    if not _CASE_ID.match(name):
        raise ValueError(f"dataset name {name!r} must be letters, digits, '_' or '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


def label_table(ignore_label: bool = False) -> dict[str, int]:
    """dataset.json's `labels`: background, then the six glands by TG-263 name in label order,
    then nnU-Net's "ignore" where some cases supervise only part of the image."""
    labels: dict[str, int] = {"background": 0}
    for g in sorted(GLANDS, key=lambda g: g.label):
        labels[g.tg263] = g.label
    if ignore_label:
        labels["ignore"] = IGNORE_LABEL
    return labels


def _check_case(case_id: str, ct: sitk.Image, labels: sitk.Image, crop_spacing: Sequence[float],
                ignore_label: bool = False) -> None:
    if not _CASE_ID.match(case_id):
        raise ValueError(f"case id {case_id!r} must be letters, digits, '_' or '-'")
    if ct.GetDimension() != 3 or labels.GetDimension() != 3:
        raise ValueError(f"{case_id}: images must be 3D")
    if ct.GetSize() != labels.GetSize():
        raise ValueError(f"{case_id}: CT size {ct.GetSize()} != label size {labels.GetSize()}")
    for what, a, b in (("spacing", ct.GetSpacing(), labels.GetSpacing()), ("origin", ct.GetOrigin(), labels.GetOrigin())):
        if not np.allclose(a, b, atol=1e-4):
            raise ValueError(f"{case_id}: CT {what} {a} != label {what} {b}")
    if not np.allclose(ct.GetSpacing(), crop_spacing, atol=1e-4):
        raise ValueError(f"{case_id}: spacing {ct.GetSpacing()} is not the crop spacing {tuple(crop_spacing)}; prepare cases with resample_box")
    for img in (ct, labels):
        if not np.allclose(img.GetDirection(), _IDENTITY, atol=1e-6):
            raise ValueError(f"{case_id}: direction must be identity (LPS model grid); prepare cases with resample_box")
    values = np.unique(sitk.GetArrayViewFromImage(labels))
    allowed = {0, *(g.label for g in GLANDS), *((IGNORE_LABEL,) if ignore_label else ())}
    extra = sorted({int(v) for v in values} - allowed)
    if extra:
        raise ValueError(f"{case_id}: label values {extra} are not GlandSeg labels {sorted(allowed)}")


# --------------------------------------------------------------------------- raw dataset


def write_raw_dataset(
    cases: Iterable[tuple[str, sitk.Image, sitk.Image]],
    raw_root: str | os.PathLike[str],
    dataset_id: int,
    name: str,
    crop_spacing: Sequence[float],
    description: str,
    *,
    locator: str = LOCATOR,
    file_ending: str = RAW_FILE_ENDING,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
    ignore_label: bool = False,
) -> Path:
    """Write already-cropped cases as an nnU-Net v2 raw dataset; return its folder.

    Each case is (case_id, ct, labels) on the same identity-direction grid at
    `crop_spacing` (x, y, z mm). CT is stored as float32 (it was linearly resampled),
    labels as uint8. dataset.json names the glands by TG-263 in label order and records
    the crop recipe in a "glandseg" block, so the exported model can say how its inputs
    must be prepared. Images go through nnU-Net's SimpleITKIO, which keeps geometry.
    ignore_label: cases may mark unsupervised voxels with IGNORE_LABEL (partial labels).
    """
    if file_ending not in (".nii.gz", ".nrrd", ".mha"):
        raise ValueError(f"unsupported file ending {file_ending!r}")
    spacing = [float(s) for s in crop_spacing]
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"crop spacing must be three positive numbers, got {crop_spacing}")
    raw_root = Path(raw_root)
    folder = raw_root / dataset_folder_name(dataset_id, name)
    others = [p for p in raw_root.glob(f"Dataset{int(dataset_id):03d}_*") if p != folder] if raw_root.is_dir() else []
    if others:
        raise FileExistsError(f"dataset id {dataset_id} is already used by {others[0]}")
    if folder.exists():
        if not overwrite:
            raise FileExistsError(f"{folder} exists (pass overwrite=True to replace it)")
        shutil.rmtree(folder)
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    images_dir.mkdir(parents=True)
    labels_dir.mkdir()

    seen: set[str] = set()
    for case_id, ct, labels in cases:
        if case_id in seen:
            raise ValueError(f"duplicate case id {case_id!r}")
        _check_case(case_id, ct, labels, spacing, ignore_label)
        seen.add(case_id)
        sitk.WriteImage(sitk.Cast(ct, sitk.sitkFloat32), str(images_dir / f"{case_id}_0000{file_ending}"), useCompression=True)
        sitk.WriteImage(sitk.Cast(labels, sitk.sitkUInt8), str(labels_dir / f"{case_id}{file_ending}"), useCompression=True)
    if not seen:
        raise ValueError("no training cases")

    dataset_json: dict[str, Any] = {
        "name": name,
        "description": description,
        "channel_names": {"0": "CT"},
        "labels": label_table(ignore_label),
        "numTraining": len(seen),
        "file_ending": file_ending,
        # explicit: the plans record it and inference reads with the same class
        "overwrite_image_reader_writer": "SimpleITKIO",
        # every case listed: without this nnU-Net finds the files with a fork()ed Pool(12), which
        # can deadlock in a process that already runs threads (torch, Slicer, a test runner)
        "dataset": {c: {"images": [f"imagesTr/{c}_0000{file_ending}"], "label": f"labelsTr/{c}{file_ending}"}
                    for c in sorted(seen)},
        "glandseg": {
            "format": 1,
            "crop": {
                "locator": locator,
                "spacing_mm": spacing,
                "direction": "identity",
                "space": "LPS",
                "ct_interpolation": "linear",
                "label_interpolation": "nearest",
                "functions": ["GlandSegLib.segmentation.headbox.locate_head", "GlandSegLib.geometry.resample_box"],
            },
            "glands": [{"label": g.label, "key": g.key, "tg263": g.tg263, "name": g.name} for g in GLANDS],
            **(extra or {}),
        },
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n")
    return folder


