"""MRML nodes <-> GlandSegLib's SimpleITK world: the two ends of GlandSeg's data flow.

GlandSegLib thinks in SimpleITK images (LPS millimetres, origin/spacing/direction);
Slicer holds volume, segmentation, table and markups nodes in RAS. Every conversion
between the two lives here, and only here, so that geometry is handled once and tested.

Only MRML is used (slicer's node classes, vtk, numpy, SimpleITK): no qt, ctk, slicer.app,
slicer.modules or GUI helpers of slicer.util. That keeps this module runnable under the
`slicer-core` package, where the test suite checks it without the Slicer application.
Functions take the scene from the nodes they are given instead of `slicer.mrmlScene`
for the same reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from . import process

process.ensure_lib_on_path()

from GlandSegLib.geometry import PhysicalBox  # noqa: E402
from GlandSegLib.glands import BY_LABEL, GLANDS, Gland  # noqa: E402
from GlandSegLib.names import match_gland  # noqa: E402
from GlandSegLib.io.segfile import segment_id, terminology_entry  # noqa: E402
from GlandSegLib.segmentation.stats import gland_statistics  # noqa: E402

# LPS (SimpleITK, DICOM) and RAS (Slicer) differ by the sign of the first two axes.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


class GeometryError(ValueError):
    """A node whose geometry GlandSeg cannot hand to SimpleITK without guessing."""


# --------------------------------------------------------------------------------------
# (a) volume node <-> SimpleITK image
# --------------------------------------------------------------------------------------

def ijk_to_ras_matrix(image: sitk.Image) -> np.ndarray:
    """4x4 IJK-to-RAS of a SimpleITK image: diag(-1,-1,1) @ [direction * spacing | origin]."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(image.GetSpacing(), dtype=float)
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ direction @ np.diag(spacing)
    m[:3, 3] = LPS_TO_RAS @ np.array(image.GetOrigin(), dtype=float)
    return m


