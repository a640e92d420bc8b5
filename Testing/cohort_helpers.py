"""A small synthetic cohort on disk, as a hospital would hand it over, for the workflow tests.

Five patients, built once per test process (functools.cache) and shared by the test files:

* pat01..pat03: real DICOM CT series (Testing/dicom_writer.py) + an RTSTRUCT written by
  GlandSegLib.io.rtstruct with the old team's ROI names and ROI numbers
  ({1: Glande_Lacrim_D, 2: Glande_Lacrim_G, 3: Glnd_Submand_L, 4: Parotid_R,
  5: Glnd_Submand_R, 6: Parotid_L}); pat02's Parotid_R ROI also covers the upper half of
  the right submandibular gland (an overlapping pair); pat03 has no left lacrimal gland,
  a BODY structure, and its left parotid is called "Structure_7" (needs --roi-map);
* pat04: NIfTI CT + one mask file per gland, named in four conventions, and a Brainstem mask;
* pat05: NIfTI CT + a labelmap in the old team's value order + a names json.

The phantoms' own labels are kept (TRUTH) so tests can compare with what prepare makes.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_writer import write_ct_series  # noqa: E402

from GlandSegLib.glands import BY_LABEL  # noqa: E402
from GlandSegLib.defaultmodel.phantom import make_phantom  # noqa: E402

SPACING = (2.0, 2.0, 3.0)  # scanner grid of the synthetic CTs: coarse, so the tests stay fast
OLD_TEAM = {1: "Glande_Lacrim_D", 2: "Glande_Lacrim_G", 3: "Glnd_Submand_L", 4: "Parotid_R", 5: "Glnd_Submand_R", 6: "Parotid_L"}
OLD_TO_CANONICAL = {1: 1, 2: 2, 3: 6, 4: 3, 5: 5, 6: 4}
ROI_MAP = {"Structure_7": "parotid_l"}
PATIENT_NAME = "Doe^Jane"
MASK_NAMES = {1: "Lacrimal_R", 2: "lacrimal-gland-L", 3: "Parotid_R", 4: "parotid_left", 5: "Glnd_Submand_R",
              6: "submandibular gland left"}


@functools.cache
def cohort() -> Path:
    """Build the cohort once (about 15 s); returns its folder (removed at exit)."""
    from GlandSegLib.io.dicomref import load_source_series
    from GlandSegLib.io.images import read_ct
    from GlandSegLib.io.rtstruct import RoiMask, write_rtstruct

    root = Path(tempfile.mkdtemp(prefix="glandseg-cohort-"))
    atexit.register(shutil.rmtree, root, True)
    cohort_dir = root / "cohort"
    truth_dir = root / "truth"
    truth_dir.mkdir()
    for i in range(1, 6):
        pid = f"pat{i:02d}"
        ph = make_phantom(100 + i, field="head", spacing=SPACING)
        sitk.WriteImage(ph.labels, str(truth_dir / f"{pid}.nii.gz"))
        sitk.WriteImage(ph.ct, str(truth_dir / f"{pid}_ct.nii.gz"))
        folder = cohort_dir / pid
        lab = sitk.GetArrayFromImage(ph.labels)
        if i <= 3:
            write_ct_series(ph.ct, folder / "CT", patient_name=PATIENT_NAME, description="head CT")
            loaded = read_ct(folder / "CT")
            source = load_source_series(loaded.series.files, loaded.image)
            rois = []
            for old, canon in OLD_TO_CANONICAL.items():
                name = OLD_TEAM[old]
                mask = lab == canon
                if i == 2 and canon == 3:  # Parotid_R drawn over the top of the right submandibular gland
                    sub = lab == 5
                    zs = np.nonzero(sub.any(axis=(1, 2)))[0]
                    top = sub.copy()
                    top[: zs[len(zs) // 2]] = False
                    mask = mask | top
                if i == 3 and canon == 2:
                    continue  # left lacrimal gland not outlined
                if i == 3 and canon == 4:
                    name = "Structure_7"
                rois.append(RoiMask(old, name, mask, BY_LABEL[canon].color_255))
            if i == 3:
                rois.append(RoiMask(7, "BODY", sitk.GetArrayFromImage(ph.ct) > -400, (0, 255, 0), "EXTERNAL"))
            write_rtstruct(rois, source, folder / "RTSTRUCT" / "rs.dcm", label="OLDTEAM")
        elif i == 4:
            folder.mkdir(parents=True)
            sitk.WriteImage(ph.ct, str(folder / "ct.nii.gz"))
            (folder / "masks").mkdir()
            for label, name in MASK_NAMES.items():
                m = sitk.GetImageFromArray((lab == label).astype(np.uint8))
                m.CopyInformation(ph.labels)
                sitk.WriteImage(m, str(folder / "masks" / f"{name}.nii.gz"))
            other = sitk.GetImageFromArray((sitk.GetArrayFromImage(ph.ct) > 1000).astype(np.uint8))
            other.CopyInformation(ph.labels)
            sitk.WriteImage(other, str(folder / "masks" / "Brainstem.nii.gz"))  # not a gland: ignored
        else:
            folder.mkdir(parents=True)
            sitk.WriteImage(ph.ct, str(folder / "image.nii.gz"))
            old = np.zeros_like(lab)
            for o, canon in OLD_TO_CANONICAL.items():
                old[lab == canon] = o
            img = sitk.GetImageFromArray(old)
            img.CopyInformation(ph.labels)
            sitk.WriteImage(img, str(folder / "labels.nii.gz"))
            (folder / "labels.json").write_text(json.dumps({str(k): v for k, v in OLD_TEAM.items()}))
    (root / "roi_map.json").write_text(json.dumps(ROI_MAP))
    return cohort_dir


def truth(case_id: str) -> sitk.Image:
    """The phantom's own canonical labels for a patient (on its scanner grid)."""
    return sitk.ReadImage(str(cohort().parent / "truth" / f"{case_id}.nii.gz"))


def roi_map_file() -> Path:
    return cohort().parent / "roi_map.json"


PREPARE_SPACING = ("5", "5", "5")  # coarse crops: one 48^3 tile per case, so the loop stays fast


@functools.cache
def prepared_dataset() -> Path:
    """`glandseg prepare` of the cohort (20% hold-out, --roi-map) into <tmp>/nnUNet_raw/Dataset902_Loop."""
    from GlandSegLib.cli import main

    work = Path(tempfile.mkdtemp(prefix="glandseg-work-"))
    atexit.register(shutil.rmtree, work, True)
    out = work / "nnUNet_raw" / "Dataset902_Loop"
    rc = main(["prepare", str(cohort()), "-o", str(out), "--roi-map", str(roi_map_file()), "--holdout", "0.2",
               "--seed", "0", "--spacing", *PREPARE_SPACING])
    assert rc == 0, "prepare failed"
    return out
