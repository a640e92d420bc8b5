"""The textbook phantom: make_phantom (head, head and neck, whole body) and no_head_phantom.

It must pass for a CT with simple thresholds (closed skull ring around brain, air, fat, bone)
and with a small CNN (gland surroundings as on real scans). Gland sizes and positions relative
to the brain centre are medians measured on the 35 expert-outlined scans of the DeepMind TCIA
head-and-neck set (shared/data/tcia-hn-labels); other anatomy is textbook-sized. The head frame
is scaled and rotated about the neck base (NECK_PIVOT), the body frame is not.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from GlandSegLib.defaultmodel.phantom.body import paint_body
from GlandSegLib.defaultmodel.phantom.scanner import FIELDS, Phantom, extent, finish, images, layout
from GlandSegLib.defaultmodel.phantom.shapes import (Canvas, Ell, Frame, Gland, Tube, Union, Where, minus, mirror,
                                                     periodic, zband)
from GlandSegLib.defaultmodel.phantom.tissues import GLAND_TEMPLATES, draw_case, draw_pockets
from GlandSegLib.glands import gland

NECK_PIVOT = (0.0, 30.0, -215.0)  # body and head frame: the head rotates about the neck base


def _rotation(yaw: float, roll: float) -> np.ndarray:
    a, b = math.radians(yaw), math.radians(roll)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    return rz @ ry


# ---------------------------------------------------------------- anatomy
_SCALP = Ell((0, -3, 12), (78, 97, 72))
_CEREBRUM, _FOSSA = Ell((0, -2, 14), (64, 82, 56)), Ell((0, 28, -32), (50, 40, 30))


def _head_envelope() -> Union:
    return Union(_SCALP, Ell((0, -38, -45), (72, 86, 58)), Ell((0, -48, -95), (74, 80, 44)),
                 Ell((0, -20, -70), (80, 62, 42)), Ell((0, -70, -5), (62, 38, 30)),
                 Ell((0, -112, -35), (13, 22, 26)), Ell((0, -108, -116), (26, 18, 17)),
                 Tube([-250, -200, -60], [0, 0, 0], [25, 20, 20], [70, 60, 58], [68, 62, 62]))


def _gland_shape(organ: str, side: str, g: dict, scale: float) -> Gland:
    """The template at its (shifted) place, warped, then scaled to the case's physical volume."""
    centre, parts, _, _ = GLAND_TEMPLATES[organ]
    s = 1 if side == "L" else -1
    c = np.add(mirror(centre, s), g["shift"])
    ells = [Ell(c + np.array(mirror(o, s), float), a) for o, a in parts]
    waves = g["waves"].copy()  # wavelength 1.5 x the template's largest diameter: low frequency
    k = np.maximum(np.linalg.norm(waves[:, :3], axis=1, keepdims=True), 1e-6)
    waves[:, :3] *= 2 * np.pi / (1.5 * 2 * max(max(e.a) for e in ells)) / k
    shape = Gland(ells, waves, 0.35)
    f = (g["volume"] / (_volume(shape) * scale ** 3)) ** (1 / 3)  # head frame -> physical ml
    ells = [Ell(shape.c0 + f * (np.array(e.c) - shape.c0), np.multiply(e.a, f)) for e in ells]
    return Gland(ells, waves / [f, f, f, 1], 0.35)


def _volume(shape) -> float:
    """Volume (ml) of a frame-coordinate shape, counted on a grid fine enough for a lacrimal."""
    lo, hi = shape.box()
    h = max(0.25, float(np.max(hi - lo)) / 120)
    g = np.mgrid[lo[0]:hi[0]:h, lo[1]:hi[1]:h, lo[2]:hi[2]:h].astype(np.float32)
    return float(shape(g[0], g[1], g[2]).sum()) * h ** 3 / 1000


