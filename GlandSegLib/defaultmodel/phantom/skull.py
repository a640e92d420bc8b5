"""Bone of an outline head, built around the real organs: face and temporal bones, orbits,
cranium (bands of a closed distance to the brain), mandible and teeth, vertebrae.

Each function is one painting step; outline_phantom calls them, interleaved with
soft_tissue's, in the order that decides which tissue wins.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from GlandSegLib.defaultmodel.phantom.lattice import Block, distance, polygon_mask
from GlandSegLib.defaultmodel.phantom.outlines import Mask, Outlines
from GlandSegLib.defaultmodel.phantom.placement import SIDES, Anatomy, Levels
from GlandSegLib.defaultmodel.phantom.shapes import Ell, Frame, Tube, Where, segment

_CLOSING_MM = 8.0  # the skull's inner table bridges brain concavities narrower than this


def face_bones(blk: Block, A: Anatomy, L: Levels, condyle: dict, hu: dict) -> None:
    """Maxillary sinuses, zygomas and arches (to the condyles), nasal cavity, ethmoid, sphenoid."""
    k, r, mx, gy, gz = A.k, A.globe_r, A.mid_x, A.gy, A.gz
    z_pal = L.z_pal
    orb_floor = gz - r - 3
    for side, s in SIDES:
        g = A.globe[side]
        top, bot = orb_floor - 1, z_pal + 3
        bot = min(bot, top - 12)
        sinus = Ell((g[0] - s * 4 * k, g[1] + 16 * k, (top + bot) / 2), (15 * k, 19 * k, (top - bot) / 2))
        blk.draw(sinus.grow(2), hu["cortical"])
        blk.draw(sinus, hu["air"])
        zyg = Ell((g[0] + s * (r + 6), g[1] + 0.2 * r, gz - r - 5), (6, 7, 9))
        blk.draw(zyg.grow(1.5), hu["cortical"])
        blk.draw(zyg, hu["diploe"])
        f, e = segment((g[0] + s * (r + 9), g[1] + 0.7 * r, gz - r - 1), condyle[side] + np.array([s * 3, -8, 1]), 3.5)
        blk.paint(f, e, hu["cortical"])
    top_n, bot_n = gz + 10, z_pal + 2
    nasal = Ell((mx, gy + 2 * k, (top_n + bot_n) / 2), (11 * k, 30 * k, (top_n - bot_n) / 2))
    blk.draw(nasal, hu["air"])
    blk.draw(Where(nasal, lambda x, y, zz: np.abs(x - mx) < 1.2), hu["diploe"])  # septum: bone behind,
    blk.draw(Where(nasal, lambda x, y, zz: (np.abs(x - mx) < 1.2) & (y < gy - 4)), hu["cartilage"])  # cartilage in front
    eth = Ell((mx, gy + 12 * k, gz + 3), (9 * k, 16 * k, 10 * k))
    blk.draw(eth, hu["cortical"])
    blk.draw(Where(eth.grow(-1), lambda x, y, zz: (np.mod(y, 5.5) > 1.2) & (np.mod(zz, 6.0) > 1.2)), hu["air"])
    sph = Ell((mx, gy + 40 * k, gz - 10), (11 * k, 9 * k, 9 * k))
    blk.draw(sph.grow(2), hu["cortical"])
    blk.draw(sph, hu["air"])


def temporal_bones(blk: Block, A: Anatomy, hu: dict) -> None:
    """Dense petrous pyramid around the real cochlea, mastoid air cells, ear canal."""
    for side, s in SIDES:
        c = A.cochlea[side]
        u = np.array([-s, -1.0, 0.0]) / math.sqrt(2)  # the petrous ridge runs anteromedially
        blk.paint(Frame(c + np.array([-s * 2, -2, 0]), np.array([u, [-u[1], u[0], 0], [0, 0, 1]])),
                  Ell((0, 0, 0), (17, 7, 8)), hu["cortical"])
        mastoid = Ell(c + np.array([s * 20, 14, -10]), (9, 10, 12))
        blk.draw(mastoid, hu["diploe"])
        blk.draw(Where(mastoid.grow(-2), lambda x, y, zz: np.sin(1.3 * x) * np.sin(1.1 * y) * np.sin(1.2 * zz) > 0.2), hu["air"])
        blk.paint(*segment(c + np.array([s * 8, -2, 2]), c + np.array([s * 40, -4, 2]), 3.5), hu["air"])


def orbits(blk: Block, o: Outlines, A: Anatomy, hu: dict) -> None:
    """Bony walls open in front, fat cone, extraocular muscles, the real optic nerves (the real
    globe and lens come later, with the other real organs)."""
    r = A.globe_r
    for side, s in SIDES:
        g = A.globe[side]
        cav = Ell(g + np.array([0, 0.96 * r, 0.1 * r]), (1.78 * r, 2.26 * r, 1.48 * r))
        blk.draw(Where(cav.grow(2.5), lambda x, y, zz, cav=cav, gy0=g[1]: ~cav(x, y, zz) & (y > gy0 - 2)), hu["cortical"])
        blk.draw(cav, hu["orbfat"])
        for off, semi in (((s * 0.8 * r, 1.3 * r, 0), (2.2, 1.3 * r, 4.5)), ((-s * 0.8 * r, 1.3 * r, 0), (2.2, 1.3 * r, 4.5)),
                          ((0, 1.3 * r, 0.8 * r), (5, 1.3 * r, 2.2)), ((0, 1.3 * r, -0.8 * r), (5, 1.3 * r, 2.2))):
            blk.draw(Ell(g + np.array(off), semi), hu["muscle"])
    for sfx in ("lt", "rt"):  # optic nerves before the skull: bone closes the optic canal, and the
        blk.put(o.masks.get(f"optic-nerve-{sfx}"), hu["soft"])  # ring around the brain stays closed


def cranium(blk: Block, o: Outlines, A: Anatomy, T: np.ndarray, dist: tuple, hu: dict) -> None:
    """CSF, inner table, diploe, outer table around brain and brainstem (bands of dist, see
    skull_distance; T: their outer radii), open at the foramen magnum."""
    slo, shi, d_ic, ic = dist
    canal = o.masks["spinal-canal"]
    opening = np.zeros(d_ic.shape, bool)
    top3 = Mask(canal.a[-3:], (canal.hi[0] - 3, canal.lo[1], canal.lo[2]))
    cb = blk.box(top3)
    if cb is not None:
        col2 = blk.window(top3, np.array([0, slo[1], slo[2]]), np.array([blk.shape[0], shi[1], shi[2]])).any(axis=0)
        col2 = distance(col2[None], (1.0, *blk.sp_zyx[1:]))[0] <= 3.0
        # only below the brainstem: above it the occipital bone rings the medulla (foramen rim)
        zsel = (blk.z[slo[0]:shi[0]] >= A.canal_top - 10) & (blk.z[slo[0]:shi[0]] <= A.z_fm + 2)
        opening = zsel[:, None, None] & col2[None]
    for t0, t1, tissue in ((0, T[0], "csf"), (T[0], T[1], "cortical"), (T[1], T[2], "diploe"), (T[2], T[3], "cortical")):
        blk.fill(slo, ~ic & (d_ic > t0 if t0 else True) & (d_ic <= t1) & ~opening, hu[tissue])


def mandible_and_teeth(blk: Block, L: Levels, q: dict, hu: dict) -> None:
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
            palate = polygon_mask(mo["arch"], 0.0, Y[:, 0], X[0]) & ~body
            z0 = (kz[0], lo[1], lo[2])
            blk.fill(z0, wide & (Z > z_occ + h) & (Z <= z_pal + 2), hu["diploe"])
            blk.fill(z0, palate & (Z >= z_pal - 1.5) & (Z <= z_pal + 2.5), hu["diploe"])
            blk.fill(z0, (lower & (Z > ztop) & (Z <= np.minimum(ztop + h, z_occ - 0.5))) | (upper & (Z >= z_occ) & (Z <= z_occ + h)),
                     hu["teeth"])


def vertebrae(blk: Block, o: Outlines, A: Anatomy, L: Levels, hu: dict) -> None:
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
        vb = Tube(z[hb], cx[hb], y_body[hb], bx[hb], by[hb])
        blk.draw(Where(vb, disc), hu["disc"])
        blk.draw(Where(vb, vert), hu["cortical"])
        blk.draw(Where(vb.grow(-1.5), vert), hu["cancellous"])
    if sel.sum() >= 2:
        zs, cxs, cys, axs, ays = z[sel], cx[sel], cy[sel], cax[sel], cay[sel]
        blk.draw(Where(Tube(zs, cxs, cys, axs + 5, ays + 5), vert), hu["cortical"])  # arch (the canal is painted over it)
        blk.draw(Where(Tube(zs, cxs, cys + ays + 11, np.full_like(zs, 3.5), np.full_like(zs, 10.0)), vert), hu["cortical"])
        blk.draw(Where(Tube(zs, cxs, cys - 1, axs + 15, np.full_like(zs, 4.5)), vert), hu["cortical"])
        blk.draw(Where(Tube(zs, cxs, cys - 3, axs + 9, ays + 9), None, (A.z_fm - 14, A.z_fm - 6)), hu["cortical"])  # atlas
        blk.draw(Where(Tube(zs, cxs, cys - ays - 7, np.full_like(zs, 5.0), np.full_like(zs, 5.0)), None,
                       (A.z_fm - 32, A.z_fm - 8)), hu["cortical"])  # dens
    blk.put(o.masks["spinal-canal"], hu["csf"])
    blk.put(o.masks.get("spinal-cord"), hu["cord"])


def skull_distance(blk: Block, o: Outlines, A: Anatomy, pad_mm: float):
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
    d1 = distance(ic, blk.sp_zyx, factor)
    dil = d1 <= _CLOSING_MM
    d2 = distance(~dil, blk.sp_zyx, factor)
    return lo, hi, np.where(dil, np.maximum(_CLOSING_MM - d2, 0), d1), ic
