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

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from GlandSegLib.glands import BY_LABEL, LABELS, gland
from GlandSegLib.names import match_gland

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

    def __init__(self, size, origin, spacing, fill: int = -1000):
        self.size, self.origin, self.spacing = np.array(size), np.array(origin, float), np.array(spacing, float)
        self.ct = np.full(tuple(int(v) for v in size[::-1]), fill, np.int16)
        self.lab = np.zeros(tuple(int(v) for v in size[::-1]), np.uint8)

    def paint(self, f: _Frame, shape, hu: int, label: int = 0) -> None:
        for sl, mask in self.masks(f, shape):
            np.copyto(self.ct[sl], np.int16(hu), where=mask)
            np.copyto(self.lab[sl], np.uint8(label), where=mask)

    def masks(self, f: _Frame, shape):
        """(slices, mask) chunks of a frame-coordinate shape on this grid: painting, or combining
        a parametric shape with voxel masks (outline phantoms), without a full-size temporary."""
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
            yield sl, np.broadcast_to(shape(*u), (z1 - z0, i1[1] - i0[1], i1[0] - i0[0]))


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


_BODY_CANAL = ([-880, -700, -500, -300, -200], [55, 45, 62, 55, 38])  # body frame: spinal canal z knots, y


def _paint_body(cv: _Canvas, f: _Frame, p: dict, interior_top: float | None = None) -> None:
    """Shoulders to legs in the body frame: coarse, elliptic cross-sections along z.

    interior_top (body frame z): lungs, airway, heart and spine stop there, because an outline
    phantom brings its own real lungs, spine and airway above it; the body wall, shoulders and
    arms stay so the real neck sits on a torso. None paints everything (make_phantom).
    """
    hu = p["hu"]
    paint = lambda shape, tissue: cv.paint(f, shape, hu[tissue])
    inner = (lambda s: s) if interior_top is None else (lambda s: _Where(s, None, (-1e9, interior_top)))
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
        paint(inner(_Tube([-520, -480, -420, -320, -260, -235], [s * 80] * 6, [0, -5, -5, -5, 0, 10],
                    [40, 58, 64, 62, 50, 15], [55, 75, 88, 85, 60, 15])), "lung")
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
    paint(inner(_Ell((22, -40, -420), (60, 55, 65))), "heart")
    paint(inner(_Tube([-460, -240], [0, 0], [-20, -20], [28, 22], [55, 40])), "heart")  # mediastinum
    paint(inner(_Tube([-340, -200], [0, 0], [-30, -25], [9, 9], [8, 8])), "air")  # trachea
    for s in (-1, 1):
        paint(inner(_Ell((s * 28, -20, -348), (22, 6, 6))), "air")  # main bronchi
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
    canal = _Tube(_BODY_CANAL[0], [0] * 5, _BODY_CANAL[1], [10, 11, 9, 9, 9], [9, 10, 8, 8, 8])
    ck, cy = canal.k[0], canal.k[2]
    col = _Tube(ck, [0] * 5, cy - 32, [25, 24, 20, 17, 12], [20, 20, 17, 15, 10])
    vert = _periodic(-230, 27, 21)
    paint(inner(_zband(col, -780, -215)), "disc")  # above -215 the head frame's neck takes over
    paint(inner(_Where(col, vert, (-780, -215))), "cortical")
    paint(inner(_Where(col.grow(-3), vert, (-780, -217))), "cancellous")
    paint(inner(_Where(canal.grow(7), vert, (-780, -215))), "cortical")
    paint(inner(_Where(_Tube(ck, [0] * 5, cy + 22, [5] * 5, [14] * 5), vert, (-780, -215))), "cortical")  # spinous processes
    paint(_zband(_Ell((0, 62, -830), (48, 22, 60)), -900, -775), "cancellous")  # sacrum
    paint(inner(_zband(canal, -880, -200)), "cord")


# ---------------------------------------------------------------- assembly
def _render(seed: int, field: str, spacing, size_xy, length_mm, truncate_vertex_mm: float, variation: bool,
            with_head: bool = True, z_range: tuple[float, float] | None = None
            ) -> tuple[np.ndarray, sitk.Image, float]:
    """Label array, CT image and midline x. z_range (body frame) replaces the field's extent."""
    rng = np.random.default_rng(seed)
    p = _case(rng if variation else None)
    p["pockets"] = _pockets(rng)  # then the noise: one generator, drawn in a fixed order
    y_fov = FIELDS[field][2]
    s, rot = p["scale"], _rotation(p["yaw"], p["roll"])
    centre = np.array(p["offset"], float)  # head centre (physical)
    body_c = centre - np.array(NECK_PIVOT) + s * rot @ np.array(NECK_PIVOT)
    head = _Frame(centre, rot.T / s)
    body = _Frame(body_c, np.eye(3))
    # top of the rotated, scaled scalp ellipsoid: the vertex
    vertex = centre[2] + s * (rot @ np.array(_SCALP.c))[2] + s * float(np.linalg.norm(rot[2] * _SCALP.a))
    if z_range is None:
        top, length = _extent(field, vertex, truncate_vertex_mm, length_mm)
    else:
        top, length = body_c[2] + z_range[1], z_range[1] - z_range[0]
    xc = centre[0] if field == "head" else body_c[0]
    yc = (centre[1] if field == "head" else body_c[1]) + y_fov
    size, origin = _layout(field, spacing, size_xy, top, length, xc, yc)
    cv = _Canvas(size, origin, spacing)
    if field != "head":
        _paint_body(cv, body, p)
    if with_head:
        _paint_head(cv, head, p)
    _finish(cv, p["blur"], p["noise"], rng, circle=field != "head")
    lab, img = _images(cv)
    return lab, img, float(centre[0])


def _extent(field: str, vertex: float, truncate_vertex_mm: float, length_mm: float | None) -> tuple[float, float]:
    """Top (physical z) and length of a field: a truncated vertex lowers the top, the lower end stays."""
    top = vertex - truncate_vertex_mm if truncate_vertex_mm > 0 else vertex + 5.0
    length = length_mm if length_mm is not None else FIELDS[field][1] - (vertex + 5.0 - top)
    return top, length


def _layout(field: str, spacing, size_xy: int | None, top: float, length: float, xc: float, yc: float,
            fov: float | None = None) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Grid size and origin of a field of view centred on (xc, yc), from top down by length."""
    sx, sy, sz = (float(v) for v in spacing)
    fov = fov or FIELDS[field][0]
    nz = max(1, int(round(length / sz)))
    nx = size_xy or int(round(fov / sx))
    ny = size_xy or int(round(fov / sy))
    return (nx, ny, nz), (xc - (nx - 1) / 2 * sx, yc - (ny - 1) / 2 * sy, top - (nz - 1) * sz)


def _images(cv: _Canvas) -> tuple[np.ndarray, sitk.Image]:
    """The finished canvas as a CT image (and its label array); the canvas gives up its CT copy."""
    img = sitk.GetImageFromArray(cv.ct)
    cv.ct = None  # the image holds its own copy: free ours before the labels are copied too
    img.SetOrigin(tuple(float(v) for v in cv.origin))
    img.SetSpacing(tuple(float(v) for v in cv.spacing))
    return cv.lab, img


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


# ---------------------------------------------------------------- phantoms from expert outlines
# The DeepMind TCIA set (shared/data/tcia-hn-labels) has two raters' outlines of 21 organs on
# 35 real head-and-neck scans, but no CT. Its glands, brain, orbits, mandible, spine and lungs
# are real anatomy in real relation to each other; everything else a CT shows is synthesized
# around them here, on the source grid, inside bounding boxes.
OUTLINE_RATERS = ("oncologist", "radiographer")
_OUTLINE_SPLITS = ("test", "validation")
_OUTLINE_STRUCTURES = frozenset({
    "brain", "brainstem", "cochlea-lt", "cochlea-rt", "lens-lt", "lens-rt", "lung-lt", "lung-rt", "mandible",
    "optic-nerve-lt", "optic-nerve-rt", "orbit-lt", "orbit-rt", "spinal-canal", "spinal-cord"})
_CLOSING_MM = 8.0  # the skull's inner table bridges brain concavities narrower than this
_UNSET = -32768  # block voxels nothing has painted yet (never a HU value)
_HU_OUTLINE = {"thyroid": (100, 12), "cartilage": (130, 30)}  # extra tissues, drawn after _case's


@dataclass(frozen=True)
class _Mask:
    """One outline cropped to its bounding box: a full 512x512xN mask is 40 MB."""

    a: np.ndarray  # bool (z, y, x), read-only
    lo: tuple[int, int, int]  # source index (z, y, x) of a[0, 0, 0]

    @property
    def hi(self) -> tuple[int, int, int]:
        return tuple(int(v + n) for v, n in zip(self.lo, self.a.shape))  # type: ignore[return-value]


@dataclass(frozen=True)
class _Outlines:
    """One rater's outlines of one scan: the source grid and the non-empty masks."""

    folder: str
    origin: np.ndarray  # LPS mm of source index (0, 0, 0), x y z
    spacing: np.ndarray  # mm, x y z
    size: tuple[int, int, int]  # x y z
    masks: dict[str, _Mask]  # normalised organ name ("orbit-lt") -> mask
    glands: dict[int, _Mask]  # canonical gland label -> mask

    def phys(self, idx_zyx) -> np.ndarray:
        return self.origin + np.asarray(idx_zyx, float)[..., ::-1] * self.spacing

    def centroid(self, m: _Mask | None) -> np.ndarray | None:
        return None if m is None else self.phys(_mean_index(m.a) + m.lo)

    def volume_ml(self, m: _Mask | None) -> float:
        return 0.0 if m is None else float(m.a.sum()) * float(np.prod(self.spacing)) / 1000.0

    def bounds(self, m: _Mask) -> tuple[np.ndarray, np.ndarray]:
        """Physical x y z of the first and last voxel centres."""
        return self.phys(m.lo), self.phys(np.array(m.hi) - 1)