def _paint_head(cv: Canvas, f: Frame, p: dict) -> None:
    """Head and neck in the head frame; painting order encodes which tissue wins."""
    hu, env = p["hu"], _head_envelope()
    paint = lambda shape, tissue, label=0: cv.paint(f, shape, hu[tissue] if isinstance(tissue, str) else tissue, label)
    paint(env, "fat")
    paint(env.grow(-5), "soft")
    for s in (-1, 1):  # muscles of mastication and neck, parapharyngeal fat
        paint(Ell((s * 58, -50, -85), (7, 14, 26)), "muscle")
        paint(Ell((s * 37, -32, -80), (7, 12, 20)), "muscle")
        paint(Tube([-235, -60], [s * 22, s * 55], [-50, 5], [11, 9], [15, 12]), "muscle")
        paint(Ell((s * 27, -22, -62), (6, 9, 14)), "fat")
        paint(Ell((s * 30, -25, -160), (9, 12, 40)), "fat")
    paint(Tube([-235, -60], [0, 0], [52, 48], [46, 42], [24, 26]), "muscle")
    paint(Ell((0, -70, -98), (28, 36, 14)), "tongue")
    for organ in ("parotid", "submandibular"):
        for side in ("R", "L"):
            g = p["glands"][organ, side]
            paint(_gland_shape(organ, side, g, p["scale"]), g["hu"], gland(organ, side).label)
    # mandible: horseshoe body with marrow, rami, condyles, teeth (clears gland labels it hits)
    z_lo = lambda y: -128 + 0.15 * (y + 124)
    horseshoe = lambda outer, inner, y_max, dz: Where(
        minus(Ell((0, -32, -110), outer), Ell((0, -32, -110), inner)),
        lambda x, y, z: (y < y_max) & (z >= z_lo(y) + dz) & (z <= -100 - dz))
    paint(horseshoe((57, 92, 60), (47, 82, 60), -40, 0), "mandible")
    paint(horseshoe((54.5, 89.5, 60), (49.5, 84.5, 60), -45, 4), "cancellous")
    for s in (-1, 1):
        paint(Tube([-112, -52], [s * 51, s * 51], [-48, -33], [4.5, 4.5], [13, 10]), "mandible")  # ramus
        paint(Ell((s * 51, -29, -50), (10, 6, 6)), "mandible")  # condyle
        paint(Ell((s * 58, -52, -36), (4, 30, 5)), "cortical")  # zygomatic arch
        paint(Ell((s * 50, 10, -42), (12, 14, 12)), "diploe")  # mastoid
        paint(Ell((s * 66, -8, -42), (10, 4, 4)), "air")  # ear canal
    arch = lambda a, b, inner, y_max, z0, z1: Where(
        Ell((0, -32, (z0 + z1) / 2), (a, b, (z1 - z0) / 2)),
        lambda x, y, z: ~Ell((0, -32, 0), (a - inner, b - inner, 1e9))(x, y, z) & (y < y_max))
    teeth_gap = lambda x, y, z: np.cos(30 * np.arctan2(x, -(y + 32))) > -0.5
    paint(arch(56, 91, 9, -58, -84, -72), "diploe")  # maxillary alveolus
    paint(Where(Ell((0, -32, -72), (46, 81, 2.5)), lambda x, y, z: y < -50), "diploe")  # hard palate
    paint(Where(arch(54, 89, 8, -55, -100, -92.5), teeth_gap), "teeth")
    paint(Where(arch(55, 90, 8, -55, -91.5, -84), teeth_gap), "teeth")
    paint(Ell((0, -85, -87), (22, 24, 2)), "air")  # oral air
    # air: nasal cavity, maxillary sinuses, nasopharynx to trachea
    for s in (-1, 1):
        paint(Ell((s * 27, -72, -48), (15, 19, 18)), "cortical")
        paint(Ell((s * 27, -72, -48), (13, 17, 16)), "air")
    paint(Ell((0, -88, -42), (11, 32, 22)), "air")
    paint(Where(Ell((0, -88, -42), (11, 32, 22)), lambda x, y, z: np.abs(x) < 1.2), "diploe")
    paint(Ell((0, -45, -55), (12, 14, 10)), "air")
    paint(Tube([-250, -200, -160, -110, -60], [0] * 5, [-40, -42, -45, -30, -38],
               [9, 9, 13, 11, 12], [8, 8, 9, 8, 9]), "air")  # pharynx, larynx, trachea
    # cervical spine: disc column, vertebral bodies, arches, spinous processes, canal with cord
    canal = Tube([-240, -150, -55], [0, 0, 0], [38, 28, 22], [8, 8, 9], [8, 8, 9])
    ck, cy = canal.k[0], canal.k[2]
    col = Tube(ck, [0, 0, 0], cy - 21, [11, 11, 9], [9, 9, 8])
    paint(zband(col, -240, -62), "disc")
    vert = periodic(-80, 17, 13)
    paint(Where(col, lambda x, y, z: vert(x, y, z) & (z < -62)), "cortical")
    paint(Where(col.grow(-2), lambda x, y, z: vert(x, y, z) & (z < -64)), "cancellous")
    paint(Where(canal.grow(6), lambda x, y, z: vert(x, y, z) & (z < -62)), "cortical")
    paint(Where(Tube(ck, [0, 0, 0], cy + 20, [4, 4, 4], [12, 12, 10]), vert), "cortical")
    paint(Ell((0, 2, -66), (5, 5, 9)), "cortical")  # dens
    paint(minus(Ell((0, 16, -68), (22, 21, 4)), Ell((0, 16, -68), (15, 14, 5))), "cortical")  # atlas
    # cranium: outer table, diploe, inner table, CSF, brain, ventricles
    for t, tissue in ((7, "cortical"), (5, "diploe"), (2, "cortical"), (0, "csf"), (-2.5, "brain")):
        paint(Union(_CEREBRUM.grow(t), _FOSSA.grow(t)), tissue)
    for s in (-1, 1):
        paint(Ell((s * 11, 0, 22), (5, 24, 9)), "csf")
    paint(canal, "cord")  # through the foramen magnum
    # orbits: bony wall open in front, fat, globe, lens, optic nerve, then the lacrimal gland
    for s in (-1, 1):
        orbit = Ell((s * 31.5, -77, -8), (20.5, 26, 17))
        paint(Where(orbit.grow(2.5), lambda x, y, z, o=orbit: ~o(x, y, z) & (y > -90)), "cortical")
        paint(orbit, "orbfat")
        paint(Ell((s * 22, -58, -10), (2.5, 16, 2.5)), "soft")
        paint(Ell((s * 31, -88, -9), (11.5, 11.5, 11.5)), "eye")
        paint(Ell((s * 31, -97, -9), (4.5, 2, 4.5)), "lens")
    for side in ("R", "L"):
        g = p["glands"]["lacrimal", side]
        paint(_gland_shape("lacrimal", side, g, p["scale"]), g["hu"], gland("lacrimal", side).label)


