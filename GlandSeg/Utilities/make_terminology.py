"""Write GlandSeg/Resources/GlandSeg.term.json from GlandSegLib/glands.py (the one table).

Slicer's terminology file is shipped as a static file (Slicer reads it at startup, before
any GlandSegLib import), so it is generated from the table instead of being typed twice;
Testing/test_slicer_module.py checks the shipped file still matches the table.

    .venv/bin/python GlandSeg/Utilities/make_terminology.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from GlandSegLib.glands import ANATOMIC_CATEGORY, GLANDS  # noqa: E402
from GlandSegLib.io.segfile import TERMINOLOGY_CONTEXT  # noqa: E402

OUT = REPO / "GlandSeg" / "Resources" / "GlandSeg.term.json"
SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/schemas/segment-context-schema.json#"


def _code(c: tuple[str, str, str]) -> dict[str, str]:
    return {"CodingSchemeDesignator": c[0], "CodeValue": c[1], "CodeMeaning": c[2]}


def terminology() -> dict:
    types: dict[str, dict] = {}
    for g in GLANDS:  # one type per organ, one modifier per side
        t = types.setdefault(g.organ, {
            **_code(g.structure),
            "3dSlicerLabel": f"{g.organ} gland",
            "recommendedDisplayRGBValue": list(g.color_255),  # the first (right) side's colour
            "Modifier": [],
        })
        t["Modifier"].append({
            **_code(g.laterality),
            "3dSlicerLabel": g.name,
            "recommendedDisplayRGBValue": list(g.color_255),
        })
    return {
        "SegmentationCategoryTypeContextName": TERMINOLOGY_CONTEXT,
        "@schema": SCHEMA,
        "SegmentationCodes": {"Category": [{**_code(ANATOMIC_CATEGORY), "showAnatomy": "false", "Type": list(types.values())}]},
    }


def render() -> str:
    text = json.dumps(terminology(), indent=2) + "\n"
    # colours on one line, as in Slicer's own .term.json files
    return re.sub(r"\[\s+(\d+),\s+(\d+),\s+(\d+)\s+\]", r"[\1, \2, \3]", text)


if __name__ == "__main__":
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}")
