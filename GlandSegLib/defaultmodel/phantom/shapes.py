"""Frame-coordinate shapes and the canvas they are painted on: every phantom is drawn with these.

A shape is a boolean function of frame coordinates (mm) with a bounding box; the canvas paints
it straight into an int16 CT and uint8 labels, only inside that box and a few slabs at a time,
so a 512x512x1000 whole body stays fast and small. Frames: the procedural head is drawn in a
"head frame" (mm from the brain centre, x patient left, y posterior, z superior) that is scaled
and rotated about the neck base, torso and limbs in an unrotated "body frame" with the same
axes; outline heads are drawn in physical LPS coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 4_000_000  # voxels evaluated at once: bounds temporary memory


class Ell:
    """Axis-aligned ellipsoid; grow(t) offsets every semi-axis by t mm (shells, layers)."""

    def __init__(self, c, a):
        self.c, self.a = [float(v) for v in c], [float(v) for v in a]

    def grow(self, t: float) -> "Ell":
        return Ell(self.c, [v + t for v in self.a])

    def box(self):
        return np.subtract(self.c, self.a), np.add(self.c, self.a)

    def q(self, x, y, z):
        (cx, cy, cz), (ax, ay, az) = self.c, self.a
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2

    def __call__(self, x, y, z):
        return self.q(x, y, z) <= 1.0


class Tube:
    """Elliptic cross-sections whose centre and semi-axes vary piecewise-linearly with z."""

    def __init__(self, zk, cx, cy, ax, ay):
        self.k = [np.asarray(v, float) for v in (zk, cx, cy, ax, ay)]

    def grow(self, t: float) -> "Tube":
        zk, cx, cy, ax, ay = self.k
        return Tube(zk, cx, cy, ax + t, ay + t)

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


class Union:
    def __init__(self, *parts):
        self.parts = parts

    def grow(self, t: float) -> "Union":
        return Union(*[p.grow(t) for p in self.parts])

    def box(self):
        boxes = [p.box() for p in self.parts]
        return np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)

    def __call__(self, x, y, z):
        out = self.parts[0](x, y, z)
        for p in self.parts[1:]:
            out = out | p(x, y, z)
        return out


class Where:
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


def minus(a, b) -> Where:
    return Where(a, lambda x, y, z: ~b(x, y, z))


class Gland:
    """Union of ellipsoids with a smooth random surface displacement (no perfect ellipsoids)."""

    def __init__(self, parts: list[Ell], waves: np.ndarray, amp: float):
        self.parts, self.waves, self.amp = parts, waves, amp  # waves: rows (kx, ky, kz, phase)
        lo, hi = Union(*parts).box()
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


@dataclass
class Frame:
    c: np.ndarray  # physical position of the frame origin
    m: np.ndarray  # physical offset -> frame coordinates


class Canvas:
    """The int16 CT and uint8 labels being painted; later paint wins, tissue clears labels."""

    def __init__(self, size, origin, spacing, fill: int = -1000):
        self.size, self.origin, self.spacing = np.array(size), np.array(origin, float), np.array(spacing, float)
        self.ct = np.full(tuple(int(v) for v in size[::-1]), fill, np.int16)
        self.lab = np.zeros(tuple(int(v) for v in size[::-1]), np.uint8)

    def paint(self, f: Frame, shape, hu: int, label: int = 0) -> None:
        for sl, mask in self.masks(f, shape):
            np.copyto(self.ct[sl], np.int16(hu), where=mask)
            np.copyto(self.lab[sl], np.uint8(label), where=mask)

    def masks(self, f: Frame, shape):
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
        step = max(1, CHUNK // int((i1[0] - i0[0]) * (i1[1] - i0[1])))
        for z0 in range(i0[2], i1[2], step):
            z1 = min(i1[2], z0 + step)
            d = (dx, dy, ax[2][z0 - i0[2]:z1 - i0[2], None, None])
            u = []
            for i in range(3):
                terms = [float(f.m[i, j]) * d[j] for j in range(3) if abs(f.m[i, j]) > 1e-12]
                u.append(sum(terms[1:], terms[0]))
            sl = (slice(z0, z1), slice(i0[1], i1[1]), slice(i0[0], i1[0]))
            yield sl, np.broadcast_to(shape(*u), (z1 - z0, i1[1] - i0[1], i1[0] - i0[0]))


def mirror(c, s: int):
    return (s * c[0], c[1], c[2])


def zband(shape, lo: float, hi: float) -> Where:
    return Where(shape, None, (lo, hi))


def periodic(z0: float, period: float, on: float, slope: float = 0.0, yref: float = 0.0):
    """Repeating z bands (vertebrae, ribs, teeth gaps), optionally tilted along y."""
    return lambda x, y, z: np.mod(z - z0 + slope * (yref - y), period) < on


def segment(p1, p2, radius: float) -> tuple[Frame, Ell]:
    """A bar from p1 to p2 (zygomatic arch, ear canal): an ellipsoid along the segment."""
    p1, p2 = np.asarray(p1, float), np.asarray(p2, float)
    u = p2 - p1
    n = float(np.linalg.norm(u))
    u = u / n
    v = np.cross(u, [0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.cross(u, [1.0, 0.0, 0.0])
    v /= np.linalg.norm(v)
    return Frame((p1 + p2) / 2, np.array([u, v, np.cross(u, v)])), Ell((0, 0, 0), (n / 2 + radius, radius, radius))
