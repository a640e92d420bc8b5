"""Torso and limbs in the body frame: the procedural whole body, and the torso that carries a
real neck in "headneck" and "wholebody" outline phantoms.
"""

from __future__ import annotations

import numpy as np

from GlandSegLib.defaultmodel.phantom.shapes import Canvas, Ell, Frame, Tube, Where, minus, periodic, zband

BODY_CANAL = ([-880, -700, -500, -300, -200], [55, 45, 62, 55, 38])  # body frame: spinal canal z knots, y


def paint_body(cv: Canvas, f: Frame, p: dict, interior_top: float | None = None) -> None:
    """Shoulders to legs in the body frame: coarse, elliptic cross-sections along z.

    interior_top (body frame z): lungs, airway, heart and spine stop there, because an outline
    phantom brings its own real lungs, spine and airway above it; the body wall, shoulders and
    arms stay so the real neck sits on a torso. None paints everything (make_phantom).
    """
    hu = p["hu"]
    paint = lambda shape, tissue: cv.paint(f, shape, hu[tissue])
    inner = (lambda s: s) if interior_top is None else (lambda s: Where(s, None, (-1e9, interior_top)))
    trunk = Tube([-960, -880, -780, -650, -560, -450, -300, -260, -240, -222, -210, -200],
                 [0] * 12, [-5, -5, -10, -15, -15, -15, -10, -5, 0, 5, 10, 20],
                 [150, 180, 170, 150, 155, 165, 175, 185, 175, 140, 100, 70],
                 [95, 100, 108, 108, 110, 112, 110, 100, 95, 90, 80, 70])
    legs = [Tube([-1700, -1100, -870], [s * 90, s * 95, s * 95], [-10] * 3, [55, 75, 85], [60, 80, 90])
            for s in (-1, 1)]
    arms = [Tube([-880, -560, -250], [s * 200] * 3, [-5] * 3, [32, 38, 42], [34, 40, 46]) for s in (-1, 1)]
    for t, tissue in ((0, "fat"), (-12, "muscle")):
        for shape in [trunk, *legs, *arms]:
            paint(shape.grow(t * (0.5 if shape in arms else 1)), tissue)
    paint(zband(trunk.grow(-25), -880, -480), "bowel")
    for s in (-1, 1):
        paint(Ell((s * 178, 0, -255), (48, 55, 48)), "muscle")  # deltoid
        paint(Ell((s * 178, 0, -255), (24, 24, 24)), "cortical")  # humeral head
        paint(Tube([-560, -265], [s * 200] * 2, [-5] * 2, [12, 13], [12, 13]), "cortical")
        paint(Tube([-560, -265], [s * 200] * 2, [-5] * 2, [6, 7], [6, 7]), "marrow")
        for dx, dy in ((-7, -10), (7, 4)):
            paint(Tube([-840, -575], [s * 200 + dx] * 2, [dy] * 2, [6, 7], [6, 7]), "cortical")
        paint(Ell((s * 85, -48, -222), (70, 8, 7)), "cortical")  # clavicle
        paint(Ell((s * 95, 62, -300), (40, 6, 65)), "diploe")  # scapula
        paint(inner(Tube([-520, -480, -420, -320, -260, -235], [s * 80] * 6, [0, -5, -5, -5, 0, 10],
                         [40, 58, 64, 62, 50, 15], [55, 75, 88, 85, 60, 15])), "lung")
        paint(Tube([-850, -600], [s * 38, s * 30], [45, 45], [26, 14], [22, 14]), "muscle")  # psoas
        paint(Tube([-820, -240], [s * 35] * 2, [75, 72], [25, 22], [18, 16]), "muscle")  # erector spinae
        paint(Ell((s * 70, 45, -610), (28, 24, 55)), "kidney")
        paint(Tube([-1700, -880], [s * 85, s * 100], [-5, -5], [15, 15], [15, 15]), "cortical")  # femur
        paint(Tube([-1700, -880], [s * 85, s * 100], [-5, -5], [8, 8], [8, 8]), "marrow")
        paint(Ell((s * 100, -5, -875), (25, 25, 25)), "cortical")  # femoral head
        wing = minus(Tube([-870, -770], [0, 0], [-10, -10], [110, 140], [90, 95]),
                     Tube([-870, -770], [0, 0], [-10, -10], [100, 130], [80, 85]))
        paint(Where(wing, lambda x, y, z, s=s: (s * x > 48) & (y > -45)), "cortical")  # open in front: no bony ring
        paint(Ell((s * 30, -85, -905), (28, 10, 12)), "cortical")  # pubis
        paint(Ell((s * 60, 20, -915), (12, 20, 25)), "cortical")  # ischium
    paint(inner(Ell((22, -40, -420), (60, 55, 65))), "heart")
    paint(inner(Tube([-460, -240], [0, 0], [-20, -20], [28, 22], [55, 40])), "heart")  # mediastinum
    paint(inner(Tube([-340, -200], [0, 0], [-30, -25], [9, 9], [8, 8])), "air")  # trachea
    for s in (-1, 1):
        paint(inner(Ell((s * 28, -20, -348), (22, 6, 6))), "air")  # main bronchi
    paint(Ell((-60, -20, -545), (100, 95, 80)), "liver")
    paint(Ell((85, 35, -520), (30, 40, 50)), "spleen")
    paint(Ell((45, -45, -520), (45, 35, 40)), "bowel")  # stomach
    paint(Ell((45, -55, -505), (30, 18, 14)), "air")
    paint(Ell((0, -45, -860), (40, 35, 32)), "bladder")
    for c, a, tissue in p["pockets"]:
        paint(Ell(c, a), tissue)
    # ribs (tilted, one modulo expression), sternum, thoracolumbar spine, sacrum
    ribs = Where(minus(trunk.grow(-10), trunk.grow(-18)),
                 lambda x, y, z: (np.abs(x) > 12) & (y > -95) & (z > -560) & (z + 0.35 * (90 - y) < -235)
                 & periodic(-250, 24, 9, 0.35, 90)(x, y, z))
    paint(zband(ribs, -620, -230), "cortical")
    paint(Tube([-430, -235], [0, 0], [-108, -95], [14, 16], [6, 7]), "cortical")
    canal = Tube(BODY_CANAL[0], [0] * 5, BODY_CANAL[1], [10, 11, 9, 9, 9], [9, 10, 8, 8, 8])
    ck, cy = canal.k[0], canal.k[2]
    col = Tube(ck, [0] * 5, cy - 32, [25, 24, 20, 17, 12], [20, 20, 17, 15, 10])
    vert = periodic(-230, 27, 21)
    paint(inner(zband(col, -780, -215)), "disc")  # above -215 the head frame's neck takes over
    paint(inner(Where(col, vert, (-780, -215))), "cortical")
    paint(inner(Where(col.grow(-3), vert, (-780, -217))), "cancellous")
    paint(inner(Where(canal.grow(7), vert, (-780, -215))), "cortical")
    paint(inner(Where(Tube(ck, [0] * 5, cy + 22, [5] * 5, [14] * 5), vert, (-780, -215))), "cortical")  # spinous processes
    paint(zband(Ell((0, 62, -830), (48, 22, 60)), -900, -775), "cancellous")  # sacrum
    paint(inner(zband(canal, -880, -200)), "cord")