# ---------------------------------------------------------------- assembly
def _render(seed: int, field: str, spacing, size_xy, length_mm, truncate_vertex_mm: float, variation: bool,
            with_head: bool = True, z_range: tuple[float, float] | None = None
            ) -> tuple[np.ndarray, sitk.Image, float]:
    """Label array, CT image and midline x. z_range (body frame) replaces the field's extent."""
    rng = np.random.default_rng(seed)
    p = draw_case(rng if variation else None)
    p["pockets"] = draw_pockets(rng)  # then the noise: one generator, drawn in a fixed order
    y_fov = FIELDS[field][2]
    s, rot = p["scale"], _rotation(p["yaw"], p["roll"])
    centre = np.array(p["offset"], float)  # head centre (physical)
    body_c = centre - np.array(NECK_PIVOT) + s * rot @ np.array(NECK_PIVOT)
    head = Frame(centre, rot.T / s)
    body = Frame(body_c, np.eye(3))
    # top of the rotated, scaled scalp ellipsoid: the vertex
    vertex = centre[2] + s * (rot @ np.array(_SCALP.c))[2] + s * float(np.linalg.norm(rot[2] * _SCALP.a))
    if z_range is None:
        top, length = extent(field, vertex, truncate_vertex_mm, length_mm)
    else:
        top, length = body_c[2] + z_range[1], z_range[1] - z_range[0]
    xc = centre[0] if field == "head" else body_c[0]
    yc = (centre[1] if field == "head" else body_c[1]) + y_fov
    size, origin = layout(field, spacing, size_xy, top, length, xc, yc)
    cv = Canvas(size, origin, spacing)
    if field != "head":
        paint_body(cv, body, p)
    if with_head:
        _paint_head(cv, head, p)
    finish(cv, p["blur"], p["noise"], rng, circle=field != "head")
    lab, img = images(cv)
    return lab, img, float(centre[0])


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
