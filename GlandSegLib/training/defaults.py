"""The training settings GlandSeg uses unless told otherwise, and the nnU-Net names it trains under.

Kept apart so that dataset writing, planning and training read one set of values.
"""

from __future__ import annotations

from collections.abc import Callable

TRAINER_NAME = "nnUNetTrainerNoMirroring"
PLANS_IDENTIFIER = "nnUNetPlans"
DEFAULT_CONFIGURATION = "3d_compact"
# The CPU default, measured on the 2-core development machine (train_default's docstring
# has the numbers): 64^3 voxels of 2 mm = 128 mm of context, enough for a patch centred on
# a parotid to reach the midline (~58 mm away), which is what tells right from left; thin
# features keep a training step near 1.1 s and a CPU inference tile near 0.3 s.
DEFAULT_SPACING: tuple[float, float, float] = (2.0, 2.0, 2.0)
DEFAULT_PATCH: tuple[int, int, int] = (64, 64, 64)
DEFAULT_FEATURES: tuple[int, ...] = (8, 16, 32, 64, 128)
DEFAULT_BATCH = 2
# ~40 minutes on that machine including case preparation (about 1.3 s per iteration)
DEFAULT_EPOCHS = 50
DEFAULT_ITERATIONS = 30
LOCATOR = "fast"
RAW_FILE_ENDING = ".nii.gz"
Progress = Callable[[str], None]

