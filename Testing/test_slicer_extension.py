"""GlandSeg.json, the Slicer Extensions Index entry, and CMakeLists.txt never disagree.

The entry follows the index's current format (a JSON file per extension, schema
slicer-extension-catalog-entry-schema-v1.0.2 in Slicer/Slicer's Schemas/), is generated
from the top-level CMakeLists.txt by GlandSeg/Utilities/extension_description.py, and passes
the checks of the index's own checker (scripts/check_description_files.py) that need no
network: LF endings, schema keys, extension and repository names, category, literal icon
and screenshot addresses, project() name. What needs the network (the addresses answer,
the GitHub topic, the LICENSE file in the published repository) is on the README's Release
checklist.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "GlandSeg" / "Utilities"))

import extension_description as ed  # noqa: E402

CMAKE_TEXT = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
ENTRY = REPO / "GlandSeg.json"


def test_entry_is_generated_from_cmakelists():
    assert ENTRY.read_text(encoding="utf-8") == ed.render_json(CMAKE_TEXT), \
        "GlandSeg.json is stale: run python GlandSeg/Utilities/extension_description.py"
    assert ed.render_cmake(CMAKE_TEXT) == CMAKE_TEXT, \
        "CMakeLists.txt addresses differ from GLANDSEG_REPOSITORY_URL: run python GlandSeg/Utilities/extension_description.py"


def test_entry_passes_the_index_checks_that_work_offline():
    assert ed.index_problems(CMAKE_TEXT, ENTRY.read_text(encoding="utf-8"), ENTRY.stem) == []


def test_entry_matches_cmakelists_field_by_field():
    entry = json.loads(ENTRY.read_text(encoding="utf-8"))
    settings = ed.cmake_settings(CMAKE_TEXT)
    assert entry["build_dependencies"] == settings["EXTENSION_DEPENDS"].split() == ["PyTorch", "NNUNet"]
    assert entry["category"] == settings["EXTENSION_CATEGORY"]
    assert entry["scm_url"] == settings["GLANDSEG_REPOSITORY_URL"] + ".git"
    assert entry["scm_revision"] == settings["GLANDSEG_REPOSITORY_BRANCH"]
    assert ed.project_name(CMAKE_TEXT) == ENTRY.stem == "GlandSeg"
    assert set(entry) <= set(ed.SCHEMA_PROPERTIES) and set(ed.SCHEMA_REQUIRED) <= set(entry)


def test_every_address_comes_from_the_one_repository_setting():
    settings = ed.cmake_settings(CMAKE_TEXT)
    repository = settings["GLANDSEG_REPOSITORY_URL"]
    raw = ed.raw_url(repository, settings["GLANDSEG_REPOSITORY_BRANCH"])
    assert settings["EXTENSION_HOMEPAGE"] == f"{repository}#readme"
    for url in [settings["EXTENSION_ICONURL"], *settings["EXTENSION_SCREENSHOTURLS"].split()]:
        assert url.startswith(raw + "/"), url
        assert (REPO / url[len(raw) + 1:]).is_file(), f"{url} names no file of this repository"
    # no other place in the repository spells a repository address of its own
    for path in [REPO / "README.md", REPO / "pyproject.toml", *(REPO / "GlandSeg").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        for found in re.findall(r"https://(?:github\.com|raw\.githubusercontent\.com)/[Gg]land[Ss]eg/[\w.-]+", text):
            pytest.fail(f"{path.relative_to(REPO)} spells the repository address ({found}); derive it from CMakeLists.txt")


def test_moving_the_repository_rewrites_every_address(tmp_path):
    moved = ed.render_cmake(CMAKE_TEXT, "https://github.com/example-lab/SlicerGlandSeg.git", "5.10")
    settings = ed.cmake_settings(moved)
    assert settings["GLANDSEG_REPOSITORY_URL"] == "https://github.com/example-lab/SlicerGlandSeg"
    assert settings["EXTENSION_HOMEPAGE"] == "https://github.com/example-lab/SlicerGlandSeg#readme"
    assert settings["EXTENSION_ICONURL"] == \
        "https://raw.githubusercontent.com/example-lab/SlicerGlandSeg/5.10/GlandSeg/Resources/Icons/GlandSeg.png"
    entry = json.loads(ed.render_json(moved))
    assert (entry["scm_url"], entry["scm_revision"]) == ("https://github.com/example-lab/SlicerGlandSeg.git", "5.10")
    assert ed.index_problems(moved, ed.render_json(moved), "GlandSeg") == []


@pytest.mark.parametrize("mutate, problem", [
    (lambda c, j: (c, j.replace("\n", "\r\n")), "LF line endings"),
    (lambda c, j: (c, j.replace('"tier": 1', '"tier": 1,\n  "homepage": "x"')), "not in the schema"),
    (lambda c, j: (c, j.replace('"NNUNet"', '"SlicerNNUNet"')), "not spelled as in the index"),
    (lambda c, j: (c.replace("SlicerGlandSeg", "GlandSeg"), j.replace("SlicerGlandSeg", "GlandSeg")), "must start with 'Slicer'"),
    (lambda c, j: (c.replace('set(EXTENSION_ICONURL "https://raw.githubusercontent.com/glandseg/SlicerGlandSeg/main',
                             'set(EXTENSION_ICONURL "${GLANDSEG_RAW_URL}'), j), "literal https addresses"),
    (lambda c, j: (c.replace("project(GlandSeg)", "project(Glands)"), j), "differs from GlandSeg.json"),
    (lambda c, j: (c.replace("EXTENSION_DEPENDS PyTorch NNUNet", "EXTENSION_DEPENDS PyTorch"), j), "differs from CMakeLists.txt"),
])
def test_the_checks_can_fail(mutate, problem):
    cmake, entry = mutate(CMAKE_TEXT, ENTRY.read_text(encoding="utf-8"))
    problems = ed.index_problems(cmake, entry, "GlandSeg")
    assert any(problem in p for p in problems), problems


def test_utility_check_mode_agrees():
    r = subprocess.run([sys.executable, str(REPO / "GlandSeg" / "Utilities" / "extension_description.py"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_repository_fits_the_index_size_limit():
    """The index's checker refuses a checked-out repository over 100 MB."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, timeout=60)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    total = sum((REPO / f).stat().st_size for f in files.stdout.decode().split("\0") if f and (REPO / f).is_file())
    assert total < 100 * 1024 * 1024, f"tracked files: {total / 2**20:.1f} MB"
