"""Synthetic CTs with known gland labels: training data, demo sample and test input.

The phantom must pass for a CT with simple thresholds (closed skull ring around brain, air,
fat, bone) and with a small CNN (gland surroundings as on real scans). Gland sizes and
positions relative to the brain centre are medians measured on the 35 expert-outlined scans
of the DeepMind TCIA head-and-neck set (shared/data/tcia-hn-labels); other anatomy is
textbook-sized. Everything is painted straight into an int16 volume, each structure only
inside its bounding box, so a 512x512x1000 whole body stays fast and small.

Frames: the head is drawn in a "head frame" (mm from the brain centre, x patient left,
y posterior, z superior) that is scaled and rotated about the neck base; the torso and
limbs in an unrotated "body frame" with the same axes. Storage is LPS, identity direction,
z index increasing superiorly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .glands import gland

VARIANTS = ("lps", "ras", "flip_x", "permuted", "feet_first", "oblique10", "anisotropic")
# field: (in-plane field of view mm, default length mm, y of the field centre from the head/body centre)
FIELDS = {"head": (240.0, 240.0, -20.0), "headneck": (500.0, 350.0, -10.0), "wholebody": (500.0, 1500.0, -10.0)}
NECK_PIVOT = (0.0, 30.0, -215.0)  # body and head frame: the head rotates about the neck base
_CHUNK = 4_000_000  # voxels evaluated at once: bounds temporary memory

# tissue: (mean HU, sd of the per-case offset)
_HU = {"fat": (-100, 8), "soft": (38, 5), "muscle": (52, 5), "brain": (35, 3), "csf": (8, 3),
       "cortical": (1350, 150), "diploe": (550, 80), "cancellous": (230, 40), "mandible": (1250, 120),
       "teeth": (2300, 250), "eye": (12, 4), "lens": (85, 8), "orbfat": (-90, 8), "cord": (22, 4),
       "disc": (85, 8), "tongue": (68, 6), "lung": (-850, 25), "heart": (42, 4), "liver": (60, 5),
       "spleen": (48, 4), "kidney": (33, 4), "bowel": (22, 6), "bladder": (10, 3), "marrow": (40, 20),
       "air": (-1000, 0)}

# Glands, left side (mirror x for right), head frame mm: centre, parts (offset, semi-axes),
# volume range (ml) and HU range. Centres: medians over the TCIA outlines.
_GLANDS = {
    "parotid": ((58.5, -33.5, -80.0), [((5, -4, 4), (9, 21, 24)), ((-10, 16, -2), (8, 9, 17)),
                                        ((3, 6, -20), (7, 10, 9))], (15.0, 36.0), (-40.0, 10.0)),
    "submandibular": ((31.5, -56.0, -121.0), [((0, 0, 0), (10, 13, 11)), ((-4, -9, 7), (5, 9, 6))],
                      (5.0, 10.5), (35.0, 60.0)),
    "lacrimal": ((44.5, -83.0, -5.0), [((0, 0, 0), (3, 7.5, 5)), ((-1, 3, -2), (2.5, 4, 3))],
                 (0.38, 0.68), (40.0, 60.0)),
}


@dataclass
class Phantom:
    ct: sitk.Image  # int16 HU, air -1000, outside the reconstruction circle -1024
    labels: sitk.Image  # uint8, the six glands only, canonical values, same grid as ct
    midline_x: float  # physical LPS x of the head's midsagittal plane (head centre), mm


# ---------------------------------------------------------------- shapes (frame coordinates)
class _Ell:
    """Axis-aligned ellipsoid; grow(t) offsets every semi-axis by t mm (shells, layers)."""

    def __init__(self, c, a):
        self.c, self.a = [float(v) for v in c], [float(v) for v in a]

    def grow(self, t: float) -> "_Ell":
        return _Ell(self.c, [v + t for v in self.a])

    def box(self):
        return np.subtract(self.c, self.a), np.add(self.c, self.a)

    def q(self, x, y, z):
        (cx, cy, cz), (ax, ay, az) = self.c, self.a
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2

    def __call__(self, x, y, z):
        return self.q(x, y, z) <= 1.0


class _Tube:
    """Elliptic cross-sections whose centre and semi-axes vary piecewise-linearly with z."""

    def __init__(self, zk, cx, cy, ax, ay):
        self.k = [np.asarray(v, float) for v in (zk, cx, cy, ax, ay)]

    def grow(self, t: float) -> "_Tube":
        zk, cx, cy, ax, ay = self.k
        return _Tube(zk, cx, cy, ax + t, ay + t)

    def box(self):
        zk, cx, cy, ax, ay = self.k
        return (np.array([(cx - ax).min(), (cy - ay).min(), zk[0]]),
                np.array([(cx + ax).max(), (cy + ay).max(), zk[-1]]))

    def at(self, z):
        zk = self.k[0]
        return [np.interp(z, zk, v).astype(np.float32) for v in self.k[1:]]

    def __call__(self, x, y, z):
        cx, cy, ax, ay = self.at(z)
        inside = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0
        return inside & (z >= self.k[0][0]) & (z <= self.k[0][-1])


class _Union:
    def __init__(self, *parts):
        self.parts = parts

    def grow(self, t: float) -> "_Union":
        return _Union(*[p.grow(t) for p in self.parts])

    def box(self):
        boxes = [p.box() for p in self.parts]
        return np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)

    def __call__(self, x, y, z):
        out = self.parts[0](x, y, z)
        for p in self.parts[1:]:
            out = out | p(x, y, z)
        return out


class _Where:
    """A shape restricted by a condition (annulus minus inner part, z bands, half spaces);
    zlim also clips the box, so a thin band of a long shape costs only its own slabs."""

    def __init__(self, shape, cond=None, zlim: tuple[float, float] | None = None):
        self.shape, self.cond, self.zlim = shape, cond, zlim

    def box(self):
        lo, hi = self.shape.box()
        if self.zlim:
            lo, hi = lo.copy(), hi.copy()
            lo[2], hi[2] = max(lo[2], self.zlim[0]), min(hi[2], self.zlim[1])
        return lo, hi

    def __call__(self, x, y, z):
        out = self.shape(x, y, z)
        if self.cond is not None:
            out = out & self.cond(x, y, z)
        if self.zlim:
            out = out & (z >= self.zlim[0]) & (z <= self.zlim[1])
        return out


def _minus(a, b) -> _Where:
    return _Where(a, lambda x, y, z: ~b(x, y, z))


class _Gland:
    """Union of ellipsoids with a smooth random surface displacement (no perfect ellipsoids)."""

    def __init__(self, parts: list[_Ell], waves: np.ndarray, amp: float):
        self.parts, self.waves, self.amp = parts, waves, amp  # waves: rows (kx, ky, kz, phase)
        lo, hi = _Union(*parts).box()
        self.c0 = (lo + hi) / 2
        self.lo, self.hi = self.c0 + (lo - self.c0) * 1.3, self.c0 + (hi - self.c0) * 1.3

    def box(self):
        return self.lo, self.hi

    def __call__(self, x, y, z):
        q = np.minimum.reduce([p.q(x, y, z) for p in self.parts]) if len(self.parts) > 1 else self.parts[0].q(x, y, z)
        if not len(self.waves):
            return q <= 1.0
        d = sum(np.sin(kx * (x - self.c0[0]) + ky * (y - self.c0[1]) + kz * (z - self.c0[2]) + ph)
                for kx, ky, kz, ph in self.waves)
        return q <= 1.0 + self.amp * d / len(self.waves)


# ---------------------------------------------------------------- painting
@dataclass
class _Frame:
    c: np.ndarray  # physical position of the frame origin
    m: np.ndarray  # physical offset -> frame coordinates


class _Canvas:
    """The int16 CT and uint8 labels being painted; later paint wins, tissue clears labels."""

    def __init__(self, size, origin, spacing):
        self.size, self.origin, self.spacing = np.array(size), np.array(origin, float), np.array(spacing, float)
        self.ct = np.full(tuple(size[::-1]), -1000, np.int16)
        self.lab = np.zeros(tuple(size[::-1]), np.uint8)

    def paint(self, f: _Frame, shape, hu: int, label: int = 0) -> None:
        lo, hi = shape.box()
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).T
        phys = f.c + corners @ np.linalg.inv(f.m).T
        i0 = np.clip(np.ceil((phys.min(0) - self.origin) / self.spacing), 0, self.size).astype(int)
        i1 = np.clip(np.floor((phys.max(0) - self.origin) / self.spacing) + 1, 0, self.size).astype(int)
        if np.any(i1 <= i0):
            return
        ax = [(self.origin[i] + self.spacing[i] * np.arange(i0[i], i1[i]) - f.c[i]).astype(np.float32) for i in range(3)]
        dx, dy = ax[0][None, None, :], ax[1][None, :, None]
        step = max(1, _CHUNK // int((i1[0] - i0[0]) * (i1[1] - i0[1])))
        for z0 in range(i0[2], i1[2], step):
            z1 = min(i1[2], z0 + step)
            d = (dx, dy, ax[2][z0 - i0[2]:z1 - i0[2], None, None])
            u = []
            for i in range(3):
                terms = [float(f.m[i, j]) * d[j] for j in range(3) if abs(f.m[i, j]) > 1e-12]
                u.append(sum(terms[1:], terms[0]))
            sl = (slice(z0, z1), slice(i0[1], i1[1]), slice(i0[0], i1[0]))
            mask = np.broadcast_to(shape(*u), (z1 - z0, i1[1] - i0[1], i1[0] - i0[0]))
            np.copyto(self.ct[sl], np.int16(hu), where=mask)
            np.copyto(self.lab[sl], np.uint8(label), where=mask)


def _mirror(c, s: int):
    return (s * c[0], c[1], c[2])


def _zband(shape, lo: float, hi: float) -> _Where:
    return _Where(shape, None, (lo, hi))


def _periodic(z0: float, period: float, on: float, slope: float = 0.0, yref: float = 0.0):
    """Repeating z bands (vertebrae, ribs, teeth gaps), optionally tilted along y."""
    return lambda x, y, z: np.mod(z - z0 + slope * (yref - y), period) < on


# ---------------------------------------------------------------- case parameters
def _case(rng: np.random.Generator | None) -> dict:
    """Everything random about a case, drawn in a fixed order (same seed -> same anatomy)."""
    u = (lambda lo, hi: float(rng.uniform(lo, hi))) if rng else (lambda lo, hi: (lo + hi) / 2)
    p = {"yaw": u(-5, 5), "roll": u(-5, 5), "scale": u(0.92, 1.08),
         "offset": (u(-30, 30), u(-30, 30), u(-600, 600) if rng else 0.0),
         "noise": u(8, 25), "blur": u(0.6, 1.0)}
    p["hu"] = {k: int(round(m + (rng.normal(0, sd) if rng else 0))) for k, (m, sd) in _HU.items()}
    p["glands"] = {}
    for organ, (_, parts, vol, hu) in _GLANDS.items():
        base_hu, jitter = u(*hu), min(1.5, min(parts[0][1]) / 5)  # position jitter sd, mm
        for side in ("R", "L"):
            p["glands"][organ, side] = {
                "volume": u(*vol), "hu": int(round(base_hu + (rng.normal(0, 3) if rng else 0))),
                "shift": np.clip(rng.normal(0, jitter, 3), -2 * jitter, 2 * jitter) if rng else np.zeros(3),
                "waves": np.c_[rng.normal(0, 1, (3, 3)), rng.uniform(0, 2 * np.pi, 3)] if rng else np.zeros((0, 4)),
            }
    return p


def _pockets(rng: np.random.Generator) -> list[tuple[tuple[float, float, float], np.ndarray, str]]:
    """Bowel gas and fat pockets (body frame): drawn even without variation, a belly needs them."""
    return [((rng.uniform(-100, 100), rng.uniform(-90, 10), rng.uniform(-820, -560)), rng.uniform(5, 18, 3),
             "air" if rng.uniform() < 0.5 else "fat") for _ in range(30)]


def _rotation(yaw: float, roll: float) -> np.ndarray:
    a, b = math.radians(yaw), math.radians(roll)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    return rz @ ry


# ---------------------------------------------------------------- anatomy
_SCALP = _Ell((0, -3, 12), (78, 97, 72))
_CEREBRUM, _FOSSA = _Ell((0, -2, 14), (64, 82, 56)), _Ell((0, 28, -32), (50, 40, 30))


def _head_envelope() -> _Union:
    return _Union(_SCALP, _Ell((0, -38, -45), (72, 86, 58)), _Ell((0, -48, -95), (74, 80, 44)),
                  _Ell((0, -20, -70), (80, 62, 42)), _Ell((0, -70, -5), (62, 38, 30)),
                  _Ell((0, -112, -35), (13, 22, 26)), _Ell((0, -108, -116), (26, 18, 17)),
                  _Tube([-250, -200, -60], [0, 0, 0], [25, 20, 20], [70, 60, 58], [68, 62, 62]))


def _gland_shape(organ: str, side: str, g: dict, scale: float) -> _Gland:
    """The template at its (shifted) place, warped, then scaled to the case's physical volume."""
    centre, parts, _, _ = _GLANDS[organ]
    s = 1 if side == "L" else -1
    c = np.add(_mirror(centre, s), g["shift"])
    ells = [_Ell(c + np.array(_mirror(o, s), float), a) for o, a in parts]
    waves = g["waves"].copy()  # wavelength 1.5 x the template's largest diameter: low frequency
    k = np.maximum(np.linalg.norm(waves[:, :3], axis=1, keepdims=True), 1e-6)
    waves[:, :3] *= 2 * np.pi / (1.5 * 2 * max(max(e.a) for e in ells)) / k
    shape = _Gland(ells, waves, 0.35)
    f = (g["volume"] / (_volume(shape) * scale ** 3)) ** (1 / 3)  # head frame -> physical ml
    ells = [_Ell(shape.c0 + f * (np.array(e.c) - shape.c0), np.multiply(e.a, f)) for e in ells]
    return _Gland(ells, waves / [f, f, f, 1], 0.35)