def sitk_geometry(ijk_to_ras: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(origin, spacing, direction) in LPS from a 4x4 IJK-to-RAS matrix: the inverse of the above."""
    m = np.asarray(ijk_to_ras, dtype=float)
    lps = LPS_TO_RAS @ m[:3, :3]  # LPS_TO_RAS is its own inverse
    spacing = np.linalg.norm(lps, axis=0)
    if np.any(spacing <= 0):
        raise GeometryError("the volume has a zero spacing")
    direction = lps / spacing
    origin = LPS_TO_RAS @ m[:3, 3]
    return tuple(origin.tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def _matrix_to_numpy(vm: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[vm.GetElement(r, c) for c in range(4)] for r in range(4)])


def _numpy_to_matrix(m: np.ndarray) -> vtk.vtkMatrix4x4:
    vm = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def require_untransformed(node: slicer.vtkMRMLTransformableNode) -> None:
    """GlandSeg reads a node's own geometry; a parent transform would silently move results.

    Refuse instead of guessing: the user hardens the transform (one click in Data module).
    """
    if node.GetParentTransformNode() is not None:
        raise GeometryError(f"'{node.GetName()}' is under the transform '{node.GetParentTransformNode().GetName()}'; "
                            "harden the transform first (Data module, right-click, Harden transform)")


def volume_to_sitk(volume_node: slicer.vtkMRMLScalarVolumeNode) -> sitk.Image:
    """A scalar volume node as a SimpleITK image (copy of the voxels, LPS geometry)."""
    require_untransformed(volume_node)
    image_data = volume_node.GetImageData()
    if image_data is None or image_data.GetPointData().GetScalars() is None:
        raise GeometryError(f"'{volume_node.GetName()}' holds no image data")
    if image_data.GetNumberOfScalarComponents() != 1:
        raise GeometryError(f"'{volume_node.GetName()}' has {image_data.GetNumberOfScalarComponents()} components; "
                            "a scalar volume is needed")
    dims = image_data.GetDimensions()
    arr = numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars()).reshape(tuple(reversed(dims)))
    image = sitk.GetImageFromArray(np.array(arr, copy=True))
    m = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(m)
    origin, spacing, direction = sitk_geometry(_matrix_to_numpy(m))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def update_volume_from_sitk(volume_node: slicer.vtkMRMLVolumeNode, image: sitk.Image) -> None:
    """Replace a volume node's voxels and geometry with a SimpleITK image's."""
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise GeometryError("a 3D scalar image is needed")
    arr = sitk.GetArrayFromImage(image)
    vtype = numpy_support.get_vtk_array_type(arr.dtype)
    image_data = vtk.vtkImageData()
    image_data.SetDimensions(image.GetSize())
    image_data.AllocateScalars(vtype, 1)
    numpy_support.vtk_to_numpy(image_data.GetPointData().GetScalars())[:] = arr.ravel()
    volume_node.SetIJKToRASMatrix(_numpy_to_matrix(ijk_to_ras_matrix(image)))
    volume_node.SetAndObserveImageData(image_data)


def add_volume_from_sitk(scene: slicer.vtkMRMLScene, image: sitk.Image, name: str, *,
                         labelmap: bool = False) -> slicer.vtkMRMLVolumeNode:
    cls = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(cls, name)
    update_volume_from_sitk(node, image)
    node.CreateDefaultDisplayNodes()
    return node


# --------------------------------------------------------------------------------------
# (b) labelmap -> segmentation node, (c) segmentation node -> labelmap
# --------------------------------------------------------------------------------------

_STANDALONE_SEGMENTATIONS_LOGIC: slicer.vtkSlicerSegmentationsModuleLogic | None = None


def _application_segmentations_logic() -> slicer.vtkSlicerSegmentationsModuleLogic | None:
    """The Segmentations module's own logic when running inside the 3D Slicer application."""
    modules = getattr(slicer, "modules", None)  # absent under slicer-core
    module = getattr(modules, "segmentations", None) if modules is not None else None
    return module.logic() if module is not None else None


def segmentations_logic(scene: slicer.vtkMRMLScene | None = None) -> slicer.vtkSlicerSegmentationsModuleLogic:
    """The Segmentations module logic.

    In the application: the module's own (slicer.modules.segmentations.logic()). A new logic
    given the scene would register the node classes again (a warning in the log on every
    load) and add four more converter rules to the global factory each time.

    Stand-alone (slicer-core: no application, no modules): one logic for the whole process,
    bound once to a private empty scene if no converter rule is registered yet (that
    registers them: without them adding a segment fails with "Unable to construct empty
    representation"), so it keeps none of the caller's scenes alive. `scene` is accepted
    for the callers' sake; the logic's static helpers work on any scene.
    """
    global _STANDALONE_SEGMENTATIONS_LOGIC
    logic = _application_segmentations_logic()
    if logic is not None:
        return logic
    if _STANDALONE_SEGMENTATIONS_LOGIC is None:
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        if not slicer.vtkSegmentationConverterFactory.GetInstance().GetConverterRules():
            logic.SetMRMLScene(slicer.vtkMRMLScene())
        _STANDALONE_SEGMENTATIONS_LOGIC = logic
    return _STANDALONE_SEGMENTATIONS_LOGIC


def apply_gland_metadata(segment: slicer.vtkSegment, gland: Gland) -> None:
    """Name, colour and terminology from glands.py, marked as chosen (not auto-generated),
    so Slicer neither renames nor recolours them and the saved file keeps them."""
    segment.SetName(gland.name)
    segment.SetColor(*gland.color)
    segment.SetNameAutoGenerated(False)
    segment.SetColorAutoGenerated(False)
    segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), terminology_entry(gland))


def _require_geometry_node(node: slicer.vtkMRMLVolumeNode | None) -> None:
    if node is not None:
        require_untransformed(node)


