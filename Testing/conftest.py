"""Shared fixtures. Tests that need ../shared (real public data) skip where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GLANDSEG_SHARED", REPO.parent / "shared"))

os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("OMP_NUM_THREADS", "2")


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