def _mean_index(a: np.ndarray) -> np.ndarray:
    """Mean (z, y, x) index of a mask from its projections: no argwhere of a million voxels."""
    n = float(a.sum())
    return np.array([float(np.dot(a.sum(axis=tuple(j for j in range(3) if j != k)), np.arange(a.shape[k]))) / n
                     for k in range(3)])


def _crop(a: np.ndarray) -> _Mask | None:
    """The mask on its bounding box, read-only (None when empty)."""
    zs = np.flatnonzero(a.any(axis=(1, 2)))
    if not len(zs):
        return None
    sub = a[zs[0]:zs[-1] + 1]
    ys, xs = np.flatnonzero(sub.any(axis=(0, 2))), np.flatnonzero(sub.any(axis=(0, 1)))
    m = sub[:, ys[0]:ys[-1] + 1, xs[0]:xs[-1] + 1] != 0
    m.flags.writeable = False  # cached and shared between phantoms
    return _Mask(m, (int(zs[0]), int(ys[0]), int(xs[0])))


def _outline_base(root: str | Path) -> Path:
    """The folder holding test/ and validation/, from the set's root or one of its parents."""
    root = Path(root)
    for c in (root, root / "nrrds", root / "tcia-hn-labels" / "nrrds"):
        if any((c / s).is_dir() for s in _OUTLINE_SPLITS):
            return c
    raise FileNotFoundError(f"no tcia-hn-labels outlines (test/ or validation/ folders) under {root}")


def list_outline_cases(root: str | Path, split: str = "test") -> list[Path]:
    """Case folders of the TCIA outline set, sorted by case name.

    root: the set (tcia-hn-labels), its nrrds/ folder, or the folder holding tcia-hn-labels.
    split: "test", "validation" or "all". The set is stored split/rater/case/segmentations;
    each returned path is the case under the first rater that has it
    (split/oncologist/case), and `make_phantom_from_outlines(path, rater=...)` or
    `outline_folder(path, rater)` finds the other rater's sibling folder by name.
    """
    base = _outline_base(root)
    splits = _OUTLINE_SPLITS if split == "all" else (split,)
    if any(s not in _OUTLINE_SPLITS for s in splits):
        raise ValueError(f"split must be one of {_OUTLINE_SPLITS} or 'all', not {split!r}")
    cases: list[Path] = []
    for s in splits:
        seen: dict[str, Path] = {}
        for rater in OUTLINE_RATERS:
            d = base / s / rater
            for c in sorted(d.iterdir()) if d.is_dir() else []:
                if c.is_dir():
                    seen.setdefault(c.name, c)
        cases += [seen[k] for k in sorted(seen)]
    return cases


def outline_folder(case_dir: str | Path, rater: str = "oncologist") -> Path:
    """The folder holding one rater's *.nrrd masks of a case.

    Accepts split/rater/case (the set's layout, any rater: the sibling is found by name),
    case/rater, or a folder of masks itself (then rater is not used).
    """
    d = Path(case_dir)
    if rater not in OUTLINE_RATERS:
        raise ValueError(f"rater must be one of {OUTLINE_RATERS}, not {rater!r}")
    if d.name == "segmentations":
        d = d.parent
    if (d / rater).is_dir():
        d = d / rater
    elif d.parent.name in OUTLINE_RATERS:
        d = d.parent.parent / rater / d.name
    if (d / "segmentations").is_dir():
        d = d / "segmentations"
    if not d.is_dir() or not any(d.glob("*.nrrd")):
        raise FileNotFoundError(f"no {rater} outlines (*.nrrd) for {case_dir} (looked in {d})")
    return d


def read_outlines(folder: str | Path, glands_only: bool = False) -> _Outlines:
    """One rater's masks, cropped; glands through names.match_gland (hyphen or underscore
    names), other organs by normalised name; empty masks are left out. Cached: the same
    folder read again (another seed or field) costs nothing, and the files are only read."""
    return _read_outlines_cached(str(Path(folder).resolve()), glands_only)


@functools.lru_cache(maxsize=6)
def _read_outlines_cached(folder: str, glands_only: bool) -> _Outlines:
    geometry = None
    masks: dict[str, _Mask] = {}
    glands: dict[int, _Mask] = {}
    for f in sorted(Path(folder).glob("*.nrrd")):
        stem = f.name[:-len(".nrrd")]
        g = match_gland(stem)
        key = stem.replace("_", "-").lower()
        if g is None and (glands_only or key not in _OUTLINE_STRUCTURES):
            continue
        img = sitk.ReadImage(str(f))
        geo = (img.GetSize(), np.round(img.GetOrigin(), 3).tolist(), np.round(img.GetSpacing(), 5).tolist())
        if not np.allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-4):
            raise ValueError(f"{f}: oblique outline grids are not supported")
        if geometry is None:
            geometry = (geo, np.array(img.GetOrigin(), float), np.array(img.GetSpacing(), float))
        elif geo != geometry[0]:
            raise ValueError(f"{f}: grid {geo} differs from the other outlines of the case {geometry[0]}")
        m = _crop(sitk.GetArrayFromImage(img))
        if m is None:
            continue  # resected or not outlined: stays empty
        if g is not None:
            if g.label in glands:
                raise ValueError(f"{folder}: two files name the {g.name}")
            glands[g.label] = m
        else:
            masks[key] = m
    if geometry is None:
        raise FileNotFoundError(f"no outline masks (*.nrrd) in {folder}")
    return _Outlines(folder, geometry[1], geometry[2], tuple(int(v) for v in geometry[0][0]), masks, glands)


