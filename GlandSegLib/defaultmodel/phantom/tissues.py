"""Tissue HU values, gland templates and every random draw that makes one case differ from another.

Kept together because the order of the draws is the contract: same seed -> same anatomy, HU,
noise. Callers draw draw_case, (draw_outline_params,) draw_pockets, then the scanner noise,
from one generator; never reorder a draw.
"""

from __future__ import annotations

import numpy as np

# tissue: (mean HU, sd of the per-case offset)
HU = {"fat": (-100, 8), "soft": (38, 5), "muscle": (52, 5), "brain": (35, 3), "csf": (8, 3),
      "cortical": (1350, 150), "diploe": (550, 80), "cancellous": (230, 40), "mandible": (1250, 120),
      "teeth": (2300, 250), "eye": (12, 4), "lens": (85, 8), "orbfat": (-90, 8), "cord": (22, 4),
      "disc": (85, 8), "tongue": (68, 6), "lung": (-850, 25), "heart": (42, 4), "liver": (60, 5),
      "spleen": (48, 4), "kidney": (33, 4), "bowel": (22, 6), "bladder": (10, 3), "marrow": (40, 20),
      "air": (-1000, 0)}

# Glands, left side (mirror x for right), head frame mm: centre, parts (offset, semi-axes),
# volume range (ml) and HU range. Centres: medians over the TCIA outlines.
GLAND_TEMPLATES = {
    "parotid": ((58.5, -33.5, -80.0), [((5, -4, 4), (9, 21, 24)), ((-10, 16, -2), (8, 9, 17)),
                                       ((3, 6, -20), (7, 10, 9))], (15.0, 36.0), (-40.0, 10.0)),
    "submandibular": ((31.5, -56.0, -121.0), [((0, 0, 0), (10, 13, 11)), ((-4, -9, 7), (5, 9, 6))],
                      (5.0, 10.5), (35.0, 60.0)),
    "lacrimal": ((44.5, -83.0, -5.0), [((0, 0, 0), (3, 7.5, 5)), ((-1, 3, -2), (2.5, 4, 3))],
                 (0.38, 0.68), (40.0, 60.0)),
}


def draw_case(rng: np.random.Generator | None) -> dict:
    """Everything random about a case, drawn in a fixed order (same seed -> same anatomy)."""
    u = (lambda lo, hi: float(rng.uniform(lo, hi))) if rng else (lambda lo, hi: (lo + hi) / 2)
    p = {"yaw": u(-5, 5), "roll": u(-5, 5), "scale": u(0.92, 1.08),
         "offset": (u(-30, 30), u(-30, 30), u(-600, 600) if rng else 0.0),
         "noise": u(8, 25), "blur": u(0.6, 1.0)}
    p["hu"] = {k: int(round(m + (rng.normal(0, sd) if rng else 0))) for k, (m, sd) in HU.items()}
    p["glands"] = {}
    for organ, (_, parts, vol, hu) in GLAND_TEMPLATES.items():
        base_hu, jitter = u(*hu), min(1.5, min(parts[0][1]) / 5)  # position jitter sd, mm
        for side in ("R", "L"):
            p["glands"][organ, side] = {
                "volume": u(*vol), "hu": int(round(base_hu + (rng.normal(0, 3) if rng else 0))),
                "shift": np.clip(rng.normal(0, jitter, 3), -2 * jitter, 2 * jitter) if rng else np.zeros(3),
                "waves": np.c_[rng.normal(0, 1, (3, 3)), rng.uniform(0, 2 * np.pi, 3)] if rng else np.zeros((0, 4)),
            }
    return p


def draw_pockets(rng: np.random.Generator) -> list[tuple[tuple[float, float, float], np.ndarray, str]]:
    """Bowel gas and fat pockets (body frame): drawn even without variation, a belly needs them."""
    return [((rng.uniform(-100, 100), rng.uniform(-90, 10), rng.uniform(-820, -560)), rng.uniform(5, 18, 3),
             "air" if rng.uniform() < 0.5 else "fat") for _ in range(30)]


_HU_OUTLINE = {"thyroid": (100, 12), "cartilage": (130, 30)}  # extra tissues, drawn after draw_case's


def draw_outline_params(rng: np.random.Generator | None) -> dict:
    """What varies per seed beyond draw_case: tissue thicknesses, muscle sizes, teeth, field of view.
    Without rng every value is the middle of its range (variation=False)."""
    u = (lambda lo, hi: float(rng.uniform(lo, hi))) if rng else (lambda lo, hi: (lo + hi) / 2)
    q = {"csf": u(1.5, 2.5), "inner": u(1.5, 2.2), "diploe": u(2.5, 4.5), "outer": u(1.5, 2.2),
         "scalp": u(4.5, 7.0), "face": u(7.0, 12.0), "chest": u(15.0, 28.0), "halo": u(1.5, 3.5),
         "masseter": u(9.0, 13.0), "pterygoid": u(7.0, 10.0), "temporalis": u(6.0, 12.0),
         "neck_w": u(44.0, 54.0), "neck_d": u(30.0, 38.0), "teeth_h": u(8.0, 10.0), "palate": u(46.0, 54.0),
         "prevertebral": u(3.0, 6.0), "airway": u(0.85, 1.15), "cortex": u(1.5, 3.0),
         "fov": (u(-15.0, 15.0), u(-15.0, 15.0))}
    q["missing"] = rng.uniform(size=(2, 29)) < 0.12 if rng else np.zeros((2, 29), bool)  # lower, upper teeth
    q["hu"] = {k: int(round(m + (rng.normal(0, sd) if rng else 0))) for k, (m, sd) in _HU_OUTLINE.items()}
    return q


APPEARANCES = ("standard", "randomised")
# Ranges for appearance randomisation: wide enough to hold every real CT we know of (fatty
# parotids near fat, submandibular glands brighter than muscle), deliberately not fitted to
# any one scan.
RANDOM_GLAND_HU = (-60.0, 110.0)
RANDOM_TISSUE_HU = {"fat": (-130.0, -30.0), "soft": (0.0, 80.0), "muscle": (20.0, 90.0), "tongue": (30.0, 100.0)}
GLAND_LIKE_MUSCLE = 0.3  # share of glands drawn as bright as the muscle beside them: no edge to find


def randomise_appearance(p: dict, q: dict, rng: np.random.Generator) -> None:
    """Redraw how a case looks, never where anything is (SynthSeg's idea: Billot et al., Med
    Image Anal 2023). In the standard phantoms every gland has a narrow HU range and a fat
    rim, a boundary real CT does not have; a network trained on them finds the painted edge
    instead of the gland. Here each gland's HU is drawn independently over the whole range
    real glands show, a third of them equal to the muscle beside them, the fat rim may vanish,
    and noise and blur vary more, so only shape and position tell a gland apart.

    Uses its own generator (the caller passes one seeded apart from the case's), so the
    standard draws, and with them the anatomy and the labels, stay the same for a seed."""
    hu = p["hu"]
    for tissue, (lo, hi) in RANDOM_TISSUE_HU.items():
        hu[tissue] = int(round(rng.uniform(lo, hi)))
    for key in sorted(p["glands"]):
        g = p["glands"][key]
        if rng.uniform() < GLAND_LIKE_MUSCLE:
            g["hu"] = int(round(hu["muscle"] + rng.normal(0, 5)))
        else:
            g["hu"] = int(round(rng.uniform(*RANDOM_GLAND_HU)))
    q["halo"] = float(rng.uniform(0.0, 3.5))
    p["noise"] = float(rng.uniform(5.0, 40.0))
    p["blur"] = float(rng.uniform(0.5, 1.5))