def labelmap_to_segmentation(labels: sitk.Image, segmentation_node: slicer.vtkMRMLSegmentationNode,
                             reference_volume_node: slicer.vtkMRMLVolumeNode | None = None) -> None:
    """Replace the segments of `segmentation_node` with the six glands of a canonical labelmap.

    All six segments exist afterwards, empty ones included, so a gland the model missed is
    visibly empty in the Segment Editor (ready to be drawn) rather than absent. Values other
    than 1..6 are ignored.
    """
    scene = segmentation_node.GetScene()
    if scene is None:
        raise ValueError("the segmentation node must be in a scene")
    require_untransformed(segmentation_node)
    _require_geometry_node(reference_volume_node)
    logic = segmentations_logic(scene)
    arr = sitk.GetArrayFromImage(labels)
    canonical = np.where(np.isin(arr, list(BY_LABEL)), arr, 0).astype(np.uint8)
    clean = sitk.GetImageFromArray(canonical)
    clean.CopyInformation(labels)
    labelmap_node = add_volume_from_sitk(scene, clean, "__GlandSeg_labels__", labelmap=True)
    try:
        segmentation = segmentation_node.GetSegmentation()
        segmentation.RemoveAllSegments()
        if reference_volume_node is not None:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        ids = vtk.vtkStringArray()
        for g in GLANDS:  # GLANDS is ordered by label: value v goes to ids[v - 1]
            segmentation.AddEmptySegment(segment_id(g), g.name, list(g.color))
            ids.InsertNextValue(segment_id(g))
        if not logic.ImportLabelmapToSegmentationNode(labelmap_node, segmentation_node, ids):
            raise RuntimeError("Slicer could not import the gland labelmap into the segmentation")
        for g in GLANDS:
            apply_gland_metadata(segmentation.GetSegment(segment_id(g)), g)
        if reference_volume_node is not None:
            # the import may have replaced the reference geometry with the labelmap's
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    finally:
        _remove_volume_node(labelmap_node)


def _remove_volume_node(node: slicer.vtkMRMLVolumeNode) -> None:
    scene = node.GetScene()
    if scene is None:
        return
    display = node.GetDisplayNode()
    if display is not None and display.GetColorNode() is not None and display.GetColorNode().GetName().startswith("__"):
        scene.RemoveNode(display.GetColorNode())
    scene.RemoveNode(node)


def _segment_gland(segment_id_: str, segment: slicer.vtkSegment) -> Gland | None:
    """Which gland a segment is: its ID, else its terminology, else its name.

    IDs survive renaming in the Segment Editor; terminology survives re-import from DICOM
    SEG; names are the last resort (a user-drawn "Parotid_L"), read like model labels are.
    """
    for g in GLANDS:
        if segment_id_ == segment_id(g):
            return g
    entry = segment_terminology(segment)
    if entry:
        parts = entry.split("~")
        if len(parts) >= 4:
            type_code = parts[2].split("^")[1:2]
            modifier_code = parts[3].split("^")[1:2]
            for g in GLANDS:
                if type_code == [g.structure[1]] and modifier_code == [g.laterality[1]]:
                    return g
    return match_gland(segment.GetName())


def segment_terminology(segment: slicer.vtkSegment) -> str:
    """The serialized terminology entry of a segment ("" when it has none)."""
    value = vtk.reference("")
    if segment.GetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), value):
        return str(value)
    return ""


def gland_segments(segmentation_node: slicer.vtkMRMLSegmentationNode) -> dict[int, str]:
    """Gland label -> segment ID for the segments that are recognisably glands (first wins)."""
    segmentation = segmentation_node.GetSegmentation()
    found: dict[int, str] = {}
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        g = _segment_gland(sid, segmentation.GetSegment(sid))
        if g is not None and g.label not in found:
            found[g.label] = sid
    return found