def _outline_params(rng: np.random.Generator | None) -> dict:
    """What varies per seed beyond _case: tissue thicknesses, muscle sizes, teeth, field of view.
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


class _Block(_Canvas):
    """The head and neck on the source lattice (same spacing, origin on a source voxel), filled
    with _UNSET until painted: real masks paste voxel for voxel, parametric shapes paint in
    physical coordinates through the identity frame, and what stays unset becomes envelope."""

    def __init__(self, o: _Outlines, k0, shape_zyx):
        self.k0 = np.array(k0, int)  # source index (z, y, x) of block voxel (0, 0, 0)
        self.shape = np.array(shape_zyx, int)
        super().__init__(self.shape[::-1], o.phys(self.k0), o.spacing, fill=_UNSET)
        self.frame = _Frame(np.zeros(3), np.eye(3))
        self.x, self.y, self.z = (self.origin[i] + self.spacing[i] * np.arange(self.size[i]) for i in range(3))
        self.sp_zyx = tuple(float(v) for v in self.spacing[::-1])

    def box(self, m: _Mask, pad_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray] | None:
        """Block index box (lo, hi) of a mask plus padding, clipped; None when outside."""
        pad = np.ceil(pad_mm / self.spacing[::-1]).astype(int)
        lo = np.maximum(np.array(m.lo) - self.k0 - pad, 0)
        hi = np.minimum(np.array(m.hi) - self.k0 + pad, self.shape)
        return None if np.any(hi <= lo) else (lo, hi)

    def window(self, m: _Mask, lo, hi) -> np.ndarray:
        """The mask on the block box lo..hi (bool copy, zero where the mask does not reach)."""
        return _embed(m.a, np.array(m.lo) - self.k0, lo, hi)

    def put(self, m: _Mask | None, hu: int, label: int = 0) -> None:
        if m is None or (b := self.box(m)) is None:
            return
        self.fill(b[0], self.window(m, *b), hu, label)

    def fill(self, lo, mask: np.ndarray, hu: int, label: int = 0) -> None:
        sl = tuple(slice(int(a), int(a) + n) for a, n in zip(lo, mask.shape))
        np.copyto(self.ct[sl], np.int16(hu), where=mask)
        np.copyto(self.lab[sl], np.uint8(label), where=mask)

    def draw(self, shape, hu: int) -> None:
        """Paint a shape given in physical LPS coordinates."""
        self.paint(self.frame, shape, hu)

    def coords(self, lo, hi):
        """Broadcastable physical z, y, x of a block box."""
        return (self.z[lo[0]:hi[0], None, None], self.y[None, lo[1]:hi[1], None], self.x[None, None, lo[2]:hi[2]])


def _embed(a: np.ndarray, a_lo, lo, hi) -> np.ndarray:
    """Array a (whose [0, 0, 0] sits at index a_lo) on the box lo..hi, zero elsewhere."""
    out = np.zeros(tuple(int(v) for v in np.subtract(hi, lo)), bool)
    a0 = np.asarray(a_lo, int) - np.asarray(lo, int)
    s0, s1 = np.maximum(a0, 0), np.minimum(a0 + a.shape, out.shape)
    if np.all(s1 > s0):
        out[tuple(slice(x, y) for x, y in zip(s0, s1))] = a[tuple(slice(x - c, y - c) for x, y, c in zip(s0, s1, a0))]
    return out


def _distance(mask: np.ndarray, sp_zyx, factor: int = 1) -> np.ndarray:
    """Distance (mm) outside a mask. factor > 1 computes it on an in-plane coarser grid and
    interpolates back: a skull-sized Euclidean distance map costs ~1 s at 1 mm, 0.1 s at 2 mm."""
    if factor <= 1:
        return ndimage.distance_transform_edt(~mask, sampling=sp_zyx).astype(np.float32)
    nz, ny, nx = mask.shape
    cy, cx = -(-ny // factor), -(-nx // factor)
    pad = np.zeros((nz, cy * factor, cx * factor), bool)
    pad[:, :ny, :nx] = mask
    coarse = pad.reshape(nz, cy, factor, cx, factor).any(axis=(2, 4))
    d = ndimage.distance_transform_edt(~coarse, sampling=(sp_zyx[0], sp_zyx[1] * factor, sp_zyx[2] * factor))
    d = d.astype(np.float32)
    for axis, n in ((1, ny), (2, nx)):  # linear interpolation back, axis by axis
        t = np.clip((np.arange(n) - (factor - 1) / 2) / factor, 0, d.shape[axis] - 1)
        j0 = np.floor(t).astype(int)
        j1 = np.minimum(j0 + 1, d.shape[axis] - 1)
        w = (t - j0).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = n
        d = np.take(d, j0, axis=axis) * (1 - w.reshape(shape)) + np.take(d, j1, axis=axis) * w.reshape(shape)
    return d


def _hull(points: np.ndarray) -> np.ndarray:
    """Half-planes (a, b, c: a x + b y + c <= 0 inside, unit normals) of the convex hull of 2-D
    points; a bounding rectangle where the points are too few or collinear."""
    if len(points) >= 3:
        try:
            return ConvexHull(points).equations
        except QhullError:
            pass
    lo, hi = points.min(0) - 0.5, points.max(0) + 0.5
    return np.array([[-1, 0, lo[0]], [1, 0, -hi[0]], [0, -1, lo[1]], [0, 1, -hi[1]]], float)


def _polygon_mask(eq: np.ndarray, offset: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """(len(ys), len(xs)) mask of a convex polygon grown by offset mm (shrunk if negative):
    every edge moves outwards, so a row's inside is one interval from the half-planes."""
    a, b, c = eq[:, 0][None], eq[:, 1][None], eq[:, 2][None] - offset
    r = -(b * ys[:, None] + c)  # a x <= r
    with np.errstate(divide="ignore", invalid="ignore"):
        lim = r / a
    lo = np.where(a < -1e-9, lim, -np.inf).max(1)
    hi = np.where(a > 1e-9, lim, np.inf).min(1)
    ok = np.all((np.abs(a) > 1e-9) | (r >= 0), axis=1)
    return ok[:, None] & (xs[None] >= lo[:, None]) & (xs[None] <= hi[:, None])