def _volume(shape) -> float:
    """Volume (ml) of a frame-coordinate shape, counted on a grid fine enough for a lacrimal."""
    lo, hi = shape.box()
    h = max(0.25, float(np.max(hi - lo)) / 120)
    g = np.mgrid[lo[0]:hi[0]:h, lo[1]:hi[1]:h, lo[2]:hi[2]:h].astype(np.float32)
    return float(shape(g[0], g[1], g[2]).sum()) * h ** 3 / 1000


def _paint_head(cv: _Canvas, f: _Frame, p: dict) -> None:
    """Head and neck in the head frame; painting order encodes which tissue wins."""
    hu, env = p["hu"], _head_envelope()
    paint = lambda shape, tissue, label=0: cv.paint(f, shape, hu[tissue] if isinstance(tissue, str) else tissue, label)
    paint(env, "fat")
    paint(env.grow(-5), "soft")
    for s in (-1, 1):  # muscles of mastication and neck, parapharyngeal fat
        paint(_Ell((s * 58, -50, -85), (7, 14, 26)), "muscle")
        paint(_Ell((s * 37, -32, -80), (7, 12, 20)), "muscle")
        paint(_Tube([-235, -60], [s * 22, s * 55], [-50, 5], [11, 9], [15, 12]), "muscle")
        paint(_Ell((s * 27, -22, -62), (6, 9, 14)), "fat")
        paint(_Ell((s * 30, -25, -160), (9, 12, 40)), "fat")
    paint(_Tube([-235, -60], [0, 0], [52, 48], [46, 42], [24, 26]), "muscle")
    paint(_Ell((0, -70, -98), (28, 36, 14)), "tongue")
    for organ in ("parotid", "submandibular"):
        for side in ("R", "L"):
            g = p["glands"][organ, side]
            paint(_gland_shape(organ, side, g, p["scale"]), g["hu"], gland(organ, side).label)
    # mandible: horseshoe body with marrow, rami, condyles, teeth (clears gland labels it hits)
    z_lo = lambda y: -128 + 0.15 * (y + 124)
    horseshoe = lambda outer, inner, y_max, dz: _Where(
        _minus(_Ell((0, -32, -110), outer), _Ell((0, -32, -110), inner)),
        lambda x, y, z: (y < y_max) & (z >= z_lo(y) + dz) & (z <= -100 - dz))
    paint(horseshoe((57, 92, 60), (47, 82, 60), -40, 0), "mandible")
    paint(horseshoe((54.5, 89.5, 60), (49.5, 84.5, 60), -45, 4), "cancellous")
    for s in (-1, 1):
        paint(_Tube([-112, -52], [s * 51, s * 51], [-48, -33], [4.5, 4.5], [13, 10]), "mandible")  # ramus
        paint(_Ell((s * 51, -29, -50), (10, 6, 6)), "mandible")  # condyle
        paint(_Ell((s * 58, -52, -36), (4, 30, 5)), "cortical")  # zygomatic arch
        paint(_Ell((s * 50, 10, -42), (12, 14, 12)), "diploe")  # mastoid
        paint(_Ell((s * 66, -8, -42), (10, 4, 4)), "air")  # ear canal
    arch = lambda a, b, inner, y_max, z0, z1: _Where(
        _Ell((0, -32, (z0 + z1) / 2), (a, b, (z1 - z0) / 2)),
        lambda x, y, z: ~_Ell((0, -32, 0), (a - inner, b - inner, 1e9))(x, y, z) & (y < y_max))
    teeth_gap = lambda x, y, z: np.cos(30 * np.arctan2(x, -(y + 32))) > -0.5
    paint(arch(56, 91, 9, -58, -84, -72), "diploe")  # maxillary alveolus
    paint(_Where(_Ell((0, -32, -72), (46, 81, 2.5)), lambda x, y, z: y < -50), "diploe")  # hard palate
    paint(_Where(arch(54, 89, 8, -55, -100, -92.5), teeth_gap), "teeth")
    paint(_Where(arch(55, 90, 8, -55, -91.5, -84), teeth_gap), "teeth")
    paint(_Ell((0, -85, -87), (22, 24, 2)), "air")  # oral air
    # air: nasal cavity, maxillary sinuses, nasopharynx to trachea
    for s in (-1, 1):
        paint(_Ell((s * 27, -72, -48), (15, 19, 18)), "cortical")
        paint(_Ell((s * 27, -72, -48), (13, 17, 16)), "air")
    paint(_Ell((0, -88, -42), (11, 32, 22)), "air")
    paint(_Where(_Ell((0, -88, -42), (11, 32, 22)), lambda x, y, z: np.abs(x) < 1.2), "diploe")
    paint(_Ell((0, -45, -55), (12, 14, 10)), "air")
    paint(_Tube([-250, -200, -160, -110, -60], [0] * 5, [-40, -42, -45, -30, -38],
                [9, 9, 13, 11, 12], [8, 8, 9, 8, 9]), "air")  # pharynx, larynx, trachea
    # cervical spine: disc column, vertebral bodies, arches, spinous processes, canal with cord
    canal = _Tube([-240, -150, -55], [0, 0, 0], [38, 28, 22], [8, 8, 9], [8, 8, 9])
    ck, cy = canal.k[0], canal.k[2]
    col = _Tube(ck, [0, 0, 0], cy - 21, [11, 11, 9], [9, 9, 8])
    paint(_zband(col, -240, -62), "disc")
    vert = _periodic(-80, 17, 13)
    paint(_Where(col, lambda x, y, z: vert(x, y, z) & (z < -62)), "cortical")
    paint(_Where(col.grow(-2), lambda x, y, z: vert(x, y, z) & (z < -64)), "cancellous")
    paint(_Where(canal.grow(6), lambda x, y, z: vert(x, y, z) & (z < -62)), "cortical")
    paint(_Where(_Tube(ck, [0, 0, 0], cy + 20, [4, 4, 4], [12, 12, 10]), vert), "cortical")
    paint(_Ell((0, 2, -66), (5, 5, 9)), "cortical")  # dens
    paint(_minus(_Ell((0, 16, -68), (22, 21, 4)), _Ell((0, 16, -68), (15, 14, 5))), "cortical")  # atlas
    # cranium: outer table, diploe, inner table, CSF, brain, ventricles
    for t, tissue in ((7, "cortical"), (5, "diploe"), (2, "cortical"), (0, "csf"), (-2.5, "brain")):
        paint(_Union(_CEREBRUM.grow(t), _FOSSA.grow(t)), tissue)
    for s in (-1, 1):
        paint(_Ell((s * 11, 0, 22), (5, 24, 9)), "csf")
    paint(canal, "cord")  # through the foramen magnum
    # orbits: bony wall open in front, fat, globe, lens, optic nerve, then the lacrimal gland
    for s in (-1, 1):
        orbit = _Ell((s * 31.5, -77, -8), (20.5, 26, 17))
        paint(_Where(orbit.grow(2.5), lambda x, y, z, o=orbit: ~o(x, y, z) & (y > -90)), "cortical")
        paint(orbit, "orbfat")
        paint(_Ell((s * 22, -58, -10), (2.5, 16, 2.5)), "soft")
        paint(_Ell((s * 31, -88, -9), (11.5, 11.5, 11.5)), "eye")
        paint(_Ell((s * 31, -97, -9), (4.5, 2, 4.5)), "lens")
    for side in ("R", "L"):
        g = p["glands"]["lacrimal", side]
        paint(_gland_shape("lacrimal", side, g, p["scale"]), g["hu"], gland("lacrimal", side).label)


