"""Shared fixtures. Tests that need ../shared (real public data) skip where it is absent."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLANDSEG_SHARED", REPO.parent / "shared"))

os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("OMP_NUM_THREADS", "2")


def in_ci() -> bool:
    """CI runs `bash .ci/run` with CI=true."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(module: str, reason: str = "") -> ModuleType:
    """Import a package that the `[test]` extra installs (slicer-core's `slicer`, `slicerio`,
    `vermin`, ...): skip where it is missing locally, FAIL under CI, where a missing package
    means the environment is broken and its tests would otherwise vanish without a word.

    Use at module level (`slicer = require("slicer")`) or inside a test or fixture.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f"{module} is not installed ({exc}){': ' + reason if reason else ''}"
        if in_ci():
            pytest.fail(f"{what}; the [test] extra installs it, so under CI this is an error", pytrace=False)
        pytest.skip(what, allow_module_level=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip(f"team data not found at {data} (set GLANDSEG_SHARED): real-data tests skipped")
    return data


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch):
    """Never read or write the user's ~/.glandseg from tests."""
    monkeypatch.setenv("GLANDSEG_HOME", str(tmp_path_factory.mktemp("glandseg_home")))
