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
