"""Reference anatomy: what GlandSeg finds in a CT besides the glands, and where the experts'
glands lie relative to it (expected_anatomy.json).

Why: whether a gland is plausible, cut by the field of view or not in the scan at all can
only be judged against anatomy. Two kinds of reference are used:

* the cranium, from the fast head locator's own test (a closed bony ring around brain-like
  tissue in axial slices, GlandSegLib.segmentation.headbox): the intracranial region
  (no gland lies inside it), its midline, and - where the scan shows the dome of the skull -
  the top of the brain and its front;
* the glands already accepted (their centroids, tops and bottoms).

Where the experts' glands lie relative to those references (mean and SD of each offset over
the 70 TCIA outline sets, volumes, sizes, the CT numbers of real parotids) is measured by
`python -m GlandSegLib.defaultmodel.anatomy_stats` into expected_anatomy.json, shipped
beside this module. Nothing here is a millimetre chosen for one scan; the two anatomical
constants below say where they come from.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from GlandSegLib.errors import ModelError
from GlandSegLib.segmentation import headbox
from GlandSegLib.segmentation.postprocess import largest_component

EXPECTED_FILE = Path(__file__).with_name("expected_anatomy.json")
# Above the brain's top lie CSF, the skull and the scalp: under 20 mm together in adults;
# the locator misses the dome's last few mm (its slices must enclose >= 20 cm2) and works
# on 3-4 mm slices. A body reaching further above the highest cranial slice means the
# cranium found is not the dome (a scan cut through the head, or a ring found lower down).
VERTEX_COVER_MM = 30.0


@dataclass(frozen=True)
class Offset:
    """One measured relation: mean and SD (mm or ml) over n expert outline sets."""

    mean: float
    sd: float
    n: int


class ExpectedAnatomy:
    """expected_anatomy.json, read once: volumes, sizes and offsets per gland key."""

    def __init__(self, data: dict):
        self.data = data
        self.volumes: dict[str, dict] = data["volumes_ml"]
        self._offsets: dict[str, dict] = data["offsets_mm"]
        self._sizes: dict[str, dict] = data["size_mm"]
        hu = data["parotid_median_hu"]
        # a gland's median CT number further than 3 SD beyond every real parotid's is not gland tissue
        self.tissue_hu = (hu["min"] - 3 * hu["sd"], hu["max"] + 3 * hu["sd"])

    @classmethod
    def load(cls, path: str | Path | None = None) -> "ExpectedAnatomy":
        return _load(str(path or EXPECTED_FILE))

    def offsets(self, key: str, quantity: str) -> dict[str, Offset]:
        """reference feature ("brain.top", "parotid_l.centroid_z", ...) -> offset of the
        gland's quantity ("centroid_z", "top", ...) from it."""
        return {ref: Offset(v["mean"], v["sd"], v["n"]) for ref, v in self._offsets.get(key, {}).get(quantity, {}).items()}

    def size(self, key: str, axis: str) -> Offset | None:
        s = self._sizes.get(key, {}).get(axis)
        return Offset(s["mean"], s["sd"], s["n"]) if s else None


@functools.lru_cache(maxsize=2)
def _load(path: str) -> ExpectedAnatomy:
    try:
        return ExpectedAnatomy(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"GlandSeg's expected anatomy ({path}) is missing or damaged ({exc}); reinstall GlandSeg "
                         "or regenerate it with python -m GlandSegLib.defaultmodel.anatomy_stats") from None


@dataclass
class Cranium:
    """The intracranial region the locator sees, and the references it gives.

    mask: uint8 on a coarse identity-direction grid (1 = inside the skull), None when no
    cranium was seen. top_z, front_y: the brain's top and front (LPS mm), only where the
    scan shows the dome (else None). mid_x: the cranium's midline. slice_mm: the coarse
    slice, the resolution of these estimates.
    """

    mask: sitk.Image | None = None
    top_z: float | None = None
    front_y: float | None = None
    mid_x: float | None = None
    slice_mm: float = 0.0
    details: dict = field(default_factory=dict)
    _on_grid: tuple | None = field(default=None, repr=False, compare=False)

    def features(self) -> dict[str, tuple[str, float, float]]:
        """Usable reference features: name -> (axis, LPS mm, extra SD from the estimate).
        Only where the dome is in the scan: a cranium seen in a few slices of a real neck CT
        (a ring closing low in the skull) is not the brain the offsets were measured from."""
        out: dict[str, tuple[str, float, float]] = {}
        if self.top_z is None:
            return out
        if self.mid_x is not None:
            out["brain.mid"] = ("x", self.mid_x, self.slice_mm)
        if self.top_z is not None:
            out["brain.top"] = ("z", self.top_z, self.slice_mm)
        if self.front_y is not None:
            out["brain.front"] = ("y", self.front_y, self.slice_mm)
        return out

    def share_inside(self, mask: np.ndarray, grid: sitk.Image) -> float:
        """Share of a (z, y, x) mask on `grid` that lies inside the cranium."""
        if self.mask is None or not mask.any():
            return 0.0
        key = (grid.GetSize(), grid.GetOrigin(), grid.GetSpacing(), grid.GetDirection())
        if self._on_grid is None or self._on_grid[0] != key:  # one resampling per grid, not per gland
            img = sitk.Resample(self.mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
            self._on_grid = (key, sitk.GetArrayFromImage(img))
        return float(self._on_grid[1][mask].mean())


def find_cranium(ct: sitk.Image) -> Cranium:
    """The cranium by the head locator's own test, on its coarse canonical copy (a second or
    less on a whole-body CT: the copy is a strided view)."""
    c = headbox._canonical(ct)
    body = largest_component(c.arr > headbox.BODY_HU)
    if not body.any():
        return Cranium()
    area = body.sum(axis=(1, 2)) * c.px_cm2
    flags, regions = headbox._cranial_slices(c, body, area)
    if not regions:
        return Cranium(slice_mm=c.dz)
    mask = np.zeros(c.arr.shape, np.uint8)
    for z, region in regions.items():
        mask[z][region] = 1
    img = sitk.GetImageFromArray(mask)
    img.CopyInformation(c.image)
    zs, ys, xs = np.nonzero(mask)
    mid_x = float(c.physical(xs.mean(), 0, 0)[0])
    top = max(regions)
    sizes = {z: float(r.sum()) for z, r in regions.items()}
    body_top = int(np.nonzero(area > 0)[0].max())
    # the dome: the top cranial slice is not the scan's last, the body ends within the
    # scalp-and-skull cover above it, and the cranium narrows there (less than half its
    # widest section): only then is its top the brain's top
    dome = (top < c.arr.shape[0] - 1 and (body_top - top) * c.dz <= VERTEX_COVER_MM
            and sizes[top] < 0.5 * max(sizes.values()))
    details = {"cranial_slices": len(regions), "highest_cranial_slice_z_mm": round(float(c.physical(0, 0, top)[2]), 1),
               "dome_in_scan": bool(dome)}
    if not dome:
        return Cranium(img, mid_x=mid_x, slice_mm=c.dz, details=details)
    top_z = float(c.physical(0, 0, top + 0.5)[2])  # the upper face of the highest cranial slice
    front_y = float(c.physical(0, ys.min() - 0.5, 0)[1])
    details.update({"brain_top_z_mm": round(top_z, 1), "brain_front_y_mm": round(front_y, 1)})
    return Cranium(img, top_z=top_z, front_y=front_y, mid_x=mid_x, slice_mm=c.dz, details=details)