def _paint_body(cv: _Canvas, f: _Frame, p: dict) -> None:
    """Shoulders to legs in the body frame: coarse, elliptic cross-sections along z."""
    hu = p["hu"]
    paint = lambda shape, tissue: cv.paint(f, shape, hu[tissue])
    trunk = _Tube([-960, -880, -780, -650, -560, -450, -300, -260, -240, -222, -210, -200],
                  [0] * 12, [-5, -5, -10, -15, -15, -15, -10, -5, 0, 5, 10, 20],
                  [150, 180, 170, 150, 155, 165, 175, 185, 175, 140, 100, 70],
                  [95, 100, 108, 108, 110, 112, 110, 100, 95, 90, 80, 70])
    legs = [_Tube([-1700, -1100, -870], [s * 90, s * 95, s * 95], [-10] * 3, [55, 75, 85], [60, 80, 90])
            for s in (-1, 1)]
    arms = [_Tube([-880, -560, -250], [s * 200] * 3, [-5] * 3, [32, 38, 42], [34, 40, 46]) for s in (-1, 1)]
    for t, tissue in ((0, "fat"), (-12, "muscle")):
        for shape in [trunk, *legs, *arms]:
            paint(shape.grow(t * (0.5 if shape in arms else 1)), tissue)
    paint(_zband(trunk.grow(-25), -880, -480), "bowel")
    for s in (-1, 1):
        paint(_Ell((s * 178, 0, -255), (48, 55, 48)), "muscle")  # deltoid
        paint(_Ell((s * 178, 0, -255), (24, 24, 24)), "cortical")  # humeral head
        paint(_Tube([-560, -265], [s * 200] * 2, [-5] * 2, [12, 13], [12, 13]), "cortical")
        paint(_Tube([-560, -265], [s * 200] * 2, [-5] * 2, [6, 7], [6, 7]), "marrow")
        for dx, dy in ((-7, -10), (7, 4)):
            paint(_Tube([-840, -575], [s * 200 + dx] * 2, [dy] * 2, [6, 7], [6, 7]), "cortical")
        paint(_Ell((s * 85, -48, -222), (70, 8, 7)), "cortical")  # clavicle
        paint(_Ell((s * 95, 62, -300), (40, 6, 65)), "diploe")  # scapula
        paint(_Tube([-520, -480, -420, -320, -260, -235], [s * 80] * 6, [0, -5, -5, -5, 0, 10],
                    [40, 58, 64, 62, 50, 15], [55, 75, 88, 85, 60, 15]), "lung")
        paint(_Tube([-850, -600], [s * 38, s * 30], [45, 45], [26, 14], [22, 14]), "muscle")  # psoas
        paint(_Tube([-820, -240], [s * 35] * 2, [75, 72], [25, 22], [18, 16]), "muscle")  # erector spinae
        paint(_Ell((s * 70, 45, -610), (28, 24, 55)), "kidney")
        paint(_Tube([-1700, -880], [s * 85, s * 100], [-5, -5], [15, 15], [15, 15]), "cortical")  # femur
        paint(_Tube([-1700, -880], [s * 85, s * 100], [-5, -5], [8, 8], [8, 8]), "marrow")
        paint(_Ell((s * 100, -5, -875), (25, 25, 25)), "cortical")  # femoral head
        wing = _minus(_Tube([-870, -770], [0, 0], [-10, -10], [110, 140], [90, 95]),
                      _Tube([-870, -770], [0, 0], [-10, -10], [100, 130], [80, 85]))
        paint(_Where(wing, lambda x, y, z, s=s: (s * x > 48) & (y > -45)), "cortical")  # open in front: no bony ring
        paint(_Ell((s * 30, -85, -905), (28, 10, 12)), "cortical")  # pubis
        paint(_Ell((s * 60, 20, -915), (12, 20, 25)), "cortical")  # ischium
    paint(_Ell((22, -40, -420), (60, 55, 65)), "heart")
    paint(_Tube([-460, -240], [0, 0], [-20, -20], [28, 22], [55, 40]), "heart")  # mediastinum
    paint(_Tube([-340, -200], [0, 0], [-30, -25], [9, 9], [8, 8]), "air")  # trachea
    for s in (-1, 1):
        paint(_Ell((s * 28, -20, -348), (22, 6, 6)), "air")  # main bronchi
    paint(_Ell((-60, -20, -545), (100, 95, 80)), "liver")
    paint(_Ell((85, 35, -520), (30, 40, 50)), "spleen")
    paint(_Ell((45, -45, -520), (45, 35, 40)), "bowel")  # stomach
    paint(_Ell((45, -55, -505), (30, 18, 14)), "air")
    paint(_Ell((0, -45, -860), (40, 35, 32)), "bladder")
    for c, a, tissue in p["pockets"]:
        paint(_Ell(c, a), tissue)
    # ribs (tilted, one modulo expression), sternum, thoracolumbar spine, sacrum
    ribs = _Where(_minus(trunk.grow(-10), trunk.grow(-18)),
                  lambda x, y, z: (np.abs(x) > 12) & (y > -95) & (z > -560) & (z + 0.35 * (90 - y) < -235)
                  & _periodic(-250, 24, 9, 0.35, 90)(x, y, z))
    paint(_zband(ribs, -620, -230), "cortical")
    paint(_Tube([-430, -235], [0, 0], [-108, -95], [14, 16], [6, 7]), "cortical")
    canal = _Tube([-880, -700, -500, -300, -200], [0] * 5, [55, 45, 62, 55, 38], [10, 11, 9, 9, 9], [9, 10, 8, 8, 8])
    ck, cy = canal.k[0], canal.k[2]
    col = _Tube(ck, [0] * 5, cy - 32, [25, 24, 20, 17, 12], [20, 20, 17, 15, 10])
    vert = _periodic(-230, 27, 21)
    paint(_zband(col, -780, -215), "disc")  # above -215 the head frame's neck takes over
    paint(_Where(col, vert, (-780, -215)), "cortical")
    paint(_Where(col.grow(-3), vert, (-780, -217)), "cancellous")
    paint(_Where(canal.grow(7), vert, (-780, -215)), "cortical")
    paint(_Where(_Tube(ck, [0] * 5, cy + 22, [5] * 5, [14] * 5), vert, (-780, -215)), "cortical")  # spinous processes
    paint(_zband(_Ell((0, 62, -830), (48, 22, 60)), -900, -775), "cancellous")  # sacrum
    paint(_zband(canal, -880, -200), "cord")


