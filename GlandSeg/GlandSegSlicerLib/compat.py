"""Which 3D Slicer GlandSeg supports, checked before anything else of the module is imported.

GlandSeg needs 3D Slicer 5.10 or later. Its dependencies decide that: nnU-Net v2 2.6 and
later (GlandSeg allows 2.5-2.8, and 2.8 is current) and GlandSegLib itself need Python 3.10
or newer, and Slicer ships Python 3.9 up to 5.8 and Python 3.12 from 5.10 on. PyTorch comes
from the PyTorch extension, which picks a build for Slicer's Python.

This file and GlandSeg.py keep to syntax that Python 3.9 parses (Testing/test_min_python.py
checks it), so that an older Slicer loads the module far enough to say what to upgrade
instead of failing with a SyntaxError in its log. The rest of the module is imported only
when the check passes.
"""

import re

MINIMUM_SLICER = (5, 10)
MINIMUM_SLICER_PYTHON = (3, 12)  # the Python that Slicer 5.10 ships (3.12.10)
REQUIRED_PYTHON = (3, 10)  # what GlandSeg's code and nnunetv2 need: pyproject's requires-python
OLDEST_PYTHON_TOLD = (3, 9)  # Slicer 5.2-5.8: must still parse GlandSeg.py and this file
DOWNLOAD_URL = "https://download.slicer.org"


def version_tuple(text):
    """(5, 10, 1) from "5.10.1", "5.11.0-2026-02-01" or "5.10"; () when there is no number."""
    numbers = re.findall(r"\d+", str(text).split("-")[0])
    return tuple(int(n) for n in numbers[:3])


def slicer_version(app):
    """The running Slicer's version as a tuple, from slicer.app (() when it cannot tell)."""
    major = getattr(app, "majorVersion", None)  # Slicer's own version, also in custom applications
    minor = getattr(app, "minorVersion", None)
    full = version_tuple(getattr(app, "applicationVersion", ""))
    if isinstance(major, int) and isinstance(minor, int):
        patch = full[2] if full[:2] == (major, minor) and len(full) > 2 else 0
        return (major, minor, patch)
    return full


def _dotted(version):
    return ".".join(str(v) for v in version)


def unsupported_reason(slicer, python):
    """None when GlandSeg runs in this Slicer; else what to upgrade, in words for the user.

    `slicer` is the application's version tuple (() when unknown: then only Python is
    checked), `python` a sys.version_info-like tuple.
    """
    python = tuple(python[:3])
    why = ("GlandSeg runs nnU-Net v2, which needs Python {} or newer; 3D Slicer ships Python {} "
           "from version {} on.").format(_dotted(REQUIRED_PYTHON), _dotted(MINIMUM_SLICER_PYTHON),
                                         _dotted(MINIMUM_SLICER))
    if slicer and tuple(slicer[:2]) < MINIMUM_SLICER:
        return ("GlandSeg needs 3D Slicer {} or later; this is 3D Slicer {} (Python {}). Install the current "
                "3D Slicer from {} and install GlandSeg in it from the Extensions Manager. {}").format(
                    _dotted(MINIMUM_SLICER), _dotted(slicer), _dotted(python), DOWNLOAD_URL, why)
    if python[:2] < REQUIRED_PYTHON:
        return ("GlandSeg needs Python {} or newer, but this 3D Slicer runs Python {}. Install 3D Slicer {} or "
                "later from {}. {}").format(_dotted(REQUIRED_PYTHON), _dotted(python), _dotted(MINIMUM_SLICER),
                                            DOWNLOAD_URL, why)
    return None
