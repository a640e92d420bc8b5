"""The fast locator on real head-and-neck CTs (OpenKBP validation-pats, never tuned on).

The box must contain every parotid voxel of every validation case: a gland cut by the
box cannot be segmented.
"""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from GlandSegLib.segmentation.headbox import locate_head

RIGHT_PAROTID, LEFT_PAROTID = 3, 4


def _validation_cases(shared_data):
    root = shared_data / "openkbp" / "validation-pats"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    return sorted(root.iterdir(), key=lambda p: int(p.name.split("_")[1]))


def test_box_holds_every_parotid_voxel_in_all_validation_cases(shared_data):
    results = {}
    for case in _validation_cases(shared_data):
        ct = sitk.ReadImage(str(case / "ct.nrrd"))
        lab = sitk.ReadImage(str(case / "oar_labels.nrrd"))
        box = locate_head(ct)
        a = sitk.GetArrayViewFromImage(lab)
        idx = np.argwhere((a == RIGHT_PAROTID) | (a == LEFT_PAROTID))
        pts = np.array([lab.TransformIndexToPhysicalPoint([int(i[2]), int(i[1]), int(i[0])]) for i in idx])
        if len(pts) == 0:
            continue
        inside = np.all((pts >= box.lower) & (pts <= box.upper), axis=1)
        results[case.name] = (box.method, float(inside.mean()))
        # the midline lies between the two parotids: left (label 4) has the larger x
        values = a[idx[:, 0], idx[:, 1], idx[:, 2]]
        if (values == RIGHT_PAROTID).any() and (values == LEFT_PAROTID).any():
            r = pts[values == RIGHT_PAROTID][:, 0].mean()
            l_ = pts[values == LEFT_PAROTID][:, 0].mean()
            assert r < box.midline_x < l_, case.name
    missed = {k: v for k, v in results.items() if v[1] < 1.0}
    assert len(results) >= 30
    assert not missed, json.dumps(missed)
