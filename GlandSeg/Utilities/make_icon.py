"""Draw GlandSeg/Resources/Icons/GlandSeg.png (128x128): a frontal head with the six glands.

The glands are drawn in their colours from GlandSegLib/glands.py, on the patient's side as
seen in a radiological frontal view (patient's right on the image left), so the icon also
reminds of the convention the module keeps.

    .venv/bin/python GlandSeg/Utilities/make_icon.py
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from GlandSegLib.glands import BY_KEY  # noqa: E402

OUT = REPO / "GlandSeg" / "Resources" / "Icons" / "GlandSeg.png"
S = 4  # drawn at 4x and reduced: smooth edges without an antialiasing API


def _box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    return ((cx - rx) * S, (cy - ry) * S, (cx + rx) * S, (cy + ry) * S)


def _rgb(key: str) -> tuple[int, int, int, int]:
    return (*BY_KEY[key].color_255, 255)


def draw() -> Image.Image:
    img = Image.new("RGBA", (128 * S, 128 * S), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    outline = (70, 78, 92, 255)
    skin = (236, 232, 226, 255)
    # neck, then head over it
    d.rounded_rectangle(_box(64, 112, 20, 18), radius=6 * S, fill=skin, outline=outline, width=3 * S)
    d.ellipse(_box(64, 56, 40, 50), fill=skin, outline=outline, width=3 * S)
    # jaw line and eyes, faint
    d.arc(_box(64, 70, 27, 30), start=20, end=160, fill=(170, 170, 170, 255), width=2 * S)
    for cx in (48, 80):
        d.ellipse(_box(cx, 44, 7, 4), outline=(150, 150, 150, 255), width=2 * S)
    # glands: image left = patient's right (radiological view)
    for side, sx in (("r", -1), ("l", +1)):
        d.ellipse(_box(64 + sx * 23, 35, 7, 4.5), fill=_rgb(f"lacrimal_{side}"), outline=outline, width=S)
        d.ellipse(_box(64 + sx * 33, 68, 8, 16), fill=_rgb(f"parotid_{side}"), outline=outline, width=S)
        d.ellipse(_box(64 + sx * 19, 92, 9, 6.5), fill=_rgb(f"submandibular_{side}"), outline=outline, width=S)
    img = img.filter(ImageFilter.SMOOTH)
    return img.resize((128, 128), Image.LANCZOS)


if __name__ == "__main__":
    OUT.parent.mkdir(parents=True, exist_ok=True)
    draw().save(OUT, optimize=True)
    print(f"wrote {OUT}")
