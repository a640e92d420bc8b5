"""Reviewing a GlandSeg result in 3D Slicer: what to trust, and what correcting it cost.

Why here and not in the panel: everything below runs under slicer-core (MRML without the
application), so Testing/test_slicer_review.py exercises it for real; the panel only wires
buttons to it.

* The review table: the report's glands in the order to review them (least confident
  first), with status, confidence, volume beside the experts' 5-95% range and the reason.
* The original result is kept as a hidden label map volume (a node reference of the
  segmentation), saved with the scene, so corrections can be measured hours later.
* The edit timer: how long the segments were being edited. Every change to a segment's
  voxels, an added or a removed segment counts as an edit; the time between two edits
  counts as editing when it is shorter than IDLE_GAP_S (a pause to think, scroll or look
  at another view), and not at all when longer (the user left). One edit alone counts 0 s.
  Total and count are node attributes, so they survive saving the scene.
* Measuring the corrections: the segments as they are now against the kept original, per
  gland, with GlandSegLib.cohort.compare (Dice, HD95, surface Dice, volume change, added
  path length), into a table and optionally a CSV.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import slicer

from GlandSegSlicerLib import nodes
from GlandSegLib.glands import BY_KEY, GLANDS
from GlandSegLib.segmentation.report import gland_status, glands_in_review_order

REF_ORIGINAL = "GlandSeg.original"
REF_REVIEW_TABLE = "GlandSeg.review"
REF_CORRECTIONS_TABLE = "GlandSeg.corrections"
ATTR_EDIT_SECONDS = "GlandSeg.editSeconds"
ATTR_EDITS = "GlandSeg.edits"
IDLE_GAP_S = 120.0

# (key in the row, column title, unit); a title with a unit None is text
REVIEW_COLUMNS = (("name", "Gland", None), ("status", "Status", None), ("confidence", "Confidence", ""),
                  ("volume_ml", "Volume", "ml"), ("expert_p5_ml", "Experts 5%", "ml"), ("expert_p95_ml", "Experts 95%", "ml"),
                  ("reason", "Reason", None))
CORRECTION_COLUMNS = (("name", "Gland", None), ("status", "Change", None), ("dice", "Dice", ""),
                      ("hd95_mm", "HD95", "mm"), ("surface_dice", "Surface Dice", ""), ("tolerance_mm", "Tolerance", "mm"),
                      ("volume_original_ml", "Volume before", "ml"), ("volume_corrected_ml", "Volume after", "ml"),
                      ("volume_change_ml", "Volume change", "ml"), ("apl_mm", "Added path length", "mm"),
                      ("apl_slices", "Slices edited", ""))


# ----------------------------------------------------------------------------- tables

def _referenced_table(segmentation_node, role: str, suffix: str) -> slicer.vtkMRMLTableNode:
    table = segmentation_node.GetNodeReference(role)
    if table is None:
        scene = segmentation_node.GetScene()
        table = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(f"{segmentation_node.GetName()} {suffix}"))
        segmentation_node.SetNodeReferenceID(role, table.GetID())
    return table


# ----------------------------------------------------------------------------- what to trust

def review_rows(report: Mapping) -> list[dict[str, object]]:
    """The report's glands in review order (report["review_order"]: least confident first,
    then the glands without a segment). A report from a GlandSeg before statuses existed
    gives found / not found from the voxel count."""
    rows = []
    for g in glands_in_review_order(report):
        expert = g.get("expert_volume_ml") or {}
        rows.append({"label": int(g["label"]), "name": g.get("name", ""), "status": gland_status(g),
                     "confidence": g.get("confidence"),
                     "volume_ml": g.get("volume_ml") if g.get("voxels") else None,
                     "expert_p5_ml": expert.get("p5"), "expert_p95_ml": expert.get("p95"),
                     "reason": "; ".join([g.get("status_reason") or ""] + list(g.get("status_notes") or [])).strip("; ")})
    return rows


def show_review(segmentation_node, report: Mapping) -> slicer.vtkMRMLTableNode:
    """The review table of a result (kept per segmentation: a new run updates it), and each
    gland segment tagged with its status and confidence (visible in the Segment Editor's
    segment properties and saved with the segmentation)."""
    rows = review_rows(report)
    table = _referenced_table(segmentation_node, REF_REVIEW_TABLE, "review")
    nodes.fill_table(table, rows, REVIEW_COLUMNS)
    segmentation = segmentation_node.GetSegmentation()
    keys = {g.label: g.key for g in GLANDS}
    for row in rows:
        segment = segmentation.GetSegment(keys.get(int(row["label"]), ""))
        if segment is None:
            continue
        segment.SetTag("GlandSeg.status", str(row["status"]))
        if row["confidence"] is not None:
            segment.SetTag("GlandSeg.confidence", f"{float(row['confidence']):.2f}")
    return table


# ----------------------------------------------------------------------------- the original

def keep_original(segmentation_node, reference_volume_node) -> slicer.vtkMRMLLabelMapVolumeNode:
    """Keep the segments as they are now (GlandSeg's result, just loaded) as a hidden label
    map on the CT's grid, replacing an earlier one, and restart the edit count."""
    labels = nodes.segmentation_to_labelmap(segmentation_node, reference_volume_node)
    scene = segmentation_node.GetScene()
    old = segmentation_node.GetNodeReference(REF_ORIGINAL)
    if old is not None:
        scene.RemoveNode(old)
    node = nodes.add_volume_from_sitk(scene, labels, scene.GenerateUniqueName(f"{segmentation_node.GetName()} original"),
                                      labelmap=True)
    node.SetHideFromEditors(True)  # not offered in volume selectors: it is GlandSeg's record, not data to work on
    segmentation_node.SetNodeReferenceID(REF_ORIGINAL, node.GetID())
    segmentation_node.SetAttribute(ATTR_EDIT_SECONDS, "0")
    segmentation_node.SetAttribute(ATTR_EDITS, "0")
    return node


def has_original(segmentation_node) -> bool:
    return segmentation_node is not None and segmentation_node.GetNodeReference(REF_ORIGINAL) is not None


# ----------------------------------------------------------------------------- edit time

class EditTimer:
    """Counts edits of one segmentation node and the time spent making them (see module doc).

    `clock` is injectable so the arithmetic can be tested without waiting."""

    EVENTS = ("SourceRepresentationModified", "SegmentAdded", "SegmentRemoved")

    def __init__(self, segmentation_node, clock: Callable[[], float] = time.monotonic, idle_gap_s: float = IDLE_GAP_S):
        self.node, self.clock, self.idle_gap_s = segmentation_node, clock, idle_gap_s
        self._last: float | None = None
        self._observed = []
        segmentation = segmentation_node.GetSegmentation()
        for name in self.EVENTS:
            event = getattr(slicer.vtkSegmentation, name, None)
            if event is not None:  # SourceRepresentationModified is MasterRepresentationModified before Slicer 5.4
                self._observed.append((segmentation, segmentation.AddObserver(event, self._on_edit)))

    @property
    def seconds(self) -> float:
        return float(self.node.GetAttribute(ATTR_EDIT_SECONDS) or 0.0)

    @property
    def edits(self) -> int:
        return int(self.node.GetAttribute(ATTR_EDITS) or 0)

    def _on_edit(self, *_args) -> None:
        now = self.clock()
        seconds = self.seconds
        if self._last is not None and now - self._last < self.idle_gap_s:
            seconds += now - self._last
        self._last = now
        self.node.SetAttribute(ATTR_EDIT_SECONDS, f"{seconds:.1f}")
        self.node.SetAttribute(ATTR_EDITS, str(self.edits + 1))

    def stop(self) -> None:
        for obj, tag in self._observed:
            obj.RemoveObserver(tag)
        self._observed = []


# ----------------------------------------------------------------------------- the corrections

def measure_corrections(segmentation_node, reference_volume_node=None, csv_path: str | Path | None = None):
    """(table node, rows): each gland's segments now against the kept original. Raises
    ValueError when there is no original (a segmentation GlandSeg did not make)."""
    from GlandSegLib.cohort.compare import compare_segmentations
    from GlandSegLib.cohort.datareport import to_csv
    from GlandSegLib.io.images import write_text_atomic

    original_node = segmentation_node.GetNodeReference(REF_ORIGINAL)
    if original_node is None:
        raise ValueError(f"'{segmentation_node.GetName()}' has no GlandSeg original to compare with: "
                         "corrections can be measured on segmentations GlandSeg made in this scene")
    original = nodes.volume_to_sitk(original_node)
    reference = reference_volume_node or original_node
    corrected = nodes.segmentation_to_labelmap(segmentation_node, reference)
    rows = compare_segmentations(original, corrected)
    seconds = float(segmentation_node.GetAttribute(ATTR_EDIT_SECONDS) or 0.0)
    edits = int(segmentation_node.GetAttribute(ATTR_EDITS) or 0)
    for row in rows:
        row["name"] = BY_KEY[row["gland"]].name
        row["edit_seconds_all_glands"] = seconds
        row["edits_all_glands"] = edits
    table = _referenced_table(segmentation_node, REF_CORRECTIONS_TABLE, "corrections")
    nodes.fill_table(table, rows, CORRECTION_COLUMNS)
    table.SetAttribute("GlandSeg.editSeconds", f"{seconds:.1f}")
    if csv_path is not None:
        write_text_atomic(to_csv(rows, ["name", *[k for k in rows[0] if k != "name"]]), Path(csv_path))
    return table, rows