def _row_extremes(core: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> list[np.ndarray]:
    """Per slice, the leftmost and rightmost voxel of every row as 2-D points (mm): all that a
    convex hull needs, without listing every voxel."""
    has = core.any(axis=2)
    left = core.argmax(axis=2)
    right = core.shape[2] - 1 - core[:, :, ::-1].argmax(axis=2)
    out = []
    for k in range(core.shape[0]):
        r = np.flatnonzero(has[k])
        out.append(np.concatenate([np.c_[xs[left[k, r]], ys[r]], np.c_[xs[right[k, r]], ys[r]]]) if len(r) else None)
    return out


def _segment(p1, p2, radius: float) -> tuple[_Frame, _Ell]:
    """A bar from p1 to p2 (zygomatic arch, ear canal): an ellipsoid along the segment."""
    p1, p2 = np.asarray(p1, float), np.asarray(p2, float)
    u = p2 - p1
    n = float(np.linalg.norm(u))
    u = u / n
    v = np.cross(u, [0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.cross(u, [1.0, 0.0, 0.0])
    v /= np.linalg.norm(v)
    return _Frame((p1 + p2) / 2, np.array([u, v, np.cross(u, v)])), _Ell((0, 0, 0), (n / 2 + radius, radius, radius))


class _Anatomy:
    """Landmarks measured on the outlines (physical LPS mm), and fallbacks for missing ones."""

    def __init__(self, o: _Outlines):
        m = o.masks
        for need in ("brain", "mandible", "spinal-canal"):
            if need not in m:
                raise ValueError(f"{o.folder}: the {need} outline is empty; an outline phantom needs it")
        self.brain_lo, self.brain_hi = o.bounds(m["brain"])
        self.brain_c = o.centroid(m["brain"])
        self.brain_cut = m["brain"].hi[0] >= o.size[2]  # the scan cut the vertex: the skull stays open
        pairs = [(o.centroid(m.get(f"{n}-lt")), o.centroid(m.get(f"{n}-rt"))) for n in ("orbit", "cochlea", "lens", "optic-nerve")]
        mids = [(l[0] + r[0]) / 2 for l, r in pairs if l is not None and r is not None]
        self.mid_x = float(np.mean(mids)) if mids else float(self.brain_c[0])

        def side_pair(name):
            left, right = o.centroid(m.get(f"{name}-lt")), o.centroid(m.get(f"{name}-rt"))
            if left is None and right is None:
                raise ValueError(f"{o.folder}: both {name} outlines are empty; an outline phantom needs one")
            mirror = lambda p: np.array([2 * self.mid_x - p[0], p[1], p[2]])
            return {"L": left if left is not None else mirror(right), "R": right if right is not None else mirror(left)}

        self.globe = side_pair("orbit")
        self.cochlea = side_pair("cochlea")
        vols = [o.volume_ml(m.get(f"orbit-{s}")) for s in ("lt", "rt")]
        self.globe_r = float(np.clip((3 * max(vols) * 1000 / (4 * np.pi)) ** (1 / 3), 9.5, 14.0))
        self.k = float(np.clip((self.globe["L"][0] - self.globe["R"][0]) / 62.0, 0.85, 1.2))  # face scale
        self.gz = (self.globe["L"][2] + self.globe["R"][2]) / 2
        self.gy = (self.globe["L"][1] + self.globe["R"][1]) / 2
        self.canal_top = float(o.bounds(m["spinal-canal"])[1][2])
        self.z_fm = float(o.bounds(m["brainstem"])[0][2]) if "brainstem" in m else self.canal_top  # foramen magnum
        self.z_fm = min(self.z_fm, self.canal_top + 5.0)
        lungs = [o.bounds(m[n])[1][2] for n in ("lung-lt", "lung-rt") if n in m]
        self.apex = float(max(lungs)) if lungs else None
        self.mand_lo, self.mand_hi = o.bounds(m["mandible"])
        self.src_bottom = float(o.origin[2])
        self.src_top = float(o.origin[2] + (o.size[2] - 1) * o.spacing[2])


def _canal_profile(blk: _Block, o: _Outlines) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spinal canal centre x, y and half widths (mm) on every block slice, smoothed; held
    constant beyond the outline. The spine, airway and neck are built around it."""
    m = o.masks["spinal-canal"]
    a = m.a
    zc, yv, xv = (o.origin[i] + o.spacing[i] * (m.lo[2 - i] + np.arange(a.shape[2 - i])) for i in (2, 1, 0))
    px, py = a.sum(axis=1).astype(float), a.sum(axis=2).astype(float)
    n = px.sum(axis=1)
    ok = n > 0
    vals = ((px @ xv)[ok] / n[ok], (py @ yv)[ok] / n[ok],
            a.any(axis=1).sum(axis=1)[ok] * o.spacing[0] / 2, a.any(axis=2).sum(axis=1)[ok] * o.spacing[1] / 2)
    return tuple(ndimage.uniform_filter1d(np.interp(blk.z, zc[ok], v), 5, mode="nearest") for v in vals)  # type: ignore[return-value]


def _mouth(blk: _Block, A: "_Anatomy", o: _Outlines, q: dict) -> dict | None:
    """Where teeth, palate and tongue go, read off the real mandible: its body (columns whose top
    is the alveolar crest) carries the teeth; columns rising higher are the rami."""
    b = blk.box(o.masks["mandible"])
    if b is None:
        return None
    lo, hi = b
    mw = blk.window(o.masks["mandible"], lo, hi)
    zw, yw, xw = blk.z[lo[0]:hi[0]], blk.y[lo[1]:hi[1]], blk.x[lo[2]:hi[2]]
    col = mw.any(axis=0)
    ztop = zw[mw.shape[0] - 1 - mw[::-1].argmax(axis=0)]
    zbot = zw[mw.argmax(axis=0)]
    y_front = float(yw[np.flatnonzero(col.any(axis=1))[0]])
    crest = float(ztop[col & (yw[:, None] <= y_front + 12)].max())
    X, Y = np.broadcast_to(xw[None], col.shape), np.broadcast_to(yw[:, None], col.shape)
    body = col & (ztop <= crest + 10)
    for s in (1, -1):  # behind the front of each ramus only the angle is left: no teeth there
        side = s * (X - A.mid_x) > 0
        if (col & ~body & side).any():
            body &= ~side | (Y < Y[col & ~body & side].min())
    if body.sum() < 3:  # nothing left that could carry teeth
        return None
    pts = np.c_[X[body], Y[body]]
    z_crest = float(np.median(ztop[body]))
    z_pal = max(A.gz - q["palate"], z_crest + q["teeth_h"] + 18.5)  # a jaw set higher lifts the palate
    xc, y_back = float(pts[:, 0].mean()), float(pts[:, 1].max())
    return {"lo": lo, "hi": hi, "mw": mw, "body": body, "ramus_cols": col & ~body, "ztop": ztop, "zbot": zbot,
            "z_crest": z_crest, "z_bottom": float(np.median(zbot[body])), "z_pal": z_pal,
            "xc": xc, "yc": y_front + 0.55 * (y_back - y_front), "y_front": y_front, "y_back": y_back,
            "x_left": float(pts[:, 0].max()), "x_right": float(pts[:, 0].min()),
            "arch": _hull(pts), "tongue": _hull(np.r_[pts, [[xc - 15, y_back + 12], [xc + 15, y_back + 12]]])}


SIDES = (("L", 1.0), ("R", -1.0))  # +x is the patient's left


@dataclass
class Levels:
    """Heights and per-slice profiles (physical mm; arrays hold one value per block slice) that
    the painting steps of an outline head share, measured once on the real canal and mandible."""

    z: np.ndarray  # block slice heights
    cx: np.ndarray  # spinal canal centre x, y and half widths x, y (canal_profile)
    cy: np.ndarray
    cax: np.ndarray
    cay: np.ndarray
    d_fm: np.ndarray  # mm below the foramen magnum
    bx: np.ndarray  # vertebral body half widths x, y
    by: np.ndarray
    y_body: np.ndarray  # vertebral body centre y
    y_vf: np.ndarray  # front of the vertebral bodies, the pharynx's back wall
    y_c2: float  # y_vf 30 mm below the foramen magnum (C2), held above it
    mo: dict | None  # the mouth read off the mandible (_mouth), None without teeth
    z_pal: float  # hard palate
    z_occ: float  # occlusal plane
    z_hy: float  # hyoid: just below the mandible
    apex: float  # lung apex, or a stand-in below the hyoid


def measure_levels(blk: _Block, o: _Outlines, A: _Anatomy, q: dict) -> Levels:
    """The spine profile and the heights of palate, teeth, hyoid and lung apex of one head."""
    z = blk.z
    cx, cy, cax, cay = _canal_profile(blk, o)
    d_fm = A.z_fm - z  # mm below the foramen magnum
    bx = np.interp(d_fm, [24, 25, 120, 170, 260], [0, 8, 10, 13, 15])  # vertebral body half width
    by = np.interp(d_fm, [24, 25, 120, 170, 260], [0, 7, 8, 11, 13])
    y_body = cy - cay - 2 - by
    y_vf = cy - cay - 2 - 2 * by  # front of the vertebral bodies, the pharynx's back wall
    y_c2 = float(np.interp(A.z_fm - 30, z, y_vf))
    y_vf = np.where(d_fm < 30, y_c2 + (cy - np.interp(A.z_fm - 30, z, cy)), y_vf)
    mo = _mouth(blk, A, o, q)
    z_pal = mo["z_pal"] if mo else A.gz - q["palate"]
    z_occ = z_pal - 18.0
    z_hy = float(A.mand_lo[2]) - 8.0  # hyoid: just below the mandible
    apex = A.apex if A.apex is not None else z_hy - 90.0
    return Levels(z, cx, cy, cax, cay, d_fm, bx, by, y_body, y_vf, y_c2, mo, z_pal, z_occ, z_hy, apex)


# ---- soft tissue steps
def gland_fat(blk: _Block, o: _Outlines, q: dict, hu: dict) -> None:
    """Fat around the parotid and submandibular glands (fascia, parapharyngeal and submandibular fat)."""
    gl = o.glands
    for label, m in gl.items():
        if BY_LABEL[label].organ == "lacrimal" or (b := blk.box(m, q["halo"] + 2)) is None:
            continue
        w = blk.window(m, *b)
        blk.fill(b[0], ~w & (_distance(w, blk.sp_zyx) <= q["halo"]), hu["fat"])


def neck_muscles(blk: _Block, A: _Anatomy, L: Levels, q: dict, hu: dict) -> None:
    """Posterior muscle mass around the spine, prevertebral muscles, sternocleidomastoids."""
    z, cx, cy, bx, by, y_body, y_vf, z_hy, apex = L.z, L.cx, L.cy, L.bx, L.by, L.y_body, L.y_vf, L.z_hy, L.apex
    sel = z <= A.z_fm + 20
    if sel.any():
        widen = np.interp(z[sel], [apex - 20, apex + 30], [12, 0])
        blk.draw(_Tube(z[sel], cx[sel], cy[sel] + 16, q["neck_w"] + widen, q["neck_d"] + widen / 2), hu["muscle"])
        blk.draw(_Tube(z[sel], cx[sel], y_body[sel], np.maximum(bx[sel], 8) + 6, np.maximum(by[sel], 6) + 4), hu["muscle"])
    zk = [min(apex - 10, z_hy - 40), z_hy, None]
    for side, s in SIDES:
        c = A.cochlea[side]
        zk[2] = max(c[2] - 15, z_hy + 10)
        at = lambda arr, zz: float(np.interp(zz, z, arr))
        trachea_y = at(y_vf, zk[0]) - 12 - 8
        blk.draw(_Tube(zk, [at(cx, zk[0]) + s * 25, at(cx, z_hy) + s * 0.8 * q["neck_w"], c[0] + s * 22],
                       [trachea_y - 10, at(cy, z_hy) - 20, c[1] + 10], [6, 7, 7], [9, 12, 9]), hu["muscle"])


def chewing_muscles(blk: _Block, A: _Anatomy, L: Levels, q: dict, hu: dict) -> dict[str, np.ndarray]:
    """Masseter and pterygoids on the real rami. Returns each side's condyle (physical mm): the
    top of the ramus, or a guess from the cochlea where the ramus is missing."""
    mo, mx = L.mo, A.mid_x
    condyle = {}
    if mo:
        lo, hi = mo["lo"], mo["hi"]
        ramus = mo["mw"] & mo["ramus_cols"][None]
        xw = blk.x[lo[2]:hi[2]]
        for side, s in SIDES:
            rs = ramus & (s * (xw - mx) > 0)[None, None, :]
            if rs.sum() < 20:
                continue
            idx = np.argwhere(rs)
            pad = np.ceil(max(q["masseter"], q["pterygoid"]) / blk.spacing[::-1]).astype(int) + 1
            blo = np.maximum(idx.min(0) + lo - pad, 0)
            bhi = np.minimum(idx.max(0) + 1 + lo + pad, blk.shape)
            w = _embed(rs, lo, blo, bhi)
            d, ind = ndimage.distance_transform_edt(~w, sampling=blk.sp_zyx, return_indices=True)
            Z, _, X = blk.coords(blo, bhi)
            dx = s * (X - blk.x[blo[2] + ind[2]])
            z_angle, z_cond = float(blk.z[idx[:, 0].min() + lo[0]]), float(blk.z[idx[:, 0].max() + lo[0]])
            top = idx[idx[:, 0] == idx[:, 0].max()].mean(0) + lo
            condyle[side] = blk.origin + top[::-1] * blk.spacing
            chew = ((d <= q["masseter"]) & (dx > 0.5) & (Z >= z_angle - 2) & (Z <= z_cond - 10)) | (
                (d <= q["pterygoid"]) & (dx < -0.5) & (((Z >= z_angle) & (Z <= z_angle + 0.55 * (z_cond - z_angle)))
                                                     | ((Z >= z_cond - 18) & (Z <= z_cond - 4))))
            blk.fill(blo, chew & ~w, hu["muscle"])
    for side, s in SIDES:
        condyle.setdefault(side, A.cochlea[side] + np.array([s * 15, -12, -8]))
    return condyle


def temporalis(blk: _Block, A: _Anatomy, condyle: dict, T: np.ndarray, dist: tuple, q: dict, hu: dict) -> None:
    """The temporalis over the temple: a band of the skull distance (dist, skull_distance) just
    outside the outer table (T: outer radii of the skull's layers), from the zygomatic arch up."""
    slo, shi, d_ic, _ = dist
    mx, gy = A.mid_x, A.gy
    z_arch = float(np.mean([condyle["L"][2], condyle["R"][2]])) - 3.0
    Z, Y, X = blk.coords(slo, shi)
    half_w = (A.brain_hi[0] - A.brain_lo[0]) / 2
    muscle = ((d_ic > T[-1]) & (d_ic <= T[-1] + q["temporalis"]) & (Z >= z_arch) & (Z <= z_arch + 50)
              & (np.abs(X - mx) > 0.5 * half_w) & (Y >= gy + 8) & (Y <= max(A.cochlea["L"][1], A.cochlea["R"][1]) + 12))
    blk.fill(slo, muscle, hu["muscle"])


def tongue(blk: _Block, L: Levels, hu: dict) -> None:
    """Tongue inside the mandibular arch up to the palate, muscular floor of the mouth below it."""
    z, mo, z_pal = L.z, L.mo, L.z_pal
    if mo:
        floor = mo["z_bottom"] + 0.45 * (mo["z_crest"] - mo["z_bottom"])
        for eq, z0, z1, tissue in ((mo["tongue"], floor, z_pal - 1.5, "tongue"), (mo["arch"], mo["z_bottom"] + 2, floor, "muscle")):
            kz = np.flatnonzero((z >= z0) & (z <= z1))
            area = _polygon_mask(eq, 0.0, blk.y, blk.x)
            if len(kz) and area.any():
                blk.fill((kz[0], 0, 0), np.broadcast_to(area, (len(kz), *area.shape)), hu[tissue])
        blk.draw(_Ell((mo["xc"], mo["yc"], z_pal - 3), (15, 20, 1.5)), hu["air"])  # a little air under the palate


def fat_pads(blk: _Block, o: _Outlines, L: Levels, hu: dict) -> None:
    """Parapharyngeal fat medial to each parotid, buccal fat in the cheeks."""
    gl, mo, z_occ = o.glands, L.mo, L.z_occ
    for side, s in SIDES:
        m = gl.get(gland("parotid", side).label)
        if m is not None:
            c, (lo_p, hi_p) = o.centroid(m), o.bounds(m)
            x_med = lo_p[0] if s > 0 else hi_p[0]
            blk.draw(_Ell((x_med - s * 6, c[1] + 3, c[2] - 5), (6, 9, 14)), hu["fat"])
        if mo:
            blk.draw(_Ell(((mo["x_left"] if s > 0 else mo["x_right"]) + s * 8, mo["y_back"] - 15, z_occ), (6, 10, 10)), hu["fat"])


def nose_and_lips(blk: _Block, A: _Anatomy, L: Levels, hu: dict) -> None:
    """The nose, and the lips with the upper lip joining them to the nose."""
    k, r, mx, gy, gz = A.k, A.globe_r, A.mid_x, A.gy, A.gz
    mo, z_pal, z_occ = L.mo, L.z_pal, L.z_occ
    blk.draw(_Where(_Ell((mx, gy - r - 6, (gz + z_pal) / 2 - 2), (10 * k, 18 * k, (gz - z_pal) / 2 + 2)),
                    lambda x, y, zz: y < gy - r + 4), hu["soft"])
    if mo:  # lips, and the upper lip joining them to the nose whatever the jaw's position
        blk.draw(_Ell((mx, mo["y_front"] - 7, z_occ + 1), (24 * k, 7, 13)), hu["soft"])
        blk.paint(*_segment((mx, gy - r - 8, z_pal + 6), (mx, mo["y_front"] - 8, z_occ + 8), 10.0), hu["soft"])


def airway(blk: _Block, A: _Anatomy, L: Levels, q: dict, hu: dict) -> None:
    """Airway from the nasopharynx to the trachea in front of the spine; larynx, hyoid, thyroid."""
    z, cx, y_vf, y_c2, z_pal, z_hy = L.z, L.cx, L.y_vf, L.y_c2, L.z_pal, L.z_hy
    k, mx, gy = A.k, A.mid_x, A.gy
    sc, pv = q["airway"], q["prevertebral"]
    z_gl, z_cr = z_hy - 25, z_hy - 45
    knots = [z_cr - 10, z_cr, z_gl - 5, z_gl, z_hy - 15, z_hy, z_pal + 3]
    sel = z <= z_pal + 3
    if sel.sum() >= 2:
        zz = z[sel]
        ax_a = np.interp(zz, knots, [8.5, 8, 7, 3.5, 9, 10, 11]) * sc
        ay_a = np.interp(zz, knots, [7.5, 7.5, 9, 9, 8, 7, 6]) * sc
        yc_a = y_vf[sel] - np.interp(zz, knots, [12, pv + 1, pv + 1, pv + 1, pv, pv, pv]) - ay_a
        blk.draw(_Where(_Tube(zz, cx[sel], yc_a, ax_a + 3, ay_a + 3), None, (z_cr, z_hy - 5)), hu["cartilage"])
        blk.draw(_Tube(zz, cx[sel], yc_a, ax_a, ay_a), hu["air"])
        at = lambda arr, zq: float(np.interp(zq, zz, arr))
        hy = (at(cx[sel], z_hy), at(yc_a, z_hy) - 6)
        blk.draw(_Where(_Ell((hy[0], hy[1], z_hy), (20, 14, 2.5)),
                        lambda x, y, zq: ~_Ell((hy[0], hy[1], z_hy), (16, 10, 9))(x, y, zq) & (y < hy[1] + 4)), hu["cortical"])
        for s in (-1, 1):
            blk.draw(_Ell((at(cx[sel], z_cr - 25) + s * (8.5 * sc + 9), at(yc_a, z_cr - 25) - 2, z_cr - 25), (7, 9, 20)), hu["thyroid"])
    y_post, y_ant = y_c2 - 8, gy + 32 * k - 4
    blk.draw(_Ell((mx, (y_post + y_ant) / 2, z_pal + 11), (10, max(5.0, (y_post - y_ant) / 2), 11)), hu["air"])  # nasopharynx


# ---- skull steps
def face_bones(blk: _Block, A: _Anatomy, L: Levels, condyle: dict, hu: dict) -> None:
    """Maxillary sinuses, zygomas and arches (to the condyles), nasal cavity, ethmoid, sphenoid."""
    k, r, mx, gy, gz = A.k, A.globe_r, A.mid_x, A.gy, A.gz
    z_pal = L.z_pal
    orb_floor = gz - r - 3
    for side, s in SIDES:
        g = A.globe[side]
        top, bot = orb_floor - 1, z_pal + 3
        bot = min(bot, top - 12)
        sinus = _Ell((g[0] - s * 4 * k, g[1] + 16 * k, (top + bot) / 2), (15 * k, 19 * k, (top - bot) / 2))
        blk.draw(sinus.grow(2), hu["cortical"])
        blk.draw(sinus, hu["air"])
        zyg = _Ell((g[0] + s * (r + 6), g[1] + 0.2 * r, gz - r - 5), (6, 7, 9))
        blk.draw(zyg.grow(1.5), hu["cortical"])
        blk.draw(zyg, hu["diploe"])
        f, e = _segment((g[0] + s * (r + 9), g[1] + 0.7 * r, gz - r - 1), condyle[side] + np.array([s * 3, -8, 1]), 3.5)
        blk.paint(f, e, hu["cortical"])
    top_n, bot_n = gz + 10, z_pal + 2
    nasal = _Ell((mx, gy + 2 * k, (top_n + bot_n) / 2), (11 * k, 30 * k, (top_n - bot_n) / 2))
    blk.draw(nasal, hu["air"])
    blk.draw(_Where(nasal, lambda x, y, zz: np.abs(x - mx) < 1.2), hu["diploe"])  # septum: bone behind,
    blk.draw(_Where(nasal, lambda x, y, zz: (np.abs(x - mx) < 1.2) & (y < gy - 4)), hu["cartilage"])  # cartilage in front
    eth = _Ell((mx, gy + 12 * k, gz + 3), (9 * k, 16 * k, 10 * k))
    blk.draw(eth, hu["cortical"])
    blk.draw(_Where(eth.grow(-1), lambda x, y, zz: (np.mod(y, 5.5) > 1.2) & (np.mod(zz, 6.0) > 1.2)), hu["air"])
    sph = _Ell((mx, gy + 40 * k, gz - 10), (11 * k, 9 * k, 9 * k))
    blk.draw(sph.grow(2), hu["cortical"])
    blk.draw(sph, hu["air"])


def temporal_bones(blk: _Block, A: _Anatomy, hu: dict) -> None:
    """Dense petrous pyramid around the real cochlea, mastoid air cells, ear canal."""
    for side, s in SIDES:
        c = A.cochlea[side]
        u = np.array([-s, -1.0, 0.0]) / math.sqrt(2)  # the petrous ridge runs anteromedially
        blk.paint(_Frame(c + np.array([-s * 2, -2, 0]), np.array([u, [-u[1], u[0], 0], [0, 0, 1]])),
                  _Ell((0, 0, 0), (17, 7, 8)), hu["cortical"])
        mastoid = _Ell(c + np.array([s * 20, 14, -10]), (9, 10, 12))
        blk.draw(mastoid, hu["diploe"])
        blk.draw(_Where(mastoid.grow(-2), lambda x, y, zz: np.sin(1.3 * x) * np.sin(1.1 * y) * np.sin(1.2 * zz) > 0.2), hu["air"])
        blk.paint(*_segment(c + np.array([s * 8, -2, 2]), c + np.array([s * 40, -4, 2]), 3.5), hu["air"])


def orbits(blk: _Block, o: _Outlines, A: _Anatomy, hu: dict) -> None:
    """Bony walls open in front, fat cone, extraocular muscles, the real optic nerves (the real
    globe and lens come later, with the other real organs)."""
    r = A.globe_r
    for side, s in SIDES:
        g = A.globe[side]
        cav = _Ell(g + np.array([0, 0.96 * r, 0.1 * r]), (1.78 * r, 2.26 * r, 1.48 * r))
        blk.draw(_Where(cav.grow(2.5), lambda x, y, zz, cav=cav, gy0=g[1]: ~cav(x, y, zz) & (y > gy0 - 2)), hu["cortical"])
        blk.draw(cav, hu["orbfat"])
        for off, semi in (((s * 0.8 * r, 1.3 * r, 0), (2.2, 1.3 * r, 4.5)), ((-s * 0.8 * r, 1.3 * r, 0), (2.2, 1.3 * r, 4.5)),
                          ((0, 1.3 * r, 0.8 * r), (5, 1.3 * r, 2.2)), ((0, 1.3 * r, -0.8 * r), (5, 1.3 * r, 2.2))):
            blk.draw(_Ell(g + np.array(off), semi), hu["muscle"])
    for sfx in ("lt", "rt"):  # optic nerves before the skull: bone closes the optic canal, and the
        blk.put(o.masks.get(f"optic-nerve-{sfx}"), hu["soft"])  # ring around the brain stays closed


def cranium(blk: _Block, o: _Outlines, A: _Anatomy, T: np.ndarray, dist: tuple, hu: dict) -> None:
    """CSF, inner table, diploe, outer table around brain and brainstem (bands of dist, see
    skull_distance; T: their outer radii), open at the foramen magnum."""
    slo, shi, d_ic, ic = dist
    canal = o.masks["spinal-canal"]
    opening = np.zeros(d_ic.shape, bool)
    top3 = _Mask(canal.a[-3:], (canal.hi[0] - 3, canal.lo[1], canal.lo[2]))
    cb = blk.box(top3)
    if cb is not None:
        col2 = blk.window(top3, np.array([0, slo[1], slo[2]]), np.array([blk.shape[0], shi[1], shi[2]])).any(axis=0)
        col2 = _distance(col2[None], (1.0, *blk.sp_zyx[1:]))[0] <= 3.0
        # only below the brainstem: above it the occipital bone rings the medulla (foramen rim)
        zsel = (blk.z[slo[0]:shi[0]] >= A.canal_top - 10) & (blk.z[slo[0]:shi[0]] <= A.z_fm + 2)
        opening = zsel[:, None, None] & col2[None]
    for t0, t1, tissue in ((0, T[0], "csf"), (T[0], T[1], "cortical"), (T[1], T[2], "diploe"), (T[2], T[3], "cortical")):
        blk.fill(slo, ~ic & (d_ic > t0 if t0 else True) & (d_ic <= t1) & ~opening, hu[tissue])


def mandible_and_teeth(blk: _Block, L: Levels, q: dict, hu: dict) -> None:
    """The real mandible's cortex and marrow; teeth on its crest and under the palate (q["missing"]
    leaves gaps); maxillary alveolus and hard palate."""
    z, mo, z_pal, z_occ = L.z, L.mo, L.z_pal, L.z_occ
    if mo:
        lo, mw = mo["lo"], mo["mw"]
        inner = ndimage.distance_transform_edt(np.pad(mw, 1), sampling=blk.sp_zyx)[1:-1, 1:-1, 1:-1]
        blk.fill(lo, mw & (inner <= q["cortex"]), hu["mandible"])
        blk.fill(lo, mw & (inner > q["cortex"]), hu["cancellous"])
        body, ztop = mo["body"], mo["ztop"]
        kz = np.flatnonzero((z > float(ztop[body].min())) & (z <= z_pal + 3))
        if len(kz):
            Z = z[kz][:, None, None]
            Y, X = blk.y[lo[1]:mo["hi"][1]][:, None], blk.x[lo[2]:mo["hi"][2]][None, :]
            theta = np.arctan2(X - mo["xc"], mo["yc"] - Y)
            n = 28
            tooth = np.clip(np.rint(theta * n / (2 * np.pi)).astype(int) + n // 2, 0, n)
            cols = body & (np.cos(n * theta) > -0.6)
            h = q["teeth_h"]
            lower = cols & ~q["missing"][0][tooth]
            upper = cols & ~q["missing"][1][tooth]
            wide = ndimage.binary_dilation(body)
            palate = _polygon_mask(mo["arch"], 0.0, Y[:, 0], X[0]) & ~body
            z0 = (kz[0], lo[1], lo[2])
            blk.fill(z0, wide & (Z > z_occ + h) & (Z <= z_pal + 2), hu["diploe"])
            blk.fill(z0, palate & (Z >= z_pal - 1.5) & (Z <= z_pal + 2.5), hu["diploe"])
            blk.fill(z0, (lower & (Z > ztop) & (Z <= np.minimum(ztop + h, z_occ - 0.5))) | (upper & (Z >= z_occ) & (Z <= z_occ + h)),
                     hu["teeth"])


def vertebrae(blk: _Block, o: _Outlines, A: _Anatomy, L: Levels, hu: dict) -> None:
    """Vertebrae around the real canal: bodies and discs, arches, spinous and transverse
    processes, atlas and dens; then the real canal and cord."""
    z, sz, d_fm = L.z, float(blk.spacing[2]), L.d_fm
    cx, cy, cax, cay, bx, by, y_body = L.cx, L.cy, L.cax, L.cay, L.bx, L.by, L.y_body
    sel = d_fm >= 3
    has_body = d_fm >= 25
    per = np.interp(d_fm, [25, 130, 180], [16.0, 18.0, 24.0])
    order = np.argsort(-z)
    phase = np.zeros_like(z)
    phase[order] = np.cumsum(np.where(has_body[order], sz / per[order], 0.0))
    vert_f = (has_body & (np.mod(phase, 1.0) < 0.78)).astype(float)
    disc_f = (has_body & (vert_f < 0.5)).astype(float)
    vert = lambda x, y, zq: np.interp(zq, z, vert_f) > 0.5
    disc = lambda x, y, zq: np.interp(zq, z, disc_f) > 0.5
    if has_body.sum() >= 2:
        hb = has_body
        vb = _Tube(z[hb], cx[hb], y_body[hb], bx[hb], by[hb])
        blk.draw(_Where(vb, disc), hu["disc"])
        blk.draw(_Where(vb, vert), hu["cortical"])
        blk.draw(_Where(vb.grow(-1.5), vert), hu["cancellous"])
    if sel.sum() >= 2:
        zs, cxs, cys, axs, ays = z[sel], cx[sel], cy[sel], cax[sel], cay[sel]
        blk.draw(_Where(_Tube(zs, cxs, cys, axs + 5, ays + 5), vert), hu["cortical"])  # arch (the canal is painted over it)
        blk.draw(_Where(_Tube(zs, cxs, cys + ays + 11, np.full_like(zs, 3.5), np.full_like(zs, 10.0)), vert), hu["cortical"])
        blk.draw(_Where(_Tube(zs, cxs, cys - 1, axs + 15, np.full_like(zs, 4.5)), vert), hu["cortical"])
        blk.draw(_Where(_Tube(zs, cxs, cys - 3, axs + 9, ays + 9), None, (A.z_fm - 14, A.z_fm - 6)), hu["cortical"])  # atlas
        blk.draw(_Where(_Tube(zs, cxs, cys - ays - 7, np.full_like(zs, 5.0), np.full_like(zs, 5.0)), None,
                        (A.z_fm - 32, A.z_fm - 8)), hu["cortical"])  # dens
    blk.put(o.masks["spinal-canal"], hu["csf"])
    blk.put(o.masks.get("spinal-cord"), hu["cord"])


# ---- orchestrator
def _brain(blk: _Block, o: _Outlines, A: _Anatomy, hu: dict) -> None:
    """The real brain and brainstem, and lateral ventricles inside them."""
    blk.put(o.masks.get("brain"), hu["brain"])
    blk.put(o.masks.get("brainstem"), hu["brain"])
    c, (lo_b, hi_b) = A.brain_c, (A.brain_lo, A.brain_hi)
    ax_b, ay_b, h_b = (hi_b - lo_b) / 2
    for s in (-1, 1):
        blk.draw(_Ell((c[0] + s * 0.17 * ax_b, (lo_b[1] + hi_b[1]) / 2 + 0.02 * ay_b, hi_b[2] - 0.72 * h_b),
                      (0.08 * ax_b, 0.29 * ay_b, 0.07 * 2 * h_b)), hu["csf"])


def _real_organs(blk: _Block, o: _Outlines, p: dict, hu: dict) -> None:
    """The real eyes, lenses, inner ears and lungs, then the glands with their labels."""
    gl = o.glands
    for name, tissue in (("orbit", "eye"), ("lens", "lens"), ("cochlea", "csf")):
        for sfx in ("lt", "rt"):
            blk.put(o.masks.get(f"{name}-{sfx}"), hu[tissue])
    for name in ("lung-lt", "lung-rt"):
        blk.put(o.masks.get(name), hu["lung"])
    for label in sorted(gl):
        g = BY_LABEL[label]
        blk.put(gl[label], p["glands"][g.organ, g.side]["hu"], label)


def _paint_outline_head(blk: _Block, o: _Outlines, A: _Anatomy, p: dict, q: dict) -> None:
    """Everything between the real organs, painted in an order that encodes which tissue wins:
    soft tissue first, bone later, the real organs after, the six glands last (their voxels
    are the labels, so nothing may cover them)."""
    hu = dict(p["hu"], **q["hu"])
    L = measure_levels(blk, o, A, q)
    gland_fat(blk, o, q, hu)
    neck_muscles(blk, A, L, q, hu)
    condyle = chewing_muscles(blk, A, L, q, hu)
    T = np.cumsum([q["csf"], q["inner"], q["diploe"], q["outer"]])  # outer radii of CSF and the skull's tables
    dist = _skull_distance(blk, o, A, T[-1] + q["temporalis"] + 3)
    temporalis(blk, A, condyle, T, dist, q, hu)
    tongue(blk, L, hu)
    fat_pads(blk, o, L, hu)
    nose_and_lips(blk, A, L, hu)
    face_bones(blk, A, L, condyle, hu)
    temporal_bones(blk, A, hu)
    airway(blk, A, L, q, hu)
    orbits(blk, o, A, hu)
    cranium(blk, o, A, T, dist, hu)
    del dist  # the skull distance maps: the largest temporaries
    _brain(blk, o, A, hu)
    mandible_and_teeth(blk, L, q, hu)
    vertebrae(blk, o, A, L, hu)
    _real_organs(blk, o, p, hu)


def _skull_distance(blk: _Block, o: _Outlines, A: "_Anatomy", pad_mm: float):
    """Distance (mm) from brain and brainstem on a box around them: the skull's layers and the
    temporalis are bands of it. A brain cut by the scan's top is extended upwards, so the
    skull stays open there instead of closing over a flat brain."""
    b = blk.box(o.masks["brain"], pad_mm)
    lo, hi = b
    ic = blk.window(o.masks["brain"], lo, hi)
    if "brainstem" in o.masks:
        ic |= blk.window(o.masks["brainstem"], lo, hi)
    if A.brain_cut:
        kt = o.size[2] - 1 - blk.k0[0] - lo[0]
        if 0 <= kt < ic.shape[0] - 1:
            ic[kt + 1:] |= ic[kt]
    factor = max(1, int(round(2.0 / float(blk.spacing[0]))))
    # distance to the brain closed by a ball of _CLOSING_MM: outside the dilation it equals the
    # distance to the brain, inside it R minus the depth in the dilation. The skull then
    # bridges sulci and the gaps between cerebellar tonsils and temporal poles (basal cisterns)
    # with a smooth inner table, as real skulls do, at the cost of one more coarse distance map.
    d1 = _distance(ic, blk.sp_zyx, factor)
    dil = d1 <= _CLOSING_MM
    d2 = _distance(~dil, blk.sp_zyx, factor)
    return lo, hi, np.where(dil, np.maximum(_CLOSING_MM - d2, 0), d1), ic


def _envelope(blk: _Block, A: "_Anatomy", p: dict, q: dict) -> np.ndarray:
    """Skin, subcutaneous fat and soft tissue around everything painted: per axial slice the
    convex hull of the painted voxels grown by a margin (scalp over the skull, thicker over the
    face and neck, chest wall around the lungs), a dome above the skull.

    Returns a uint8 code per voxel: 0 outside the body, 1 the skin and fat layer filled here,
    2 deeper body. The layer yields to a torso already on the canvas, so that the neck merges
    into the shoulders instead of wearing its own skin inside them."""
    hu = p["hu"]
    core = blk.ct != _UNSET
    pts = _row_extremes(core, blk.y, blk.x)
    del core
    filled = [k for k, v in enumerate(pts) if v is not None]
    inside = np.zeros(blk.ct.shape, np.uint8)
    if not filled:
        blk.ct[...] = -1000
        return inside
    z_orb = A.gz - A.globe_r - 4
    apex = A.apex if A.apex is not None else float(A.mand_lo[2]) - 100.0
    zp = [apex - 10, apex + 20, z_orb - 10, z_orb + 10]
    margin = np.interp(blk.z, zp, [q["chest"], q["face"], q["face"], q["scalp"]])
    fat = np.interp(blk.z, zp, [0.6 * q["chest"], q["face"] - 2, q["face"] - 2, q["scalp"] - 2.5])
    top, eq_top = filled[-1], _hull(pts[filled[-1]])
    for kz in range(blk.ct.shape[0]):
        if pts[kz] is not None:
            eq, m = _hull(pts[kz]), margin[kz]
        elif kz > top and not A.brain_cut:  # the scalp's dome over the skull's last slice
            h = blk.z[kz] - blk.z[top]
            if h >= margin[top]:
                continue
            eq, m = eq_top, math.sqrt(margin[top] ** 2 - h * h)
        else:
            continue
        sl = blk.ct[kz]
        unset = sl == _UNSET
        outer = _polygon_mask(eq, m, blk.y, blk.x)
        skin = _polygon_mask(eq, m - 1.5, blk.y, blk.x)
        deep = _polygon_mask(eq, m - fat[kz], blk.y, blk.x)
        layer = unset & outer & ~deep
        sl[layer & ~skin] = hu["soft"]
        sl[layer & skin] = hu["fat"]
        sl[unset & deep] = hu["soft"]
        inside[kz] = np.where(layer, 1, np.where(outer | ~unset, 2, 0))
    blk.ct[blk.ct == _UNSET] = -1000
    return inside


def _composite(cv: _Canvas, blk: _Block, inside: np.ndarray, same_lattice: bool) -> None:
    """Put the head and neck into the output grid where it is body (inside: _envelope's code);
    outside it, and under its skin layer where the canvas already has a torso, the canvas keeps
    what it has. On the source lattice voxels are copied; on another grid the CT and body are
    resampled linearly, each gland on its own (linear, > 0.5), which keeps small glands whole."""
    if same_lattice:
        off = np.rint((blk.origin - cv.origin) / cv.spacing).astype(int)[::-1]
        lo, hi = np.maximum(off, 0), np.minimum(off + blk.shape, cv.ct.shape)
        if np.any(hi <= lo):
            return
        src = tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, off))
        dst = tuple(slice(a, b) for a, b in zip(lo, hi))
        code = inside[src]
        take = (code == 2) | ((code == 1) & (cv.ct[dst] == -1000))
        np.copyto(cv.ct[dst], blk.ct[src], where=take)
        np.copyto(cv.lab[dst], blk.lab[src], where=code > 0)
        return
    b_hi = blk.origin + (blk.size - 1) * blk.spacing
    i0 = np.clip(np.ceil((blk.origin - cv.origin) / cv.spacing - 1e-6), 0, cv.size).astype(int)
    i1 = np.clip(np.floor((b_hi - cv.origin) / cv.spacing + 1e-6) + 1, 0, cv.size).astype(int)
    if np.any(i1 <= i0):
        return
    ref = sitk.Image([int(v) for v in i1 - i0], sitk.sitkUInt8)
    ref.SetOrigin(tuple(float(v) for v in cv.origin + i0 * cv.spacing))
    ref.SetSpacing(tuple(float(v) for v in cv.spacing))

    def resampled(arr: np.ndarray, origin, pixel, default: float) -> np.ndarray:
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin(tuple(float(v) for v in origin))
        img.SetSpacing(tuple(float(v) for v in blk.spacing))
        return sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkLinear, default, pixel))

    dst = tuple(slice(a, b) for a, b in zip(i0[::-1], i1[::-1]))
    code = resampled(inside, blk.origin, sitk.sitkFloat32, 0.0)
    take = (code >= 1.5) | ((code >= 0.5) & (cv.ct[dst] == -1000))
    np.copyto(cv.ct[dst], resampled(blk.ct, blk.origin, sitk.sitkInt16, -1000.0), where=take)
    for label in LABELS:
        idx = np.nonzero(blk.lab == label)
        if not len(idx[0]):
            continue
        lo = np.maximum([v.min() - 2 for v in idx], 0)
        hi = np.minimum([v.max() + 3 for v in idx], blk.shape)
        crop = (blk.lab[tuple(slice(a, b) for a, b in zip(lo, hi))] == label).astype(np.float32)
        g = resampled(crop, blk.origin + lo[::-1] * blk.spacing, sitk.sitkFloat32, 0.0) > 0.5
        np.copyto(cv.lab[dst], np.uint8(label), where=g)


def _block_extent(o: _Outlines, zb: float, origin: np.ndarray, out_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Source index range (z, y, x) worth synthesizing: from zb to the output's top, and the
    organs' x, y extent there plus room for skin and chest wall, within the output's view."""
    k0z = int(math.floor((zb - o.origin[2]) / o.spacing[2] + 1e-3))
    k1z = int(math.ceil((out_hi[2] + o.spacing[2] - o.origin[2]) / o.spacing[2] - 1e-3)) + 1
    lo_xy, hi_xy = np.full(2, np.inf), np.full(2, -np.inf)
    for m in [*o.masks.values(), *o.glands.values()]:
        if m.hi[0] > k0z and m.lo[0] < k1z:
            lo_xy, hi_xy = np.minimum(lo_xy, m.lo[1:]), np.maximum(hi_xy, m.hi[1:])
    if not np.all(np.isfinite(lo_xy)):
        lo_xy, hi_xy = np.zeros(2), np.array(o.size[1::-1], float)
    pad = np.ceil(45.0 / o.spacing[1::-1]).astype(int)
    view_lo = np.floor((origin[1::-1] - o.origin[1::-1]) / o.spacing[1::-1]).astype(int) - 2
    view_hi = np.ceil((out_hi[1::-1] - o.origin[1::-1]) / o.spacing[1::-1]).astype(int) + 3
    return (np.r_[k0z, np.maximum(lo_xy.astype(int) - pad, view_lo)],
            np.r_[k1z, np.minimum(hi_xy.astype(int) + pad, view_hi)])


def make_phantom_from_outlines(case_dir: str | Path, rater: str = "oncologist", seed: int = 0, *, field: str = "head",
                               spacing: tuple[float, float, float] | None = None, size_xy: int | None = None,
                               length_mm: float | None = None, truncate_vertex_mm: float = 0.0,
                               variation: bool = True) -> Phantom:
    """A synthetic CT around one rater's real outlines of one TCIA scan (see list_outline_cases).

    The glands are the expert's voxels: with spacing=None the grid is the source lattice and
    the labels equal the source masks voxel for voxel (an empty, resected gland stays empty;
    a voxel two glands claim goes to the higher label: 2 voxels in the whole set); other
    spacings resample each gland linearly (> 0.5). Brain, brainstem, orbits, lenses, optic
    nerves, cochleae, mandible, spinal canal and cord, and lungs are real too; skull, face
    bones, teeth, muscles, airway, vertebrae, fat and skin are synthesized around them
    (_paint_outline_head); make_phantom's torso carries the neck for "headneck" and
    "wholebody". The head field grows beyond 240 mm where a head (or a jutting chin) needs it,
    and every field reaches 15 mm below the lowest gland unless length_mm is given. The seed
    varies tissue HU, noise, blur, thicknesses, teeth and the field of view, never the
    anatomy. Same seed -> byte-identical arrays.
    """
    if field not in FIELDS:
        raise ValueError(f"field must be one of {sorted(FIELDS)}, not {field!r}")
    o = read_outlines(outline_folder(case_dir, rater))
    A = _Anatomy(o)
    rng = np.random.default_rng(seed)
    p = _case(rng if variation else None)
    q = _outline_params(rng if variation else None)
    p["pockets"] = _pockets(rng)
    same = spacing is None
    sp = o.spacing.copy() if same else np.array(spacing, float)
    if A.brain_cut:  # the scan itself stops inside the skull: its top is the phantom's top
        vertex = A.src_top - 5.0
    else:
        vertex = float(A.brain_hi[2]) + q["csf"] + q["inner"] + q["diploe"] + q["outer"] + q["scalp"]
    top, length = _extent(field, vertex, truncate_vertex_mm, length_mm)
    if length_mm is None and o.glands:  # real heads are taller than the template: keep every gland in
        lowest = min(float(o.phys(m.lo)[2]) for m in o.glands.values())
        length = max(length, top - lowest + 15.0)
    # lowest real slice used: the scan's own bottom, or the upper chest where a scan runs lower
    z_low = max(A.src_bottom, (A.apex if A.apex is not None else A.src_bottom) - 120.0)
    canal = o.masks["spinal-canal"]
    kc = int(np.clip(round((z_low - o.origin[2]) / o.spacing[2]) - canal.lo[0], 0, canal.a.shape[0] - 1))
    cyx = np.argwhere(canal.a[kc]).mean(0) + canal.lo[1:]
    canal_xy = o.origin[:2] + cyx[::-1] * o.spacing[:2]
    # body frame: the clavicles (z -222) 25 mm below the real lung apex, as in real chests
    body_cz = (A.apex if A.apex is not None else z_low) + 247.0
    body_c = np.array([canal_xy[0], canal_xy[1] - float(np.interp(z_low - body_cz, *_BODY_CANAL)), body_cz])
    fx, fy = q["fov"]
    fov = FIELDS[field][0]
    if field == "head":  # centred on the head, from the face (nose, lips) to the back of the skull;
        # the random shift never pushes the skull out of the field where the field can hold it
        skin = q["csf"] + q["inner"] + q["diploe"] + q["outer"] + q["scalp"] + 2.0
        lo = np.array([A.brain_lo[0] - skin, min(A.gy - A.globe_r, float(A.mand_lo[1])) - 25.0])
        hi = np.array([A.brain_hi[0] + skin, A.brain_hi[1] + skin])
        fov = max(fov, float(np.max(hi - lo)) + 10.0)  # a long or tilted head gets a wider field
        slack = np.maximum((fov - (hi - lo)) / 2 - 2.0, 0.0)
        xc, yc = (lo + hi) / 2 + np.clip([fx, fy], -slack, slack)
    else:
        xc, yc = body_c[0] + 2 * fx, body_c[1] + FIELDS[field][2] + 2 * fy
    size, origin = _layout(field, sp, size_xy, top, length, xc, yc, fov)
    origin = np.array(origin)
    if same:  # on the source lattice: the labels are the source voxels
        origin = o.origin + np.rint((origin - o.origin) / sp) * sp
    cv = _Canvas(size, origin, sp)
    out_hi = origin + (np.array(size) - 1) * sp
    zb = max(origin[2] - sp[2], z_low)
    k0, k1 = _block_extent(o, zb, origin, out_hi)
    if field != "head":
        _paint_body(cv, _Frame(body_c, np.eye(3)), p, interior_top=zb - body_c[2])
    if np.all(k1 > k0):
        blk = _Block(o, k0, k1 - k0)
        _paint_outline_head(blk, o, A, p, q)
        inside = _envelope(blk, A, p, q)
        _composite(cv, blk, inside, same)
        del blk, inside
    _finish(cv, p["blur"], p["noise"], rng, circle=field != "head")
    lab, img = _images(cv)
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(img)
    return Phantom(img, labels, A.mid_x)


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
