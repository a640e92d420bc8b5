"""make_phantom_from_outlines: a synthetic CT around one rater's real outlines of one TCIA scan.

The glands, brain, orbits, mandible, spine and lungs are real anatomy in real relation to
each other; everything else a CT shows is synthesized around them on the source grid, inside
bounding boxes (_paint_outline_head, step by step), then put into the output field, on the
procedural torso for "headneck" and "wholebody".
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.defaultmodel.phantom.body import BODY_CANAL, paint_body
from GlandSegLib.defaultmodel.phantom.lattice import Block
from GlandSegLib.defaultmodel.phantom.outlines import Outlines, outline_folder, read_outlines
from GlandSegLib.defaultmodel.phantom.placement import Anatomy, measure_levels
from GlandSegLib.defaultmodel.phantom.scanner import FIELDS, Phantom, extent, finish, images, layout
from GlandSegLib.defaultmodel.phantom.shapes import Canvas, Ell, Frame
from GlandSegLib.defaultmodel.phantom.skull import (cranium, face_bones, mandible_and_teeth, orbits, skull_distance,
                                                    temporal_bones, vertebrae)
from GlandSegLib.defaultmodel.phantom.soft_tissue import (airway, chewing_muscles, envelope, fat_pads, gland_fat,
                                                          neck_muscles, nose_and_lips, temporalis, tongue)
from GlandSegLib.defaultmodel.phantom.tissues import (APPEARANCES, draw_case, draw_outline_params, draw_pockets,
                                                      randomise_appearance)
from GlandSegLib.glands import BY_LABEL, LABELS

APPEARANCE_STREAM = 7  # seeds the appearance draws apart from the case's own stream


def _brain(blk: Block, o: Outlines, A: Anatomy, hu: dict) -> None:
    """The real brain and brainstem, and lateral ventricles inside them."""
    blk.put(o.masks.get("brain"), hu["brain"])
    blk.put(o.masks.get("brainstem"), hu["brain"])
    c, (lo_b, hi_b) = A.brain_c, (A.brain_lo, A.brain_hi)
    ax_b, ay_b, h_b = (hi_b - lo_b) / 2
    for s in (-1, 1):
        blk.draw(Ell((c[0] + s * 0.17 * ax_b, (lo_b[1] + hi_b[1]) / 2 + 0.02 * ay_b, hi_b[2] - 0.72 * h_b),
                     (0.08 * ax_b, 0.29 * ay_b, 0.07 * 2 * h_b)), hu["csf"])


def _real_organs(blk: Block, o: Outlines, p: dict, hu: dict) -> None:
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


def _paint_outline_head(blk: Block, o: Outlines, A: Anatomy, p: dict, q: dict) -> None:
    """Everything between the real organs, painted in an order that encodes which tissue wins:
    soft tissue first, bone later, the real organs after, the six glands last (their voxels
    are the labels, so nothing may cover them)."""
    hu = dict(p["hu"], **q["hu"])
    L = measure_levels(blk, o, A, q)
    gland_fat(blk, o, q, hu)
    neck_muscles(blk, A, L, q, hu)
    condyle = chewing_muscles(blk, A, L, q, hu)
    T = np.cumsum([q["csf"], q["inner"], q["diploe"], q["outer"]])  # outer radii of CSF and the skull's tables
    dist = skull_distance(blk, o, A, T[-1] + q["temporalis"] + 3)
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


def _composite(cv: Canvas, blk: Block, inside: np.ndarray, same_lattice: bool) -> None:
    """Put the head and neck into the output grid where it is body (inside: envelope's code);
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


def _block_extent(o: Outlines, zb: float, origin: np.ndarray, out_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
                               variation: bool = True, appearance: str = "standard") -> Phantom:
    """A synthetic CT around one rater's real outlines of one TCIA scan (see list_outline_cases).

    The glands are the expert's voxels: with spacing=None the grid is the source lattice and
    the labels equal the source masks voxel for voxel (an empty, resected gland stays empty;
    a voxel two glands claim goes to the higher label: 2 voxels in the whole set); other
    spacings resample each gland linearly (> 0.5). Brain, brainstem, orbits, lenses, optic
    nerves, cochleae, mandible, spinal canal and cord, and lungs are real too; skull, face
    bones, teeth, muscles, airway, vertebrae, fat and skin are synthesized around them
    (_paint_outline_head); the procedural torso (body.paint_body) carries the neck for
    "headneck" and "wholebody". The head field grows beyond 240 mm where a head (or a jutting chin) needs it,
    and every field reaches 15 mm below the lowest gland unless length_mm is given. The seed
    varies tissue HU, noise, blur, thicknesses, teeth and the field of view, never the
    anatomy. Same seed -> byte-identical arrays. appearance="randomised" redraws tissue and
    gland intensities, the fat rim, noise and blur over wide ranges (tissues.randomise_appearance)
    while the labels stay those of the standard phantom of the same seed.
    """
    if field not in FIELDS:
        raise ValueError(f"field must be one of {sorted(FIELDS)}, not {field!r}")
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {APPEARANCES}, not {appearance!r}")
    o = read_outlines(outline_folder(case_dir, rater))
    A = Anatomy(o)
    rng = np.random.default_rng(seed)
    p = draw_case(rng if variation else None)
    q = draw_outline_params(rng if variation else None)
    p["pockets"] = draw_pockets(rng)
    if appearance == "randomised":
        randomise_appearance(p, q, np.random.default_rng([seed, APPEARANCE_STREAM]))
    same = spacing is None
    sp = o.spacing.copy() if same else np.array(spacing, float)
    if A.brain_cut:  # the scan itself stops inside the skull: its top is the phantom's top
        vertex = A.src_top - 5.0
    else:
        vertex = float(A.brain_hi[2]) + q["csf"] + q["inner"] + q["diploe"] + q["outer"] + q["scalp"]
    top, length = extent(field, vertex, truncate_vertex_mm, length_mm)
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
    body_c = np.array([canal_xy[0], canal_xy[1] - float(np.interp(z_low - body_cz, *BODY_CANAL)), body_cz])
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
    size, origin = layout(field, sp, size_xy, top, length, xc, yc, fov)
    origin = np.array(origin)
    if same:  # on the source lattice: the labels are the source voxels
        origin = o.origin + np.rint((origin - o.origin) / sp) * sp
    cv = Canvas(size, origin, sp)
    out_hi = origin + (np.array(size) - 1) * sp
    zb = max(origin[2] - sp[2], z_low)
    k0, k1 = _block_extent(o, zb, origin, out_hi)
    if field != "head":
        paint_body(cv, Frame(body_c, np.eye(3)), p, interior_top=zb - body_c[2])
    if np.all(k1 > k0):
        blk = Block(o, k0, k1 - k0)
        _paint_outline_head(blk, o, A, p, q)
        inside = envelope(blk, A, p, q)
        _composite(cv, blk, inside, same)
        del blk, inside
    finish(cv, p["blur"], p["noise"], rng, circle=field != "head")
    lab, img = images(cv)
    labels = sitk.GetImageFromArray(lab)
    labels.CopyInformation(img)
    return Phantom(img, labels, A.mid_x)
