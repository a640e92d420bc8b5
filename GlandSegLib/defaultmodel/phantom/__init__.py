"""Synthetic CTs with known gland labels (training data, demo sample, test input): procedural
heads and bodies, and heads built around real expert outlines, each storable several ways."""

from GlandSegLib.defaultmodel.phantom.outline_phantom import make_phantom_from_outlines  # noqa: F401
from GlandSegLib.defaultmodel.phantom.outlines import (OUTLINE_RATERS, list_outline_cases, outline_folder,  # noqa: F401
                                                       read_outlines)
from GlandSegLib.defaultmodel.phantom.procedural import make_phantom, no_head_phantom  # noqa: F401
from GlandSegLib.defaultmodel.phantom.scanner import FIELDS, Phantom  # noqa: F401
from GlandSegLib.defaultmodel.phantom.storage import VARIANTS, reorient  # noqa: F401
