"""One status per gland: found, cut by the field of view, outside it, not found, or rejected.

Why: a network asked for six glands answers with six, wherever it must. On a brain-only CT
the shipped model put a "parotid" in the brain and one in the scalp; on a CT ending at the
upper jaw it reported submandibular glands below the scan. Each segment is therefore held
against anatomy before it is written (GlandSegLib.segmentation.anatomy):

rejected
    * inside the cranium: most of its voxels lie in the intracranial region the head
      locator sees (no gland of the six lies there);
    * wrong tissue: its median CT number lies more than 3 SD beyond every real parotid's
      (OpenKBP train-pats; air, lung and bone are far outside);
    * volume far above the experts' range: more than one 5-95% range width (in log
      volume) above it (no gland of the six grows that large: the segment has leaked into
      its neighbours). A segment far *below* the range is kept and flagged: on real CT the
      network under-segments real glands in the right place (PDDCA's submandibular glands:
      1.1 and 2.0 ml where the experts drew 7.1 and 6.7), and a small correct seed is
      quicker to correct than an empty one; a misplaced small segment is caught by the
      position checks instead;
    * far from where the gland lies: its centre is more than K_SD SD from where the
      experts' glands lie relative to the top of the brain (where the scan shows the dome
      of the skull), or relative to most of the other glands found (at least two).
outside the field of view
    the centre of the gland cannot lie in the scan: every reference found puts it, at
    K_SD SD, beyond the scan's edge. It is not searched for, not reported missing, and a
    segment the network made there anyway is discarded (the reason says so).
found, cut by the field of view
    the segment touches the scan's edge, or it is shorter along an axis than the smallest
    expert gland (mean - K_SD SD) by more than its distance to the scan's edge there.
not found
    in view (or not decidable: no reference), and nothing was found; the reason says
    whether the gland's expected place lies wholly in the scan or reaches beyond an edge.

A gland found on the wrong side of the head (a possible left/right swap, which the report
names) is judged front-back and up-down only: a swap explains its side, not its height.

Rejected and outside segments are removed from the labels, so no output writes them
(unless the user asks for them: segment(keep_rejected=True), `--keep-rejected`).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from GlandSegLib.geometry import PhysicalBox, image_bounds, voxel_volume_ml
from GlandSegLib.glands import BY_KEY, BY_LABEL
from GlandSegLib.segmentation.anatomy import Cranium, ExpectedAnatomy

FOUND = "found"
CUT = "found, cut by the field of view"
OUTSIDE = "outside the field of view"
NOT_FOUND = "not found"
REJECTED = "rejected"
STATUSES = (FOUND, CUT, OUTSIDE, NOT_FOUND, REJECTED)
WRITTEN = (FOUND, CUT)  # statuses whose segment is written

K_SD = 3.0  # the experts' spread: 99.7% of a normal distribution lies within 3 SD
INSIDE_CRANIUM_SHARE = 0.5  # "inside" = most of its voxels
AIR_HU = -500.0  # halfway from water to air: only used to word a rejection ("in air")
AXES = "xyz"
SWAPPED_AXES = "yz"  # a gland on the wrong side is judged front-back and up-down only
EDGES = {("x", 0): "right", ("x", 1): "left", ("y", 0): "front", ("y", 1): "back", ("z", 0): "bottom", ("z", 1): "top"}
QUANTITY_AXIS = {"centroid_x": "x", "centroid_y": "y", "centroid_z": "z", "top": "z", "bottom": "z"}


@dataclass
class Segment:
    """One gland's segment, measured in physical space (LPS mm; lo/hi are voxel faces)."""

    label: int
    voxels: int
    volume_ml: float
    centroid: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    hu_median: float
    inside_cranium: float
    touches: frozenset  # (axis, 0 = low end | 1 = high end) of the scan the segment reaches

    @property
    def key(self) -> str:
        return BY_LABEL[self.label].key

    def features(self) -> dict[str, tuple[str, float, float]]:
        """Reference features it offers other glands: only ends the scan did not cut."""
        out = {}
        if not self.touches:
            for i, a in enumerate(AXES):
                out[f"{self.key}.centroid_{a}"] = (a, float(self.centroid[i]), 0.0)
        if ("z", 1) not in self.touches:
            out[f"{self.key}.top"] = ("z", float(self.hi[2]), 0.0)
        if ("z", 0) not in self.touches:
            out[f"{self.key}.bottom"] = ("z", float(self.lo[2]), 0.0)
        return out


@dataclass
class GlandStatus:
    label: int
    status: str
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    candidate_ml: float | None = None  # a discarded segment's volume

    @property
    def written(self) -> bool:
        return self.status in WRITTEN


