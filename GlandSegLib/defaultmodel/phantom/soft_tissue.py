"""Soft tissue of an outline head: fat, muscles, tongue, nose and lips, airway, and the skin
envelope around everything painted.

Each function is one painting step; outline_phantom calls them, interleaved with skull's, in
the order that decides which tissue wins.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from GlandSegLib.defaultmodel.phantom.lattice import UNSET, Block, distance, embed, hull, polygon_mask, row_extremes
from GlandSegLib.defaultmodel.phantom.outlines import Outlines
from GlandSegLib.defaultmodel.phantom.placement import SIDES, Anatomy, Levels
from GlandSegLib.defaultmodel.phantom.shapes import Ell, Tube, Where, segment
from GlandSegLib.glands import BY_LABEL, gland


def gland_fat(blk: Block, o: Outlines, q: dict, hu: dict) -> None:
    """Fat around the parotid and submandibular glands (fascia, parapharyngeal and submandibular fat)."""
    gl = o.glands
    for label, m in gl.items():
        if BY_LABEL[label].organ == "lacrimal" or (b := blk.box(m, q["halo"] + 2)) is None:
            continue
        w = blk.window(m, *b)
        blk.fill(b[0], ~w & (distance(w, blk.sp_zyx) <= q["halo"]), hu["fat"])


def neck_muscles(blk: Block, A: Anatomy, L: Levels, q: dict, hu: dict) -> None:
    """Posterior muscle mass around the spine, prevertebral muscles, sternocleidomastoids."""
    z, cx, cy, bx, by, y_body, y_vf, z_hy, apex = L.z, L.cx, L.cy, L.bx, L.by, L.y_body, L.y_vf, L.z_hy, L.apex
    sel = z <= A.z_fm + 20
    if sel.any():
        widen = np.interp(z[sel], [apex - 20, apex + 30], [12, 0])
        blk.draw(Tube(z[sel], cx[sel], cy[sel] + 16, q["neck_w"] + widen, q["neck_d"] + widen / 2), hu["muscle"])
        blk.draw(Tube(z[sel], cx[sel], y_body[sel], np.maximum(bx[sel], 8) + 6, np.maximum(by[sel], 6) + 4), hu["muscle"])
    zk = [min(apex - 10, z_hy - 40), z_hy, None]
    for side, s in SIDES:
        c = A.cochlea[side]
        zk[2] = max(c[2] - 15, z_hy + 10)
        at = lambda arr, zz: float(np.interp(zz, z, arr))
        trachea_y = at(y_vf, zk[0]) - 12 - 8
        blk.draw(Tube(zk, [at(cx, zk[0]) + s * 25, at(cx, z_hy) + s * 0.8 * q["neck_w"], c[0] + s * 22],
                      [trachea_y - 10, at(cy, z_hy) - 20, c[1] + 10], [6, 7, 7], [9, 12, 9]), hu["muscle"])


def chewing_muscles(blk: Block, A: Anatomy, L: Levels, q: dict, hu: dict) -> dict[str, np.ndarray]:
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
            w = embed(rs, lo, blo, bhi)
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


def temporalis(blk: Block, A: Anatomy, condyle: dict, T: np.ndarray, dist: tuple, q: dict, hu: dict) -> None:
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


def tongue(blk: Block, L: Levels, hu: dict) -> None:
    """Tongue inside the mandibular arch up to the palate, muscular floor of the mouth below it."""
    z, mo, z_pal = L.z, L.mo, L.z_pal
    if mo:
        floor = mo["z_bottom"] + 0.45 * (mo["z_crest"] - mo["z_bottom"])
        for eq, z0, z1, tissue in ((mo["tongue"], floor, z_pal - 1.5, "tongue"), (mo["arch"], mo["z_bottom"] + 2, floor, "muscle")):
            kz = np.flatnonzero((z >= z0) & (z <= z1))
            area = polygon_mask(eq, 0.0, blk.y, blk.x)
            if len(kz) and area.any():
                blk.fill((kz[0], 0, 0), np.broadcast_to(area, (len(kz), *area.shape)), hu[tissue])
        blk.draw(Ell((mo["xc"], mo["yc"], z_pal - 3), (15, 20, 1.5)), hu["air"])  # a little air under the palate


def fat_pads(blk: Block, o: Outlines, L: Levels, hu: dict) -> None:
    """Parapharyngeal fat medial to each parotid, buccal fat in the cheeks."""
    gl, mo, z_occ = o.glands, L.mo, L.z_occ
    for side, s in SIDES:
        m = gl.get(gland("parotid", side).label)
        if m is not None:
            c, (lo_p, hi_p) = o.centroid(m), o.bounds(m)
            x_med = lo_p[0] if s > 0 else hi_p[0]
            blk.draw(Ell((x_med - s * 6, c[1] + 3, c[2] - 5), (6, 9, 14)), hu["fat"])
        if mo:
            blk.draw(Ell(((mo["x_left"] if s > 0 else mo["x_right"]) + s * 8, mo["y_back"] - 15, z_occ), (6, 10, 10)), hu["fat"])


def nose_and_lips(blk: Block, A: Anatomy, L: Levels, hu: dict) -> None:
    """The nose, and the lips with the upper lip joining them to the nose."""
    k, r, mx, gy, gz = A.k, A.globe_r, A.mid_x, A.gy, A.gz
    mo, z_pal, z_occ = L.mo, L.z_pal, L.z_occ
    blk.draw(Where(Ell((mx, gy - r - 6, (gz + z_pal) / 2 - 2), (10 * k, 18 * k, (gz - z_pal) / 2 + 2)),
                   lambda x, y, zz: y < gy - r + 4), hu["soft"])
    if mo:  # lips, and the upper lip joining them to the nose whatever the jaw's position
        blk.draw(Ell((mx, mo["y_front"] - 7, z_occ + 1), (24 * k, 7, 13)), hu["soft"])
        blk.paint(*segment((mx, gy - r - 8, z_pal + 6), (mx, mo["y_front"] - 8, z_occ + 8), 10.0), hu["soft"])


def airway(blk: Block, A: Anatomy, L: Levels, q: dict, hu: dict) -> None:
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
        blk.draw(Where(Tube(zz, cx[sel], yc_a, ax_a + 3, ay_a + 3), None, (z_cr, z_hy - 5)), hu["cartilage"])
        blk.draw(Tube(zz, cx[sel], yc_a, ax_a, ay_a), hu["air"])
        at = lambda arr, zq: float(np.interp(zq, zz, arr))
        hy = (at(cx[sel], z_hy), at(yc_a, z_hy) - 6)
        blk.draw(Where(Ell((hy[0], hy[1], z_hy), (20, 14, 2.5)),
                       lambda x, y, zq: ~Ell((hy[0], hy[1], z_hy), (16, 10, 9))(x, y, zq) & (y < hy[1] + 4)), hu["cortical"])
        for s in (-1, 1):
            blk.draw(Ell((at(cx[sel], z_cr - 25) + s * (8.5 * sc + 9), at(yc_a, z_cr - 25) - 2, z_cr - 25), (7, 9, 20)), hu["thyroid"])
    y_post, y_ant = y_c2 - 8, gy + 32 * k - 4
    blk.draw(Ell((mx, (y_post + y_ant) / 2, z_pal + 11), (10, max(5.0, (y_post - y_ant) / 2), 11)), hu["air"])  # nasopharynx


def envelope(blk: Block, A: Anatomy, p: dict, q: dict) -> np.ndarray:
    """Skin, subcutaneous fat and soft tissue around everything painted: per axial slice the
    convex hull of the painted voxels grown by a margin (scalp over the skull, thicker over the
    face and neck, chest wall around the lungs), a dome above the skull.

    Returns a uint8 code per voxel: 0 outside the body, 1 the skin and fat layer filled here,
    2 deeper body. The layer yields to a torso already on the canvas, so that the neck merges
    into the shoulders instead of wearing its own skin inside them."""
    hu = p["hu"]
    core = blk.ct != UNSET
    pts = row_extremes(core, blk.y, blk.x)
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
    top, eq_top = filled[-1], hull(pts[filled[-1]])
    for kz in range(blk.ct.shape[0]):
        if pts[kz] is not None:
            eq, m = hull(pts[kz]), margin[kz]
        elif kz > top and not A.brain_cut:  # the scalp's dome over the skull's last slice
            h = blk.z[kz] - blk.z[top]
            if h >= margin[top]:
                continue
            eq, m = eq_top, math.sqrt(margin[top] ** 2 - h * h)
        else:
            continue
        sl = blk.ct[kz]
        unset = sl == UNSET
        outer = polygon_mask(eq, m, blk.y, blk.x)
        skin = polygon_mask(eq, m - 1.5, blk.y, blk.x)
        deep = polygon_mask(eq, m - fat[kz], blk.y, blk.x)
        layer = unset & outer & ~deep
        sl[layer & ~skin] = hu["soft"]
        sl[layer & skin] = hu["fat"]
        sl[unset & deep] = hu["soft"]
        inside[kz] = np.where(layer, 1, np.where(outer | ~unset, 2, 0))
    blk.ct[blk.ct == UNSET] = -1000
    return inside
