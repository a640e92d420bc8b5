"""Render Resources/Screenshots/panel.png: the GlandSeg panel laid out from GlandSeg.ui.

Outside Slicer there are no Slicer/CTK widgets, so the .ui is loaded with PySide6 after
swapping each Slicer widget for its plain Qt look-alike (node combo box -> QComboBox,
collapsible button -> group box, MRML table view -> QTableWidget). The layout, labels,
tooltips and order are the real .ui's; the contents shown are those after a run on the
phantom, with statistics computed by GlandSegLib.segmentation.stats from the phantom's true labels,
and the review table from a real run's report.json (`make demo` writes out/demo/report.json).

    .venv/bin/pip install PySide6-Essentials    # only for this script
    QT_QPA_PLATFORM=offscreen .venv/bin/python GlandSeg/Utilities/render_panel.py [out/demo/report.json]
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt  # noqa: E402
from PySide6.QtGui import QFont, QPixmap  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import (QApplication, QComboBox, QGroupBox, QHBoxLayout, QLabel, QTableWidget,  # noqa: E402
                               QTableWidgetItem, QVBoxLayout, QWidget)

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
UI = REPO / "GlandSeg" / "Resources" / "UI" / "GlandSeg.ui"
ICON = REPO / "GlandSeg" / "Resources" / "Icons" / "GlandSeg.png"
OUT = REPO / "Resources" / "Screenshots" / "panel.png"

SLICER_ONLY_PROPERTIES = {"nodeTypes", "showChildNodeTypes", "noneEnabled", "addEnabled", "removeEnabled",
                          "renameEnabled", "noneDisplay", "collapsed"}


def plain_qt_ui(path: Path) -> tuple[bytes, dict[str, bool]]:
    """The .ui with Slicer widgets replaced by Qt ones; also which sections start collapsed."""
    tree = ET.parse(path)
    root = tree.getroot()
    collapsed: dict[str, bool] = {}
    for w in root.iter("widget"):
        cls = w.get("class")
        if cls == "qMRMLWidget":
            w.set("class", "QWidget")
        elif cls == "qMRMLNodeComboBox":
            w.set("class", "QComboBox")
        elif cls == "qMRMLTableView":
            w.set("class", "QTableWidget")
        elif cls == "ctkCollapsibleButton":
            w.set("class", "QGroupBox")
            p = w.find("property[@name='collapsed']/bool")
            collapsed[w.get("name")] = p is not None and p.text == "true"
            for prop in w.findall("property[@name='text']"):
                prop.set("name", "title")
        for prop in list(w.findall("property")):
            if prop.get("name") in SLICER_ONLY_PROPERTIES:
                w.remove(prop)
    for tag in ("customwidgets", "connections"):
        for el in root.findall(tag):
            root.remove(el)
    return ET.tostring(root, encoding="utf-8"), collapsed


def load(data: bytes) -> QWidget:
    buf = QBuffer()
    buf.setData(QByteArray(data))
    buf.open(QIODevice.ReadOnly)
    widget = QUiLoader().load(buf)
    if widget is None:
        raise RuntimeError("QUiLoader could not load the converted .ui")
    return widget


def phantom_rows() -> list[list[str]]:
    from GlandSegLib.glands import GLANDS
    from GlandSegLib.defaultmodel.phantom import make_phantom
    from GlandSegLib.segmentation.stats import gland_statistics

    ph = make_phantom(0)
    stats = gland_statistics(ph.labels, ph.ct)
    return [[g.name, f"{stats[g.label]['volume_ml']:.2f}", f"{stats[g.label].get('hu_mean', float('nan')):.1f}",
             f"{stats[g.label].get('hu_sd', float('nan')):.1f}", f"{stats[g.label].get('hu_median', float('nan')):.1f}"]
            for g in GLANDS]


def review_table_rows(report_path: Path) -> tuple[list[str], list[list[str]]]:
    """The Review table as the module fills it (GlandSegSlicerLib.review) from a run's report."""
    import json

    sys.path.insert(0, str(REPO / "GlandSeg"))
    from GlandSegSlicerLib.review import REVIEW_COLUMNS, review_rows

    rows = review_rows(json.loads(report_path.read_text()))
    header = [title + (f"\n[{unit}]" if unit else "") for _k, title, unit in REVIEW_COLUMNS]
    cells = [["" if r[k] is None else (f"{r[k]:.2f}" if isinstance(r[k], float) else str(r[k])) for k, _t, _u in REVIEW_COLUMNS]
             for r in rows]
    return header, cells