def segment_mask(segmentation_node: slicer.vtkMRMLSegmentationNode, segment_id_: str) -> sitk.Image | None:
    """One segment as a 0/1 SimpleITK image on its own labelmap geometry; None when empty.

    Read segment by segment rather than through ExportSegmentsToLabelmapNode: that export
    fails ("Failed to generate shared labelmap") as soon as one requested segment is empty,
    which is exactly the case after a run in which a gland was not found.
    """
    oriented = slicer.vtkOrientedImageData()
    if not segmentation_node.GetBinaryLabelmapRepresentation(segment_id_, oriented):
        raise RuntimeError(f"Slicer could not give segment {segment_id_!r} as a labelmap")
    scalars = oriented.GetPointData().GetScalars()
    ext = oriented.GetExtent()
    if scalars is None or ext[1] < ext[0] or ext[3] < ext[2] or ext[5] < ext[4]:
        return None
    dims = (ext[1] - ext[0] + 1, ext[3] - ext[2] + 1, ext[5] - ext[4] + 1)
    values = numpy_support.vtk_to_numpy(scalars).reshape(tuple(reversed(dims)))
    if not values.any():
        return None
    m = vtk.vtkMatrix4x4()
    oriented.GetImageToWorldMatrix(m)
    ijk_to_ras = _matrix_to_numpy(m)
    ijk_to_ras[:3, 3] = ijk_to_ras[:3, :3] @ np.array(ext[::2], dtype=float) + ijk_to_ras[:3, 3]  # extent start
    mask = sitk.GetImageFromArray((values != 0).astype(np.uint8))
    origin, spacing, direction = sitk_geometry(ijk_to_ras)
    mask.SetOrigin(origin)
    mask.SetSpacing(spacing)
    mask.SetDirection(direction)
    return mask


def segmentation_to_labelmap(segmentation_node: slicer.vtkMRMLSegmentationNode,
                             reference_volume_node: slicer.vtkMRMLVolumeNode) -> sitk.Image:
    """The gland segments as a canonical labelmap on the reference volume's grid (whole extent).

    Used to recompute statistics after manual correction; segments that are not glands are
    left out, empty ones contribute nothing, and where corrected segments overlap the later
    gland in label order wins.
    """
    require_untransformed(segmentation_node)
    require_untransformed(reference_volume_node)
    reference = volume_to_sitk(reference_volume_node)
    out = np.zeros(sitk.GetArrayViewFromImage(reference).shape, dtype=np.uint8)
    for label, segment_id_ in sorted(gland_segments(segmentation_node).items()):
        mask = segment_mask(segmentation_node, segment_id_)
        if mask is None:
            continue
        on_reference = sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        out[sitk.GetArrayViewFromImage(on_reference) > 0] = label
    labels = sitk.GetImageFromArray(out)
    labels.CopyInformation(reference)
    return labels


def load_seg_nrrd(path: str | Path, segmentation_node: slicer.vtkMRMLSegmentationNode,
                  reference_volume_node: slicer.vtkMRMLVolumeNode | None = None) -> None:
    """Put the segments of a GlandSeg `.seg.nrrd` into `segmentation_node`, replacing its segments.

    The file is read by Slicer's own reader into a scratch node (so what users get equals
    what they get opening the file by hand), then the segments are moved over: the target
    node keeps its identity, name and display settings. Metadata is re-applied from
    glands.py so a file from an older GlandSeg still gets today's names and codes.
    """
    scene = segmentation_node.GetScene()
    require_untransformed(segmentation_node)
    _require_geometry_node(reference_volume_node)
    segmentations_logic(scene)
    scratch = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "__GlandSeg_read__")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    try:
        storage.SetFileName(str(path))
        if not storage.ReadData(scratch):
            raise RuntimeError(f"Slicer could not read {path}")
        source = scratch.GetSegmentation()
        target = segmentation_node.GetSegmentation()
        target.RemoveAllSegments()
        if reference_volume_node is not None:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        mapping = gland_segments(scratch)
        for g in GLANDS:
            sid = mapping.get(g.label)
            if sid is None:  # a gland the file lacks: an empty segment, ready to be drawn
                sid = segment_id(g)
                target.AddEmptySegment(sid, g.name, list(g.color))
            elif not target.CopySegmentFromSegmentation(source, sid):  # keeps the file's segment ID
                raise RuntimeError(f"could not copy segment {sid} from {path}")
            apply_gland_metadata(target.GetSegment(sid), g)
        if reference_volume_node is not None:
            segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    finally:
        scene.RemoveNode(scratch)


