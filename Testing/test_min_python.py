"""The oldest 3D Slicer GlandSeg claims (5.10, Python 3.12) is true of its code.

- `vermin` (from the [test] extra) finds no construct in GlandSeg/ or GlandSegLib/ that needs
  a Python newer than pyproject's requires-python (3.10), which is not newer than the
  Python of the oldest supported Slicer: CI fails on a `match` statement, `except*`,
  `tomllib`, ... the day someone writes one.
- GlandSeg.py and GlandSegSlicerLib/compat.py parse on Python 3.9 (Slicer 5.2-5.8), so an
  older Slicer can load the module far enough to tell the user what to upgrade.
- The start-up check itself: which versions it accepts and what it says.
- README and CMakeLists.txt state the same minimum.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import require

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "GlandSeg"
sys.path.insert(0, str(MODULE))

from GlandSegSlicerLib import compat  # noqa: E402

EARLY_FILES = [MODULE / "GlandSeg.py", MODULE / "GlandSegSlicerLib" / "compat.py", MODULE / "GlandSegSlicerLib" / "__init__.py"]


def dotted(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def requires_python() -> tuple[int, int]:
    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    m = re.fullmatch(r">=\s*(\d+)\.(\d+)", spec.strip())
    assert m, f"requires-python {spec!r}: expected a plain lower bound"
    return int(m.group(1)), int(m.group(2))


def run_vermin(target: tuple[int, int], paths: list[Path]) -> subprocess.CompletedProcess:
    require("vermin", "the minimum-Python check needs it")
    entry = "import sys; from vermin import main; sys.argv[0] = 'vermin'; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", entry, "--no-tips", "--violations", "--no-parse-comments",
                           f"-t={dotted(target)}-", *map(str, paths)], capture_output=True, text=True, timeout=300)


def test_the_claims_agree():
    """The module's check, pyproject and the claim about Slicer's Python tell one story."""
    assert compat.REQUIRED_PYTHON == requires_python(), "compat.REQUIRED_PYTHON and pyproject's requires-python differ"
    assert compat.REQUIRED_PYTHON <= compat.MINIMUM_SLICER_PYTHON, \
        "GlandSeg's code would need a newer Python than its oldest supported Slicer ships"
    assert compat.OLDEST_PYTHON_TOLD < compat.REQUIRED_PYTHON


def test_code_runs_on_the_claimed_python():
    """No construct newer than requires-python (hence not newer than Slicer 5.10's 3.12)."""
    r = run_vermin(compat.REQUIRED_PYTHON, [MODULE, REPO / "GlandSegLib"])
    assert r.returncode == 0, f"code needs a Python newer than {dotted(compat.REQUIRED_PYTHON)}:\n{r.stdout}\n{r.stderr}"
    assert "Minimum required versions" in r.stdout, r.stdout


def test_module_entry_parses_on_old_slicer_python():
    """GlandSeg.py and compat.py: nothing newer than 3.9, so Slicer 5.8 can show the message."""
    r = run_vermin(compat.OLDEST_PYTHON_TOLD, EARLY_FILES)
    assert r.returncode == 0, r.stdout + r.stderr


def test_vermin_would_catch_a_newer_construct(tmp_path):
    """The check can fail: a match statement (3.10) against target 3.9, zip(strict=) too."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f(x):\n    match x:\n        case 1:\n            return zip([1], [2], strict=True)\n")
    r = run_vermin((3, 9), [bad])
    assert r.returncode != 0 and "3.10" in r.stdout


def _old_python() -> str | None:
    """A real Python 3.9 on this machine (pyenv or PATH), for the strongest form of the check."""
    for candidate in ("python3.9", *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))):
        try:
            r = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0 and r.stdout.strip() == "True":
            return candidate
    return None


def test_check_runs_on_python_3_9_and_names_the_upgrade(tmp_path):
    """On a real 3.9 interpreter (Slicer 5.8's): compat imports, GlandSeg.py compiles, and the
    check refuses Slicer 5.8.1 with a message that names 5.10."""
    python = _old_python()
    if python is None:
        pytest.skip("no Python 3.9 interpreter on this machine; vermin's check above still covers the syntax")
    probe = (f"import sys, py_compile; sys.path.insert(0, {str(MODULE)!r})\n"
             f"py_compile.compile({str(MODULE / 'GlandSeg.py')!r}, cfile={str(tmp_path / 'GlandSeg.pyc')!r}, doraise=True)\n"
             "from GlandSegSlicerLib import compat\n"
             "print(compat.unsupported_reason((5, 8, 1), sys.version_info))\n")
    r = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "needs 3D Slicer 5.10 or later" in r.stdout and "5.8.1" in r.stdout and "Python 3.9" in r.stdout


@pytest.mark.parametrize("slicer, python, ok", [
    ((5, 10, 0), (3, 12, 10), True),
    ((5, 12, 1), (3, 12, 10), True),
    ((5, 11, 0), (3, 13, 1), True),
    ((6, 0, 0), (3, 14, 0), True),
    ((5, 8, 1), (3, 9, 10), False),
    ((5, 6, 2), (3, 9, 10), False),
    ((5, 9, 0), (3, 12, 10), False),  # a 5.9 preview: before the supported release
    ((), (3, 12, 1), True),  # version unknown (custom build): Python decides
    ((), (3, 9, 18), False),
    ((5, 10, 0), (3, 9, 18), False),  # a custom build with an old Python
])
def test_startup_check(slicer, python, ok):
    reason = compat.unsupported_reason(slicer, python)
    assert (reason is None) == ok, reason
    if not ok:
        assert "5.10" in reason and compat.DOWNLOAD_URL in reason


def test_slicer_version_from_the_application_object():
    class App:  # qSlicerCoreApplication's properties
        majorVersion, minorVersion, applicationVersion = 5, 8, "5.8.1"

    class CustomApp:  # a Slicer-based application with its own version
        majorVersion, minorVersion, applicationVersion = 5, 10, "2.3.0"

    class VersionStringOnly:
        applicationVersion = "5.11.0-2026-02-01"

    assert compat.slicer_version(App()) == (5, 8, 1)
    assert compat.slicer_version(CustomApp()) == (5, 10, 0)
    assert compat.slicer_version(VersionStringOnly()) == (5, 11, 0)
    assert compat.slicer_version(object()) == ()


def test_readme_and_extension_state_the_minimum():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Using GlandSeg in 3D Slicer"):]
    want = f"3D Slicer {dotted(compat.MINIMUM_SLICER)} or later"
    assert want in section, f"README's Slicer section must say {want!r}"
    assert "3D Slicer 5.8 or later" not in readme
    assert want.replace("3D Slicer", "Needs 3D Slicer") in (REPO / "CMakeLists.txt").read_text()