# ---------------------------------------------------------------- assembly
def _render(seed: int, field: str, spacing, size_xy, length_mm, truncate_vertex_mm: float, variation: bool,
            with_head: bool = True, z_range: tuple[float, float] | None = None
            ) -> tuple[np.ndarray, sitk.Image, float]:
    """Label array, CT image and midline x. z_range (body frame) replaces the field's extent."""
    rng = np.random.default_rng(seed)
    p = _case(rng if variation else None)
    p["pockets"] = _pockets(rng)  # then the noise: one generator, drawn in a fixed order
    fov, default_len, y_fov = FIELDS[field]
    s, rot = p["scale"], _rotation(p["yaw"], p["roll"])
    centre = np.array(p["offset"], float)  # head centre (physical)
    body_c = centre - np.array(NECK_PIVOT) + s * rot @ np.array(NECK_PIVOT)
    head = _Frame(centre, rot.T / s)
    body = _Frame(body_c, np.eye(3))
    # top of the rotated, scaled scalp ellipsoid: the vertex
    vertex = centre[2] + s * (rot @ np.array(_SCALP.c))[2] + s * float(np.linalg.norm(rot[2] * _SCALP.a))
    sx, sy, sz = (float(v) for v in spacing)
    if z_range is None:
        top = vertex - truncate_vertex_mm if truncate_vertex_mm > 0 else vertex + 5.0
        length = length_mm if length_mm is not None else default_len - (vertex + 5.0 - top)  # same lower end
    else:
        top, length = body_c[2] + z_range[1], z_range[1] - z_range[0]
    nz = max(1, int(round(length / sz)))
    nx = size_xy or int(round(fov / sx))
    ny = size_xy or int(round(fov / sy))
    xc = centre[0] if field == "head" else body_c[0]
    yc = (centre[1] if field == "head" else body_c[1]) + y_fov
    origin = (xc - (nx - 1) / 2 * sx, yc - (ny - 1) / 2 * sy, top - (nz - 1) * sz)
    cv = _Canvas((nx, ny, nz), origin, (sx, sy, sz))
    if field != "head":
        _paint_body(cv, body, p)
    if with_head:
        _paint_head(cv, head, p)
    _finish(cv, p["blur"], p["noise"], rng, circle=field != "head")
    img = sitk.GetImageFromArray(cv.ct)
    cv.ct = None  # the image holds its own copy: free ours before the labels are copied too
    img.SetOrigin(origin)
    img.SetSpacing((sx, sy, sz))
    return cv.lab, img, float(centre[0])


