"""Where the synthesized parts of an outline head go, measured on the real outlines: landmarks
(Anatomy), the spinal canal's profile, the mouth read off the mandible, and the heights that
the painting steps share (Levels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from GlandSegLib.defaultmodel.phantom.lattice import Block, hull
from GlandSegLib.defaultmodel.phantom.outlines import Outlines


class Anatomy:
    """Landmarks measured on the outlines (physical LPS mm), and fallbacks for missing ones."""

    def __init__(self, o: Outlines):
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


def _canal_profile(blk: Block, o: Outlines) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def _mouth(blk: Block, A: Anatomy, o: Outlines, q: dict) -> dict | None:
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
            "arch": hull(pts), "tongue": hull(np.r_[pts, [[xc - 15, y_back + 12], [xc + 15, y_back + 12]]])}


SIDES = (("L", 1.0), ("R", -1.0))  # +x is the patient's left


@dataclass
class Levels:
    """Heights and per-slice profiles (physical mm; arrays hold one value per block slice) that
    the painting steps of an outline head share, measured once on the real canal and mandible."""

    z: np.ndarray  # block slice heights
    cx: np.ndarray  # spinal canal centre x, y and half widths x, y (_canal_profile)
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


def measure_levels(blk: Block, o: Outlines, A: Anatomy, q: dict) -> Levels:
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
