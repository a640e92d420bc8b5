"""The six glands: the one table of label values, names, colours and codes.

Every other module asks this table; nothing else hard-codes a label value. Label values
follow design.md: 1/2 lacrimal R/L, 3/4 parotid R/L, 5/6 submandibular R/L. "Right" is the
patient's right, which in LPS physical space is the smaller x.
"""

from __future__ import annotations

from dataclasses import dataclass

ANATOMIC_CATEGORY = ("SCT", "123037004", "Anatomical Structure")
RIGHT = ("SCT", "24028007", "Right")
LEFT = ("SCT", "7771000", "Left")


@dataclass(frozen=True)
class Gland:
    label: int
    key: str  # machine name, e.g. "parotid_r"
    name: str  # display name, e.g. "right parotid gland"
    organ: str  # "lacrimal" | "parotid" | "submandibular"
    side: str  # "R" | "L"
    structure: tuple[str, str, str]  # (scheme, code, meaning)
    tg263: str
    color: tuple[float, float, float]  # RGB in 0..1

    @property
    def laterality(self) -> tuple[str, str, str]:
        return RIGHT if self.side == "R" else LEFT

    @property
    def color_255(self) -> tuple[int, int, int]:
        return tuple(int(round(c * 255)) for c in self.color)  # type: ignore[return-value]


_LACRIMAL = ("SCT", "13561001", "Lacrimal gland structure")
_PAROTID = ("SCT", "45289007", "Parotid gland structure")
_SUBMANDIBULAR = ("SCT", "54019009", "Submandibular gland structure")

# Colours: two hues per organ (right lighter, left deeper), distinct from Slicer's
# default bone/tissue colours so corrections stay visible on a CT.
GLANDS: tuple[Gland, ...] = (
    Gland(1, "lacrimal_r", "right lacrimal gland", "lacrimal", "R", _LACRIMAL, "Glnd_Lacrimal_R", (0.37, 0.85, 0.95)),
    Gland(2, "lacrimal_l", "left lacrimal gland", "lacrimal", "L", _LACRIMAL, "Glnd_Lacrimal_L", (0.12, 0.47, 0.85)),
    Gland(3, "parotid_r", "right parotid gland", "parotid", "R", _PAROTID, "Parotid_R", (1.00, 0.80, 0.25)),
    Gland(4, "parotid_l", "left parotid gland", "parotid", "L", _PAROTID, "Parotid_L", (0.93, 0.45, 0.10)),
    Gland(5, "submandibular_r", "right submandibular gland", "submandibular", "R", _SUBMANDIBULAR, "Glnd_Submand_R", (0.60, 0.90, 0.35)),
    Gland(6, "submandibular_l", "left submandibular gland", "submandibular", "L", _SUBMANDIBULAR, "Glnd_Submand_L", (0.85, 0.25, 0.60)),
)

BY_LABEL: dict[int, Gland] = {g.label: g for g in GLANDS}
BY_KEY: dict[str, Gland] = {g.key: g for g in GLANDS}
LABELS: tuple[int, ...] = tuple(g.label for g in GLANDS)
# nnU-Net's "ignore" label (the highest value): voxels a training case does not supervise,
# e.g. everything but the parotids' surroundings in a CT where only the parotids are outlined
IGNORE_LABEL: int = max(LABELS) + 1


def gland(organ: str, side: str) -> Gland:
    for g in GLANDS:
        if g.organ == organ and g.side == side:
            return g
    raise KeyError(f"no gland {organ!r} on side {side!r}")


def partner(g: Gland) -> Gland:
    """The same organ on the other side, for laterality checks."""
    return gland(g.organ, "L" if g.side == "R" else "R")