def fill_table(table: QTableWidget, header: list[str], rows: list[list[str]]) -> None:
    table.setColumnCount(len(header))
    table.setRowCount(len(rows))
    table.setHorizontalHeaderLabels(header)
    table.verticalHeader().hide()
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            item = QTableWidgetItem(value)
            item.setTextAlignment((Qt.AlignLeft if c == 0 else Qt.AlignRight) | Qt.AlignVCenter)
            table.setItem(r, c, item)
    table.resizeColumnsToContents()
    table.horizontalHeader().setStretchLastSection(True)
    table.resizeRowsToContents()
    table.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    height = table.horizontalHeader().sizeHint().height() + sum(table.rowHeight(r) for r in range(len(rows))) + 4
    table.setMinimumHeight(height)
    table.setMaximumHeight(height)


def fill(panel: QWidget, collapsed: dict[str, bool], report_path: Path | None = None) -> None:
    def child(name, cls=QWidget):
        w = panel.findChild(cls, name)
        assert w is not None, name
        return w

    for name, text in (("inputVolumeSelector", "phantom_head_ct"), ("uptakeVolumeSelector", "None"),
                       ("headBoxSelector", "GlandSeg head box"), ("outputSegmentationSelector", "phantom_head_ct glands")):
        child(name, QComboBox).addItem(text)
    child("modelComboBox", QComboBox).addItem("glandseg-v8 (shipped)")
    child("detectedDeviceLabel", QLabel).setText("no CUDA GPU visible: CPU only")
    child("applyButton").setEnabled(True)
    child("recomputeStatisticsButton").setEnabled(True)
    child("progressBar").setValue(100)
    child("statusLabel", QLabel).setText("Done: 'phantom_head_ct glands', 6 of 6 glands found.")
    child("warningsLabel", QLabel).hide()
    fill_table(child("statisticsTableView", QTableWidget),
               ["Gland", "Volume\n[ml]", "HU mean\n[HU]", "HU SD\n[HU]", "HU median\n[HU]"], phantom_rows())
    if report_path is not None and report_path.is_file():
        fill_table(child("reviewTableView", QTableWidget), *review_table_rows(report_path))
        child("measureCorrectionsButton").setEnabled(True)
    child("correctionsTableView", QTableWidget).hide()
    for name, is_collapsed in collapsed.items():
        box = child(name, QGroupBox)
        box.setTitle(("\u25b8 " if is_collapsed else "\u25be ") + box.title())
        if is_collapsed:
            for w in box.findChildren(QWidget):
                w.hide()
            box.setMaximumHeight(22)


def framed(panel: QWidget) -> QWidget:
    """The module panel as Slicer shows it: module title with icon, Help section, the panel."""
    frame = QWidget()
    frame.setObjectName("frame")
    frame.setStyleSheet("#frame { background: white; }")
    v = QVBoxLayout(frame)
    v.setContentsMargins(8, 8, 8, 8)
    title = QHBoxLayout()
    icon = QLabel()
    icon.setPixmap(QPixmap(str(ICON)).scaled(32, 32, Qt.KeepAspectRatio, Qt.SmoothTransformation))
    name = QLabel("GlandSeg")
    f = name.font()
    f.setPointSize(f.pointSize() + 4)
    f.setBold(True)
    name.setFont(f)
    title.addWidget(icon)
    title.addWidget(name)
    title.addStretch(1)
    v.addLayout(title)
    help_box = QGroupBox("\u25b8 Help && Acknowledgement")
    help_box.setMaximumHeight(22)
    v.addWidget(help_box)
    v.addWidget(panel)
    return frame


def main() -> None:
    app = QApplication.instance() or QApplication([])
    app.setStyle("Fusion")
    app.setFont(QFont("DejaVu Sans", 9))
    data, collapsed = plain_qt_ui(UI)
    panel = load(data)
    fill(panel, collapsed, Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "out" / "demo" / "report.json")
    frame = framed(panel)
    frame.adjustSize()
    frame.resize(max(frame.minimumSizeHint().width(), 460), frame.minimumSizeHint().height())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    if not frame.grab().save(str(OUT)):
        raise RuntimeError(f"could not write {OUT}")
    print(f"wrote {OUT} ({frame.width()}x{frame.height()})")


if __name__ == "__main__":
    main()
