"""Synthetic CTs with known glands: procedural ones and ones built around real expert outlines."""

from GlandSegLib.defaultmodel.phantom.phantom import (FIELDS, OUTLINE_RATERS, VARIANTS, Phantom, list_outline_cases,  # noqa: F401
                                                      make_phantom, make_phantom_from_outlines, no_head_phantom,
                                                      outline_folder, read_outlines, reorient)
