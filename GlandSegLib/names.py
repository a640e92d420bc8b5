"""Map structure names to the six glands, by name, never by position.

Models and cohorts name glands in many conventions: TG-263 (`Glnd_Lacrimal_R`,
`Parotid_L`, `Glnd_Submand_R`), DeepMind/TCIA (`Parotid-Lt`), OpenKBP (`RightParotid`),
plain words (`left parotid gland`) and French (`Glande_Lacrim_D`, D = droite = right,
G = gauche = left). The team's existing model lists its labels in a private order, so
label identity must come from names; a model whose names cannot be read is refused.
"""

from __future__ import annotations

import re
from typing import Mapping

from GlandSegLib.errors import ModelError
from GlandSegLib.glands import Gland, gland

_ORGAN_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("lacrimal", re.compile(r"lacri|lacry")),
    ("parotid", re.compile(r"parot")),
    ("submandibular", re.compile(r"sub ?mand|submax|sous ?max|\bsmg\b")),
)
_RIGHT_TOKENS = {"r", "rt", "right", "d", "dt", "dte", "dx", "droit", "droite", "dext", "dexter", "rechts"}
_LEFT_TOKENS = {"l", "lt", "left", "g", "gche", "gauche", "sx", "sin", "sinister", "links"}
# Derived structures (planning margins, optimisation helpers) are not the gland itself.
_DERIVED_TOKENS = {"prv", "ptv", "ctv", "gtv", "opt", "avoid", "ring", "dose", "minus", "plus", "exp", "margin", "ex", "and", "both", "bilat", "bilateral", "combined"}


def _tokens(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name.strip())  # RightParotid -> Right Parotid
    spaced = re.sub(r"[^A-Za-z0-9]+", " ", spaced).lower()
    return [t for t in spaced.split() if t]


def _side(tokens: list[str]) -> str | None:
    sides = set()
    for t in tokens:
        if t in _RIGHT_TOKENS:
            sides.add("R")
        elif t in _LEFT_TOKENS:
            sides.add("L")
    if not sides:  # glued words such as "parotidright" or "lacrimalgauche"
        joined = "".join(tokens)
        if re.search(r"right|droit", joined):
            sides.add("R")
        if re.search(r"left|gauche", joined):
            sides.add("L")
    return sides.pop() if len(sides) == 1 else None


def match_gland(name: str) -> Gland | None:
    """The gland a structure name denotes, or None when it is not exactly one gland."""
    tokens = _tokens(name)
    if not tokens or any(t in _DERIVED_TOKENS or re.fullmatch(r"(prv|ptv|ctv)\d*", t) for t in tokens):
        return None
    text = " ".join(tokens)
    organs = [organ for organ, pattern in _ORGAN_PATTERNS if pattern.search(text)]
    if len(organs) != 1:
        return None
    side = _side(tokens)
    if side is None:
        return None
    return gland(organs[0], side)


def map_model_labels(labels: Mapping[str, object]) -> tuple[dict[int, int], list[str]]:
    """Translate a dataset.json `labels` table into {model value: canonical label}.

    Returns the mapping and a list of warnings (names that are not glands, glands the
    model does not segment). Two names for one gland, region-based labels or a table with
    no gland at all are refused, because any guess there could swap left and right.
    """
    mapping: dict[int, int] = {}
    seen: dict[int, str] = {}
    warnings: list[str] = []
    for name, value in labels.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ModelError(f"label {name!r} has value {value!r}: region-based or non-integer labels are not supported")
        if value == 0 or name == "ignore":  # nnU-Net's reserved name: never predicted
            continue
        g = match_gland(name)
        if g is None:
            warnings.append(f"model label {value} ({name!r}) is not one of the six glands and is ignored")
            continue
        if g.label in seen:
            raise ModelError(f"model labels {seen[g.label]!r} and {name!r} both name the {g.name}")
        seen[g.label] = name
        mapping[value] = g.label
    if not mapping:
        raise ModelError("the model's dataset.json names none of the six glands")
    from GlandSegLib.glands import GLANDS

    for g in GLANDS:
        if g.label not in seen:
            warnings.append(f"the model does not segment the {g.name}")
    return mapping, warnings