def _finish(cv: _Canvas, blur_mm: float, noise_sd: float, rng: np.random.Generator, circle: bool) -> None:
    """Scanner blur and noise, slab by slab in place (float32 only for one slab at a time)."""
    sig = blur_mm / cv.spacing[::-1]
    m = int(math.ceil(3 * sig.max())) + 1
    nz, ny, nx = cv.ct.shape
    step = max(m + 1, _CHUNK // (ny * nx))
    outside = None
    if circle:
        yy, xx = np.mgrid[:ny, :nx]
        r = min(nx * cv.spacing[0], ny * cv.spacing[1]) / 2
        outside = ((xx - (nx - 1) / 2) * cv.spacing[0]) ** 2 + ((yy - (ny - 1) / 2) * cv.spacing[1]) ** 2 > r * r
    tail = None  # original (unblurred) rows just below the current slab
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        lo, hi = max(0, z0 - m), min(nz, z1 + m)
        block = cv.ct[lo:hi].copy()
        if tail is not None:
            block[:z0 - lo] = tail
        tail = cv.ct[max(z1 - m, 0):z1].copy()
        res = rng.standard_normal((z1 - z0, ny, nx), dtype=np.float32)
        res *= np.float32(noise_sd)
        res -= np.float32(1000)  # air, blurred or not
        ys, xs = np.nonzero((block != -1000).any(0))  # blur only the box around the content
        if len(ys):
            y0, y1, x0, x1 = max(ys.min() - m, 0), ys.max() + m + 1, max(xs.min() - m, 0), xs.max() + m + 1
            sub = ndimage.gaussian_filter(block[:, y0:y1, x0:x1].astype(np.float32), sig, mode="nearest", truncate=3.0)
            res[:, y0:y1, x0:x1] += sub[z0 - lo:z0 - lo + (z1 - z0)] + np.float32(1000)
        if outside is not None:
            np.copyto(res, np.float32(-1024), where=outside)
        np.rint(res, out=res)
        np.clip(res, -1024, 3071, out=res)
        cv.ct[z0:z1] = res


def make_phantom(seed: int, *, field: str = "head", spacing: tuple[float, float, float] = (1.0, 1.0, 2.0),
                 size_xy: int | None = None, length_mm: float | None = None,
                 truncate_vertex_mm: float = 0.0, variation: bool = True) -> Phantom:
    """A synthetic CT with the six glands labelled; same seed -> byte-identical arrays."""
    if field not in FIELDS:
        raise ValueError(f"field must be one of {sorted(FIELDS)}, not {field!r}")
    lab, img, midline = _render(seed, field, spacing, size_xy, length_mm, truncate_vertex_mm, variation)
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(img)
    return Phantom(img, labels, midline)


def no_head_phantom(seed: int, spacing: tuple[float, float, float] = (1.5, 1.5, 3.0)) -> sitk.Image:
    """Abdomen and pelvis only: a body without a head, which the head locator must reject."""
    return _render(seed, "wholebody", spacing, None, None, 0.0, True, with_head=False, z_range=(-950.0, -470.0))[1]


# ---------------------------------------------------------------- storage variants
def reorient(image: sitk.Image, variant: str, *, is_label: bool = False) -> sitk.Image:
    """The same physical content stored another way, to test orientation handling."""
    if variant == "lps":
        return sitk.Image(image)
    if variant in ("ras", "flip_x", "feet_first"):
        axes = {"ras": [True, True, False], "flip_x": [True, False, False], "feet_first": [False, False, True]}[variant]
        return sitk.Flip(image, axes)
    if variant == "permuted":
        return sitk.PermuteAxes(image, (2, 0, 1))
    interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    default = 0 if is_label else -1024
    size, sp = np.array(image.GetSize()), np.array(image.GetSpacing())
    d_old = np.array(image.GetDirection()).reshape(3, 3)
    if variant == "anisotropic":
        new_sp = np.array([0.7, 0.7, 3.0])
        new_size = np.maximum(1, np.round(size * sp / new_sp)).astype(int)
        origin = np.array(image.GetOrigin()) + d_old @ ((new_sp - sp) / 2)
        direction = d_old
    elif variant == "oblique10":
        axis = np.array([1.0, 1.0, 0.0]) / math.sqrt(2)
        a = math.radians(10)
        k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
        direction = (np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k) @ d_old
        corners = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in size], indexing="ij")).reshape(3, -1).T
        phys = np.array(image.GetOrigin()) + (corners * sp) @ d_old.T
        local = phys @ direction  # coordinates along the new axes
        new_sp = sp
        new_size = np.ceil((local.max(0) - local.min(0)) / new_sp).astype(int)
        origin = direction @ (local.min(0) + new_sp / 2)
    else:
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    return sitk.Resample(image, [int(v) for v in new_size], sitk.Transform(), interp,
                         [float(v) for v in origin], [float(v) for v in new_sp],
                         [float(v) for v in direction.ravel()], default, image.GetPixelID())