def show_segmentation(segmentation_node: slicer.vtkMRMLSegmentationNode, *, surfaces: bool = True) -> None:
    """Segments visible in slice views (outline + fill) and, with surfaces, in 3D."""
    segmentation_node.CreateDefaultDisplayNodes()
    display = segmentation_node.GetDisplayNode()
    display.SetVisibility(True)
    display.SetVisibility2DFill(True)
    display.SetVisibility2DOutline(True)
    if surfaces:
        segmentation_node.CreateClosedSurfaceRepresentation()
        display.SetVisibility3D(True)


# --------------------------------------------------------------------------------------
# (d) statistics table
# --------------------------------------------------------------------------------------

# (key in GlandSegLib.segmentation.stats rows, column title, unit, description)
BASE_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("volume_ml", "Volume", "ml", "gland volume"),
    ("hu_mean", "HU mean", "HU", "mean CT number inside the gland"),
    ("hu_sd", "HU SD", "HU", "standard deviation of the CT number"),
    ("hu_median", "HU median", "HU", "median CT number"),
)
UPTAKE_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("uptake_mean", "Uptake mean", "", "mean of the uptake image (resampled onto the CT) inside the gland"),
    ("uptake_max", "Uptake max", "", "maximum uptake inside the gland"),
    ("uptake_total", "Uptake total", "x ml", "sum of uptake x voxel volume (Bq/ml becomes Bq)"),
)


def fill_table(table_node: slicer.vtkMRMLTableNode, rows: Sequence[Mapping[str, object]],
               columns: Iterable[tuple[str, str, str | None]], descriptions: Mapping[str, str] | None = None) -> None:
    """Rows into a locked table node (computed values: change the segments and compute again).

    columns: (key in the row, title, unit); unit None makes a text column, anything else a
    double column (NaN where the value is missing), so the table sorts, plots and exports
    to CSV as values, not text. descriptions: title -> column description.
    """
    table = vtk.vtkTable()
    units = {}
    for key, title, unit in columns:
        arr = vtk.vtkStringArray() if unit is None else vtk.vtkDoubleArray()
        arr.SetName(title)
        arr.SetNumberOfValues(len(rows))
        for i, row in enumerate(rows):
            v = row.get(key)
            if unit is None:
                arr.SetValue(i, "" if v is None else str(v))
            else:
                arr.SetValue(i, math.nan if v is None else float(v))
        table.AddColumn(arr)
        if unit:
            units[title] = unit
    was = table_node.StartModify()
    table_node.SetLocked(False)
    table_node.SetAndObserveTable(table)
    for title, unit in units.items():
        table_node.SetColumnUnitLabel(title, unit)
    for title, desc in (descriptions or {}).items():
        table_node.SetColumnDescription(title, desc)
    table_node.SetLocked(True)
    table_node.EndModify(was)


def statistics_to_table(stats: dict[int, dict], table_node: slicer.vtkMRMLTableNode, *, uptake: bool) -> None:
    """Fill a table node with one row per gland from GlandSegLib.segmentation.stats.gland_statistics rows
    (an empty gland: volume 0, the other values NaN)."""
    columns = BASE_COLUMNS + (UPTAKE_COLUMNS if uptake else ())
    rows = [{**stats.get(g.label, {}), "name": g.name, "volume_ml": stats.get(g.label, {}).get("volume_ml") or 0.0}
            for g in GLANDS]
    fill_table(table_node, rows, [("name", "Gland", None)] + [(key, title, unit) for key, title, unit, _d in columns],
               {"Gland": "gland (patient's right/left)", **{title: desc for _k, title, _u, desc in columns}})


