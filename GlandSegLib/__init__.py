"""GlandSeg's logic: everything that thinks, importable without 3D Slicer.

Data flows one way: CT image -> head box -> cropped, resampled crop -> nnU-Net ->
labels in the crop -> labels pasted back on the CT grid -> segments + statistics.
Each step takes and returns SimpleITK images, so physical geometry travels with the data.

Layers, each using only those listed after it (Testing/test_layout.py keeps this true):
``cli`` -> ``defaultmodel`` -> ``cohort`` -> ``segmentation``, ``training`` -> ``models`` ->
``io`` -> the shared vocabulary at this level (``glands``, ``names``, ``errors``,
``progress``, ``geometry``).

The public API: ``segment`` (the main job), ``GLANDS`` (the six glands) and the error
classes. ``segment`` is imported on first use, so ``import GlandSegLib`` stays light.
"""

from __future__ import annotations

from typing import Any

from GlandSegLib.errors import (CancelledError, DependencyError, GlandSegError, InputNotFoundError, InvalidInputError,
                                ModelError, NoHeadError, OutputExistsError, SeriesChoiceError)
from GlandSegLib.glands import GLANDS

__version__ = "0.1.0"

__all__ = ["segment", "GLANDS", "GlandSegError", "InputNotFoundError", "InvalidInputError", "SeriesChoiceError",
           "NoHeadError", "ModelError", "OutputExistsError", "DependencyError", "CancelledError", "__version__"]


def __getattr__(name: str) -> Any:
    # the pipeline pulls in nnU-Net/torch lazily, but SimpleITK and scipy at import: load it when asked
    if name == "segment":
        from GlandSegLib.segmentation.pipeline import segment

        return segment
    raise AttributeError(f"module 'GlandSegLib' has no attribute {name!r}")