def _describe(ref: str) -> str:
    structure, _, feature = ref.partition(".")
    if structure == "brain":
        return {"top": "the top of the brain", "mid": "the cranium's midline", "front": "the front of the brain"}[feature]
    name = BY_KEY[structure].name
    return f"the {name}'s " + {"top": "top", "bottom": "bottom"}.get(feature, "centre")


class GlandAssessor:
    """Holds the scan's geometry, the cranium and the glands accepted so far (stage one's
    glands are references for the lacrimal stage's)."""

    def __init__(self, ct: sitk.Image, crop: sitk.Image, cranium: Cranium, expected: ExpectedAnatomy):
        self.ct, self.crop, self.cranium, self.expected = ct, crop, cranium, expected
        self.scan: PhysicalBox = image_bounds(ct)  # the scan's extent (voxel faces), LPS mm
        self.accepted: dict[int, Segment] = {}
        d = np.array(ct.GetDirection()).reshape(3, 3)
        # storage axis -> (physical axis, does a larger index move to the physical high end)
        self._axis = [(int(np.argmax(np.abs(d[:, a]))), bool(d[int(np.argmax(np.abs(d[:, a]))), a] > 0)) for a in range(3)]
        start = ct.TransformPhysicalPointToContinuousIndex(crop.GetOrigin())
        self._start = np.round(start).astype(int)

    # ------------------------------------------------------------------ measuring
    def measure(self, labels: sitk.Image, label: int) -> Segment | None:
        arr = sitk.GetArrayViewFromImage(labels)
        mask = arr == label
        n = int(mask.sum())
        if n == 0:
            return None
        idx = np.argwhere(mask)[:, ::-1].astype(float)  # x y z index
        d = np.array(labels.GetDirection()).reshape(3, 3)
        sp = np.array(labels.GetSpacing())
        pts = np.asarray(labels.GetOrigin()) + (idx * sp) @ d.T
        half = 0.5 * np.abs(d) @ sp
        hu = sitk.GetArrayViewFromImage(self.crop)[mask]
        touches = set()
        size = np.array(self.ct.GetSize())
        for a in range(3):  # the scan's edge, by index in the full CT
            lo_i, hi_i = idx[:, a].min() + self._start[a], idx[:, a].max() + self._start[a]
            phys, up = self._axis[a]
            if lo_i <= 0:
                touches.add((AXES[phys], 1 if not up else 0))
            if hi_i >= size[a] - 1:
                touches.add((AXES[phys], 1 if up else 0))
        return Segment(label, n, n * voxel_volume_ml(labels), pts.mean(axis=0), pts.min(axis=0) - half,
                       pts.max(axis=0) + half, float(np.median(hu)), self.cranium.share_inside(mask, labels),
                       frozenset(touches))

    # ------------------------------------------------------------------ expectations
    def _features(self, refs: Mapping[int, Segment], brain: bool = True) -> dict[str, tuple[str, float, float]]:
        features = dict(self.cranium.features()) if brain else {}
        for seg in refs.values():
            features.update(seg.features())
        return features

    def predictions(self, key: str, quantity: str, features: Mapping[str, tuple[str, float, float]]) -> list[tuple[str, float, float]]:
        """(reference, expected LPS mm, SD) of one quantity of a gland from each usable feature."""
        axis = QUANTITY_AXIS[quantity]
        offsets = self.expected.offsets(key, quantity)
        out = []
        for name, (faxis, value, extra) in features.items():
            o = offsets.get(name)
            if o is not None and faxis == axis and not name.startswith(key + "."):
                out.append((name, value + o.mean, math.hypot(o.sd, extra)))
        return out

    def outside_reason(self, label: int) -> str | None:
        """Why the gland's centre cannot lie in the scan (every reference accepted so far puts
        it beyond an edge), or None: in view, or nothing to tell."""
        key = BY_LABEL[label].key
        features = self._features({k: v for k, v in self.accepted.items() if k != label})
        for i, a in enumerate(AXES):
            preds = self.predictions(key, f"centroid_{a}", features)
            lo, hi = self.scan.lower[i], self.scan.upper[i]
            if not preds or not all(m + K_SD * s < lo or m - K_SD * s > hi for _, m, s in preds):
                continue
            ref, m, s = min(preds, key=lambda p: p[2])
            side = EDGES[(a, 0 if m < lo else 1)]
            edge = lo if m < lo else hi
            return (f"its centre would lie beyond the scan's {side} edge ({a} {edge:.0f} mm): {_describe(ref)} puts it at "
                    f"{a} {m:.0f} ± {K_SD * s:.0f} mm")
        return None

    def where_expected(self, label: int) -> str:
        """For a gland not found: whether its expected place is in the scan, wholly or only in
        part (the most precise reference per axis, K_SD SD), so "not found" says whether the
        region was looked at (e.g. a lacrimal gland on a scan that ends at the orbits)."""
        key = BY_LABEL[label].key
        features = self._features({k: v for k, v in self.accepted.items() if k != label})
        partly, placed = [], []
        for i, a in enumerate(AXES):
            preds = self.predictions(key, f"centroid_{a}", features)
            if not preds:
                continue
            ref, m, s = min(preds, key=lambda p: p[2])
            placed.append(f"{a} {m:.0f} ± {K_SD * s:.0f} mm from {_describe(ref)}")
            lo, hi = self.scan.lower[i], self.scan.upper[i]
            for end, beyond, edge in ((0, m - K_SD * s < lo, lo), (1, m + K_SD * s > hi, hi)):
                if beyond:
                    partly.append(f"the scan's {EDGES[(a, end)]} edge ({a} {edge:.0f} mm)")
        if not placed:
            return "no reference anatomy was found to place it"
        if partly:
            return f"its expected place ({'; '.join(placed)}) reaches beyond {' and '.join(partly)}: it may lie outside the scan"
        return f"its expected place ({'; '.join(placed)}) is in the scan"

    def compare(self, seg: Segment, features: Mapping[str, tuple[str, float, float]],
                axes: str = AXES) -> tuple[bool, str | None]:
        """(whether the features predict the segment's centre at all, how it departs by more
        than K_SD SD on its worst axis or None). Per axis the most precise feature decides;
        only the physical `axes` given are judged."""
        worst, predicted = None, False
        for i, a in enumerate(AXES):
            if a not in axes:
                continue
            preds = self.predictions(seg.key, f"centroid_{a}", features)
            if not preds:
                continue
            predicted = True
            ref, m, s = min(preds, key=lambda p: p[2])
            z = abs(seg.centroid[i] - m) / s
            if z > K_SD and (worst is None or z > worst[0]):
                worst = (z, f"{a} {seg.centroid[i]:.0f} mm where {_describe(ref)} puts it at {m:.0f} ± {K_SD * s:.0f} mm")
        return predicted, None if worst is None else worst[1]

    # ------------------------------------------------------------------ the decision
    def assess(self, labels: sitk.Image, only: Collection[int], swapped: Collection[int] = ()) -> dict[int, GlandStatus]:
        """Statuses of the glands `only`; accepted ones become references for later calls.

        `swapped`: glands on the wrong side of the head (postprocess.laterality_warnings). A
        left/right swap explains their lateral position, which the report names as such: they
        are judged front-back and up-down only (a swapped gland is still at its own height),
        and not used to judge where the others lie."""
        segs = {lab: s for lab in only if (s := self.measure(labels, lab)) is not None}
        status: dict[int, GlandStatus] = {}
        for lab, seg in segs.items():
            reason = self._intrinsic(seg)
            if reason:
                status[lab] = GlandStatus(lab, REJECTED, reason, candidate_ml=round(seg.volume_ml, 3))
        if self.cranium.top_z is not None:
            for lab, seg in segs.items():
                axes = SWAPPED_AXES if lab in swapped else AXES
                if lab not in status and (why := self.compare(seg, self.cranium.features(), axes)[1]):
                    status[lab] = GlandStatus(lab, REJECTED, f"far from where it lies relative to the cranium: {why}",
                                              candidate_ml=round(seg.volume_ml, 3))
        self._mutual({lab: s for lab, s in segs.items() if lab not in swapped}, status)
        self._swapped_against_others({lab: s for lab, s in segs.items() if lab in swapped and lab not in status},
                                     {lab: s for lab, s in segs.items() if lab not in swapped and lab not in status}, status)
        for lab in only:
            seg = segs.get(lab)
            if seg is not None and lab not in status and lab not in swapped:
                self.accepted[lab] = seg
        for lab in only:
            seg = segs.get(lab)
            if lab in status or seg is None:
                outside = self.outside_reason(lab)
                if outside is not None:
                    prior = status.get(lab)
                    notes = [f"a {seg.volume_ml:.2f} ml segment there was discarded"
                             + (f" ({prior.reason})" if prior else "")] if seg is not None else []
                    status[lab] = GlandStatus(lab, OUTSIDE, outside, notes, round(seg.volume_ml, 3) if seg else None)
                elif seg is None:
                    status[lab] = GlandStatus(lab, NOT_FOUND, self.where_expected(lab))
                continue
            status[lab] = self._found(seg)
        return status

    def _intrinsic(self, seg: Segment) -> str | None:
        if seg.inside_cranium > INSIDE_CRANIUM_SHARE:
            return f"inside the cranium ({100 * seg.inside_cranium:.0f}% of its voxels)"
        lo, hi = self.expected.tissue_hu
        if not lo <= seg.hu_median <= hi:
            what = "air (airway or outside the body)" if seg.hu_median < AIR_HU else "wrong tissue for a gland"
            return f"{what}: median {seg.hu_median:.0f} HU, real glands {lo:.0f} to {hi:.0f} HU"
        v = self.expected.volumes[seg.key]
        if seg.volume_ml > v["p95"] ** 2 / v["p5"]:
            return (f"volume {seg.volume_ml:.2f} ml far above the experts' range "
                    f"(5-95%: {v['p5']:.2f}-{v['p95']:.2f} ml)")
        return None

    def _outvoted(self, seg: Segment, refs: Mapping[int, Segment], axes: str = AXES) -> tuple[list[str], int] | None:
        """(the disagreeing references' reasons, how many references predict the segment) when
        most of the other glands in `refs` that predict it, and at least two, place it elsewhere
        on `axes`; None otherwise."""
        verdicts = [why for o in refs.values() if o.label != seg.label
                    for predicted, why in [self.compare(seg, o.features(), axes)] if predicted]
        against = [why for why in verdicts if why]
        return (against, len(verdicts)) if len(against) >= 2 and len(against) > len(verdicts) / 2 else None

    def _swapped_against_others(self, swapped: dict[int, Segment], others: dict[int, Segment],
                                status: dict[int, GlandStatus]) -> None:
        """A swapped gland that most of the other glands found (at least two) place elsewhere
        front-back or up-down is rejected: a swap does not explain that."""
        refs = {**self.accepted, **others}
        for lab, seg in swapped.items():
            if (out := self._outvoted(seg, refs, SWAPPED_AXES)) is not None:
                against, n = out
                status[lab] = GlandStatus(lab, REJECTED, f"far from where it lies relative to the other glands found "
                                          f"({len(against)} of {n} disagree, left/right aside): {against[0]}",
                                          candidate_ml=round(seg.volume_ml, 3))

    def _mutual(self, segs: dict[int, Segment], status: dict[int, GlandStatus]) -> None:
        """Reject, one at a time, the gland that most of the others found disagree with (at
        least two of them); a rejected gland no longer counts as a reference."""
        while True:
            alive = {lab: s for lab, s in segs.items() if lab not in status}
            refs = {**self.accepted, **alive}
            worst = None
            for lab, seg in alive.items():
                if (out := self._outvoted(seg, refs)) is not None:
                    against, n = out
                    if worst is None or len(against) / n > worst[0]:
                        worst = (len(against) / n, lab, against, n)
            if worst is None:
                return
            _, lab, against, n = worst
            status[lab] = GlandStatus(lab, REJECTED, f"far from where it lies relative to the other glands found "
                                      f"({len(against)} of {n} disagree): {against[0]}",
                                      candidate_ml=round(segs[lab].volume_ml, 3))

    def _found(self, seg: Segment) -> GlandStatus:
        notes = []
        v = self.expected.volumes[seg.key]
        if seg.volume_ml < v["p5"] ** 2 / v["p95"]:
            notes.append(f"volume {seg.volume_ml:.2f} ml far below the experts' 5-95% range "
                         f"({v['p5']:.2f}-{v['p95']:.2f} ml): probably under-segmented, check and grow it")
        elif not v["p5"] <= seg.volume_ml <= v["p95"]:
            notes.append(f"volume {seg.volume_ml:.2f} ml outside the experts' 5-95% range "
                         f"({v['p5']:.2f}-{v['p95']:.2f} ml, median {v['median']:.2f} ml)")
        if seg.touches:
            edges = ", ".join(sorted(EDGES[t] for t in seg.touches))
            return GlandStatus(seg.label, CUT, f"it touches the scan's {edges} edge", notes)
        for i, a in enumerate(AXES):
            size = self.expected.size(seg.key, a)
            if size is None:
                continue
            smallest = size.mean - K_SD * size.sd  # the smallest extent a gland of the experts has
            missing = smallest - (seg.hi[i] - seg.lo[i])
            for end, gap in ((0, seg.lo[i] - self.scan.lower[i]), (1, self.scan.upper[i] - seg.hi[i])):
                if missing > gap:
                    return GlandStatus(seg.label, CUT, f"{seg.hi[i] - seg.lo[i]:.0f} mm of it along {a} are in the scan, at least "
                                       f"{smallest:.0f} mm are expected, and the scan's {EDGES[(a, end)]} edge is {gap:.0f} mm away",
                                       notes)
        return GlandStatus(seg.label, FOUND, "", notes)

    def drop(self, labels: sitk.Image, status: Mapping[int, GlandStatus]) -> sitk.Image:
        """`labels` without the glands whose segment is not written (rejected, outside)."""
        gone = [lab for lab, s in status.items() if not s.written]
        arr = sitk.GetArrayViewFromImage(labels)
        if not gone or not np.isin(arr, gone).any():
            return labels
        out = sitk.GetArrayFromImage(labels)
        out[np.isin(out, gone)] = 0
        img = sitk.GetImageFromArray(out)
        img.CopyInformation(labels)
        return img