def table_rows(table_node: slicer.vtkMRMLTableNode) -> list[dict[str, object]]:
    """The table back as dicts (column title -> value), for tests and the console."""
    table = table_node.GetTable()
    rows = []
    for r in range(table.GetNumberOfRows()):
        row: dict[str, object] = {}
        for c in range(table.GetNumberOfColumns()):
            col = table.GetColumn(c)
            v = col.GetValue(r)
            row[col.GetName()] = float(v) if isinstance(col, vtk.vtkDataArray) else str(v)
        rows.append(row)
    return rows


def compute_statistics(segmentation_node: slicer.vtkMRMLSegmentationNode, ct_node: slicer.vtkMRMLScalarVolumeNode,
                       uptake_node: slicer.vtkMRMLScalarVolumeNode | None = None,
                       table_node: slicer.vtkMRMLTableNode | None = None) -> slicer.vtkMRMLTableNode:
    """Per-gland statistics of the segments as they are now (after any manual correction).

    The same function as the CLI's report (GlandSegLib.segmentation.stats.gland_statistics), on the CT's
    grid; the uptake image keeps its own grid and is resampled there by that function.
    """
    labels = segmentation_to_labelmap(segmentation_node, ct_node)
    ct = volume_to_sitk(ct_node)
    uptake = volume_to_sitk(uptake_node) if uptake_node is not None else None
    stats = gland_statistics(labels, ct, uptake)
    if table_node is None:
        scene = segmentation_node.GetScene()
        table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{segmentation_node.GetName()} statistics")
    statistics_to_table(stats, table_node, uptake=uptake is not None)
    return table_node


# --------------------------------------------------------------------------------------
# (e) markups ROI <-> PhysicalBox
# --------------------------------------------------------------------------------------

def box_to_roi(box: PhysicalBox, roi_node: slicer.vtkMRMLMarkupsROINode) -> None:
    """Show an LPS box as an axis-aligned ROI (RAS). Any earlier rotation of the ROI is reset."""
    require_untransformed(roi_node)
    center_ras = LPS_TO_RAS @ np.asarray(box.center, dtype=float)
    was = roi_node.StartModify()
    roi_node.SetROIType(slicer.vtkMRMLMarkupsROINode.ROITypeBox)
    roi_node.SetAndObserveObjectToNodeMatrix(vtk.vtkMatrix4x4())  # identity: axis-aligned
    roi_node.SetCenter([float(v) for v in center_ras])
    roi_node.SetSize([float(v) for v in box.size])
    roi_node.EndModify(was)


def roi_to_box(roi_node: slicer.vtkMRMLMarkupsROINode) -> PhysicalBox:
    """The LPS box enclosing an ROI as the user left it (world bounds: a rotated or
    transformed ROI gives its axis-aligned hull, never a smaller box)."""
    bounds = [0.0] * 6
    roi_node.GetRASBounds(bounds)
    lo_ras = np.array(bounds[0::2])
    hi_ras = np.array(bounds[1::2])
    a = LPS_TO_RAS @ lo_ras
    b = LPS_TO_RAS @ hi_ras
    return PhysicalBox(np.minimum(a, b), np.maximum(a, b))


def box_arguments(box: PhysicalBox) -> list[float]:
    """xmin ymin zmin xmax ymax zmax (LPS mm) for the CLI's --box."""
    return [float(v) for v in box.lower] + [float(v) for v in box.upper]


def physical_points_lps(image: sitk.Image, indices: Iterable[tuple[int, int, int]]) -> np.ndarray:
    """LPS positions of (i, j, k) voxel indices: what tests compare across representations."""
    return np.array([image.TransformIndexToPhysicalPoint([int(v) for v in idx]) for idx in indices])
