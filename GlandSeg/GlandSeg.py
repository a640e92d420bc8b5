"""GlandSeg: segment the lacrimal, parotid and submandibular glands on CT in 3D Slicer.

The module is a thin adapter. All thinking happens in GlandSegLib (plain Python, no
Slicer), run as the `glandseg` command line in a separate process so the GUI never waits
on nnU-Net and Cancel can stop the work at any moment. GlandSegSlicerLib.nodes converts
between MRML nodes and GlandSegLib's SimpleITK images; GlandSegSlicerLib.process builds,
runs, reads and stops the command.

Python console:

    import GlandSeg
    logic = GlandSeg.GlandSegLogic()
    seg = logic.segment(slicer.util.getNode("CT"), device="auto")
    table = logic.statisticsTableNode(seg)
"""

from __future__ import annotations

import logging
import sys

import ctk  # noqa: F401  (the .ui uses ctk widgets; importing registers them for PythonQt)
import qt
import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from GlandSegSlicerLib import compat

# Checked before anything else is imported: this file and compat.py parse on the Python of
# older Slicers (3.9), the rest of the module needs Slicer 5.10 (Python 3.12) or later.
UNSUPPORTED = compat.unsupported_reason(compat.slicer_version(slicer.app), sys.version_info)

if UNSUPPORTED is None:
    from GlandSegSlicerLib import process, runner

    process.ensure_lib_on_path()

    from GlandSegSlicerLib import nodes, review
    from GlandSegSlicerLib.process import GlandSegRunError  # noqa: F401  (for console users: GlandSeg.GlandSegRunError)
    from GlandSegSlicerLib.logic import (REF_CT, REF_TABLE, REF_UPTAKE, GlandSegLogic, GlandSegRun,  # noqa: F401
                                         loadTerminology, registerSampleData)
    from GlandSegSlicerLib.selftest import GlandSegTest  # noqa: F401  (Slicer finds the module's test here)
    from GlandSegLib.glands import GLANDS

DEVICE_ITEMS = ("auto", "gpu", "cpu")  # deviceComboBox order -> process.cli_device
POLL_MS = 100  # how often the panel collects the running command's output


# ======================================================================================
# Module
# ======================================================================================

class GlandSeg(ScriptedLoadableModule):
    """Module metadata, and the startup hook that registers GlandSeg's terminology."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "GlandSeg"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = ["Segmentations", "Terminologies", "Markups", "Tables"]
        self.parent.contributors = ["GlandSeg developers"]
        self.parent.helpText = """
Segments six glands on a CT: right and left lacrimal, parotid and submandibular glands,
for organ-at-risk dosimetry in PSMA radioligand therapy.<br>
Choose the CT (and optionally a PET/SPECT image for uptake statistics), press
<b>Segment glands</b>, then check and correct the segments in the Segment Editor and
press <b>Recompute statistics</b>. The <b>Review</b> table lists the glands least confident
first, with a status each (found, cut by the field of view, outside it, not found,
rejected); <b>Measure my corrections</b> compares your corrected segments with GlandSeg's
original (Dice, added path length) and says how long you edited. <b>Show head box</b> shows the region GlandSeg searches;
adjust it when the automatic box misses a gland.<br>
Segments carry SNOMED CT terminology (category Anatomical Structure; lacrimal 13561001,
parotid 45289007, submandibular 54019009; laterality Right 24028007 / Left 7771000), so
DICOM SEG and RTSTRUCT exports carry standard codes.<br>
Results are for research use and must be reviewed by a qualified person.
"""
        self.parent.acknowledgementText = """
GlandSeg uses <a href="https://github.com/MIC-DKFZ/nnUNet">nnU-Net v2</a> (Isensee et al.,
Nature Methods 18:203, 2021) and 3D Slicer's PyTorch extension.<br>
Data used in developing and testing GlandSeg: expert gland outlines of the TCIA head-and-neck
test and validation set (Nikolov et al. 2018, arXiv:1809.04430, CC BY 4.0; CTs from
TCIA Head-Neck Cetuximab, Bosch et al. 2015, and TCGA-HNSC, Zuley et al. 2016; The Cancer
Imaging Archive, Clark et al., J Digit Imaging 26:1045, 2013) and the OpenKBP head-and-neck
CTs (Babier et al., Med Phys 48:5549, 2021). Each model's card (model_card.md in its
folder) states the data that model was trained on; the shipped model (glandseg-v8) learned
from synthetic CTs around those expert outlines, with randomised tissue and gland
intensities (the lacrimal glands in a second stage on a fine grid beside each orbit),
from OpenKBP's parotids and from its predecessor's plausible submandibular glands on
OpenKBP training CTs, with per-gland weights fitted on OpenKBP training CTs; its model
card gives its accuracy on real CT (its submandibular glands on real CT have the experts'
volume but not always their outline: review them first).
"""
        if UNSUPPORTED is not None:
            self.parent.helpText = UNSUPPORTED
            slicer.app.connect("startupCompleted()", lambda: logging.error(f"GlandSeg: {UNSUPPORTED}"))
            return
        slicer.app.connect("startupCompleted()", _onStartupCompleted)
        # Slicer closing: nothing GlandSeg started may outlive it (runner also stops all at exit)
        slicer.app.connect("aboutToQuit()", runner.stop_all)


def _onStartupCompleted() -> None:
    loadTerminology()
    registerSampleData()


# ======================================================================================
# Widget
# ======================================================================================

class GlandSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads the widgets, runs the CLI in a child process polled by a QTimer, shows what it says."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: GlandSegLogic | None = None
        self._job: process.CliJob | None = None  # the running command (segment or install-model)
        self._onJobFinished = None
        self._timer = None
        self._run: GlandSegRun | None = None
        self._targetSegmentationID: str | None = None
        self._modelsBefore: set[str] = set()
        self._trustModelOnce = False  # set only after the user confirmed an untrusted model
        self._runWarnings: list[str] = []

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        if UNSUPPORTED is not None:
            label = qt.QLabel(UNSUPPORTED)
            label.wordWrap = True
            self.layout.addWidget(label)
            self.layout.addStretch(1)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/GlandSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = GlandSegLogic()
        loadTerminology()  # also when the module is loaded after startup (module path added, reload)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)

        self.ui.inputVolumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self.onOutputChanged)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.showHeadBoxButton.connect("clicked(bool)", self.onShowHeadBox)
        self.ui.recomputeStatisticsButton.connect("clicked(bool)", self.onRecomputeStatistics)
        self.ui.measureCorrectionsButton.connect("clicked(bool)", self.onMeasureCorrections)
        self.ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        self.ui.refreshModelsButton.connect("clicked(bool)", self.populateModels)

        menu = qt.QMenu(self.ui.installModelButton)
        fromZip = menu.addAction("From exported .zip file...")
        fromZip.connect("triggered()", lambda: self.onInstallModel(fromFolder=False))
        fromFolder = menu.addAction("From nnU-Net model folder...")
        fromFolder.connect("triggered()", lambda: self.onInstallModel(fromFolder=True))
        self.ui.installModelButton.setMenu(menu)

        self.ui.warningsLabel.hide()
        self.ui.progressBar.setValue(0)
        self.populateModels()
        self.updateButtons()
        qt.QTimer.singleShot(0, self.updateDetectedDevice)  # importing torch takes seconds: after the panel shows

    def cleanup(self) -> None:
        """Module unloaded or reloaded, application closing: end the running command and
        everything it started now (not after a timer that would never fire), drop observers."""
        if self._timer is not None:
            self._timer.stop()
        job, self._job = self._job, None
        if job is not None:
            job.stop(grace_s=2.0)
        if self._run is not None:
            self._run.cleanup()
            self._run = None
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        if self._job is not None:
            self.cancel()

    # ------------------------------------------------------------------ panel state

    def log(self, text: str) -> None:
        self.ui.logTextEdit.appendPlainText(text)

    def setStatus(self, text: str) -> None:
        self.ui.statusLabel.setText(text)
        slicer.util.showStatusMessage(f"GlandSeg: {text}", 5000)

    def showWarnings(self, warnings: list[str]) -> None:
        if warnings:
            self.ui.warningsLabel.setText("Check: " + "\n".join(f"- {w}" for w in warnings))
            self.ui.warningsLabel.show()
        else:
            self.ui.warningsLabel.setText("")
            self.ui.warningsLabel.hide()

    def updateButtons(self, *_args) -> None:
        if self.logic is None:
            return
        running = self._job is not None
        hasInput = self.ui.inputVolumeSelector.currentNode() is not None
        self.ui.applyButton.enabled = running or hasInput
        self.ui.applyButton.text = "Cancel" if running else "Segment glands"
        self.ui.applyButton.toolTip = ("Stop the running command and everything it started." if running
                                       else "Segment the six glands in a separate process.")
        for w in (self.ui.inputVolumeSelector, self.ui.uptakeVolumeSelector, self.ui.modelComboBox,
                  self.ui.installModelButton, self.ui.deviceComboBox, self.ui.headBoxSelector,
                  self.ui.showHeadBoxButton, self.ui.outputSegmentationSelector, self.ui.recomputeStatisticsButton,
                  self.ui.installDependenciesButton, self.ui.refreshModelsButton, self.ui.uncertaintyCheckBox):
            w.enabled = not running
        self.ui.showHeadBoxButton.enabled = not running and hasInput
        seg = self.ui.outputSegmentationSelector.currentNode()
        self.ui.recomputeStatisticsButton.enabled = not running and seg is not None and (
            seg.GetNodeReference(REF_CT) is not None or hasInput)
        self.ui.measureCorrectionsButton.enabled = not running and review.has_original(seg)

    def onOutputChanged(self, node) -> None:
        ref = (lambda role: node.GetNodeReference(role)) if node is not None else (lambda role: None)
        self.ui.statisticsTableView.setMRMLTableNode(ref(REF_TABLE))
        self.ui.reviewTableView.setMRMLTableNode(ref(review.REF_REVIEW_TABLE))
        self.ui.correctionsTableView.setMRMLTableNode(ref(review.REF_CORRECTIONS_TABLE))
        self.ui.editTimeLabel.setText("")
        self.updateButtons()

    def populateModels(self) -> None:
        previous = self.ui.modelComboBox.currentData
        self.ui.modelComboBox.clear()
        try:
            models = self.logic.models()
        except Exception as exc:
            models = []
            self.log(f"Could not list models: {exc}")
        for m in models:
            self.ui.modelComboBox.addItem(m.label, m.name)
            self.ui.modelComboBox.setItemData(self.ui.modelComboBox.count - 1, str(m.folder), qt.Qt.ToolTipRole)
        if not models:
            self.ui.modelComboBox.addItem("(no model found: install one)", "")
        index = self.ui.modelComboBox.findData(previous) if previous else -1
        self.ui.modelComboBox.setCurrentIndex(max(index, 0))

    def updateDetectedDevice(self) -> None:
        cuda, text = self.logic.detectDevice()
        self.ui.detectedDeviceLabel.setText(text)
        self.ui.detectedDeviceLabel.toolTip = "auto uses the GPU when one is available" if cuda else \
            "GPU needs an NVIDIA GPU and a CUDA build of PyTorch (PyTorch extension)"

    def selectedDevice(self) -> str:
        return DEVICE_ITEMS[max(self.ui.deviceComboBox.currentIndex, 0)]

    def selectedModel(self) -> str | None:
        return self.ui.modelComboBox.currentData or None

    # ------------------------------------------------------------------ actions

    def ensureDependencies(self) -> bool:
        if not self.logic.missingDependencies():
            return True
        ok = self.logic.installDependencies(askConfirmation=True)
        self.updateDetectedDevice()
        return ok

    def onInstallDependencies(self) -> None:
        missing = self.logic.missingDependencies()
        if not missing:
            slicer.util.infoDisplay("All Python packages GlandSeg needs are installed.", windowTitle="GlandSeg")
            return
        self.ensureDependencies()

    def onShowHeadBox(self) -> None:
        ct = self.ui.inputVolumeSelector.currentNode()
        if ct is None:
            return
        if any(name == "scipy" for name, _spec in self.logic.missingDependencies()) and not self.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay("GlandSeg could not locate the head.", waitCursor=True):
            roi, box = self.logic.showHeadBox(ct, self.ui.headBoxSelector.currentNode())
            self.ui.headBoxSelector.setCurrentNode(roi)
            size = " x ".join(f"{v:.0f}" for v in box.size)
            self.setStatus(f"Head box ({getattr(box, 'method', 'locator')}): {size} mm. Drag its handles to adjust; "
                           "segmentation will search inside it.")
            if not self.logic.capabilities().box:
                self.log("Note: this GlandSeg command line has no --box option yet; the box is shown for review only.")

    def onInstallModel(self, fromFolder: bool) -> None:
        if not self.logic.capabilities().install_model:
            from GlandSegLib.models.registry import glandseg_home

            slicer.util.errorDisplay(
                "This version of GlandSeg has no 'glandseg install-model' command, so models cannot be installed "
                f"from the panel yet.\n\nCopy an exported model folder into\n{glandseg_home() / 'models'}\n"
                "and press 'Refresh model list' (Advanced section).", windowTitle="GlandSeg: install model")
            return
        if fromFolder:
            path = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "GlandSeg: nnU-Net model folder")
        else:
            path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), "GlandSeg: model archive", "",
                                                  "Model archive (*.zip)")
        if not path:
            return
        self._modelsBefore = {m.name for m in self.logic.models()}
        self.ui.logTextEdit.clear()
        self.log(f"glandseg install-model {path}")
        self.ui.progressBar.setRange(0, 0)  # busy: install-model reports no fractions
        self.startJob(self.logic.installModelJob(path, onLog=self.log), self.onInstallModelFinished,
                      "Installing the model (checking and copying its files)...")

    def onInstallModelFinished(self, job) -> None:
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.setValue(0)
        error = job.error()
        if job.cancelled and error is not None:
            self.setStatus("Model installation cancelled.")
            return
        if error is not None:
            self.setStatus(f"Model installation failed: {error}")
            slicer.util.errorDisplay(f"Model installation failed: {error}", windowTitle="GlandSeg", detailedText=error.log)
            return
        self.populateModels()
        new = [m.name for m in self.logic.models() if m.name not in self._modelsBefore]
        if new:
            self.ui.modelComboBox.setCurrentIndex(self.ui.modelComboBox.findData(new[0]))
        self.ui.progressBar.setValue(100)
        self.setStatus(f"Installed model {new[0]}." if new else "Model installed.")

    def onRecomputeStatistics(self) -> None:
        seg = self.ui.outputSegmentationSelector.currentNode()
        if seg is None:
            return
        ct = seg.GetNodeReference(REF_CT) or self.ui.inputVolumeSelector.currentNode()
        uptake = self.ui.uptakeVolumeSelector.currentNode()
        with slicer.util.tryWithErrorDisplay("GlandSeg could not compute the statistics.", waitCursor=True):
            table = self.logic.updateStatistics(seg, ct, uptake)
            seg.SetNodeReferenceID(REF_UPTAKE, uptake.GetID() if uptake else None)
            self.ui.statisticsTableView.setMRMLTableNode(table)
            self.setStatus(f"Statistics of '{seg.GetName()}' recomputed.")

    def onMeasureCorrections(self) -> None:
        seg = self.ui.outputSegmentationSelector.currentNode()
        if seg is None:
            return
        csvPath = qt.QFileDialog.getSaveFileName(self.parent, "Save the corrections as CSV (Cancel: table only)",
                                                 f"{seg.GetName()} corrections.csv", "CSV files (*.csv)")
        with slicer.util.tryWithErrorDisplay("GlandSeg could not measure the corrections.", waitCursor=True):
            table = self.logic.measureCorrections(seg, csvPath or None)
            self.ui.correctionsTableView.setMRMLTableNode(table)
            seconds = float(table.GetAttribute("GlandSeg.editSeconds") or 0)
            edits = seg.GetAttribute(review.ATTR_EDITS) or "0"
            self.ui.editTimeLabel.setText(f"Edited for {seconds / 60:.1f} min ({edits} edits; pauses over "
                                          f"{review.IDLE_GAP_S:.0f} s not counted)." + (f" Saved {csvPath}." if csvPath else ""))
            self.setStatus(f"Corrections of '{seg.GetName()}' measured.")

    def onApplyButton(self) -> None:
        if self._job is not None:
            self.cancel()
            return
        ct = self.ui.inputVolumeSelector.currentNode()
        if ct is None:
            return
        if not self.ensureDependencies():
            self.setStatus("Dependencies missing: see Advanced > Check / install dependencies.")
            return
        seg = self.ui.outputSegmentationSelector.currentNode()
        if seg is not None and seg.GetSegmentation().GetNumberOfSegments() > 0:
            if not slicer.util.confirmOkCancelDisplay(
                    f"Replace the {seg.GetSegmentation().GetNumberOfSegments()} segments of '{seg.GetName()}' "
                    "with the GlandSeg result?\n\nChoose 'Create new segmentation' as output to keep them.",
                    windowTitle="GlandSeg: replace segmentation"):
                return
        roi = self.ui.headBoxSelector.currentNode()
        if roi is not None and not self.logic.capabilities().box:
            if not slicer.util.confirmOkCancelDisplay(
                    "This GlandSeg command line cannot take a head box yet (no --box option). "
                    "Continue with automatic head location?", windowTitle="GlandSeg"):
                return
            roi = None
        try:
            with slicer.util.WaitCursor():
                run = self.logic.prepareRun(ct, model=self.selectedModel(), device=self.selectedDevice(),
                                            uptakeNode=self.ui.uptakeVolumeSelector.currentNode(), roiNode=roi,
                                            trustModel=self._trustModelOnce,
                                            uncertainty=self.ui.uncertaintyCheckBox.checked)
            self._trustModelOnce = False
        except Exception as exc:
            slicer.util.errorDisplay(f"GlandSeg could not start: {exc}", windowTitle="GlandSeg")
            return
        self.startProcess(run, seg)

    # ------------------------------------------------------------------ the running command

    def startJob(self, job, onFinished, status: str) -> bool:
        """Start a command and poll it from a QTimer: its output reaches the panel on the main
        thread, and Slicer stays responsive. `onFinished(job)` runs once it has ended."""
        self._job = job
        self._onJobFinished = onFinished
        self.updateButtons()
        self.setStatus(status)
        try:
            job.start()
        except OSError as exc:
            self._job = None
            self.updateButtons()
            self.setStatus(f"Could not start Python ({process.python_executable()}): {exc}")
            slicer.util.errorDisplay(f"GlandSeg could not start {process.python_executable()}: {exc}", windowTitle="GlandSeg")
            return False
        if self._timer is None:
            self._timer = qt.QTimer()
            self._timer.setInterval(POLL_MS)
            self._timer.connect("timeout()", self.pollJob)
        self._timer.start()
        return True

    def pollJob(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        try:
            if not job.poll():
                return
        except Exception:  # a failing output handler must not stop the polling of the job
            logging.exception("GlandSeg: handling the command's output failed")
            return
        self._timer.stop()
        self._job = None
        onFinished, self._onJobFinished = self._onJobFinished, None
        try:
            onFinished(job)
        finally:
            self.updateButtons()

    def startProcess(self, run: GlandSegRun, targetSegmentation=None) -> None:
        self._run = run
        self._targetSegmentationID = targetSegmentation.GetID() if targetSegmentation is not None else None
        self._runWarnings = []
        self.showWarnings([])
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.setValue(0)
        self.ui.logTextEdit.clear()
        self.log("glandseg " + " ".join(run.args))
        job = process.CliJob(run.args, on_event=self.handleEvent, on_log=self.log)
        if not self.startJob(job, self.finishRun, "Starting GlandSeg..."):
            run.cleanup()
            self._run = None

    def handleEvent(self, event: process.Event) -> None:
        if event.kind == "progress":
            self.ui.progressBar.setValue(int(round(100 * (event.fraction or 0.0))))
            self.ui.statusLabel.setText(f"{event.stage}: {event.message}" if event.stage else event.message)
            self.log(f"[{event.stage}] {event.message}")
        elif event.kind == "warning":
            self._runWarnings.append(event.message)
            self.log(f"warning: {event.message}")
            self.showWarnings(self._runWarnings)
        else:
            self.log(event.message)

    def cancel(self) -> None:
        """Stop the command and every process it started: now on Windows, politely first on
        macOS and Linux (the CLI exits through its handler), forced after 10 s."""
        if self._job is None:
            return
        self.setStatus("Cancelling...")
        self._job.cancel(grace_s=10.0)

    def finishRun(self, job) -> None:
        """The segmentation ended: load results on success; otherwise leave the scene as it was."""
        run, self._run = self._run, None
        target = slicer.mrmlScene.GetNodeByID(self._targetSegmentationID) if self._targetSegmentationID else None
        try:
            if run is None:
                return
            error = job.error()
            if job.cancelled and error is not None:
                self.ui.progressBar.setValue(0)
                self.setStatus("Cancelled. The scene was not changed.")
                return
            if error is not None and process.needs_trust(error.exit_code, job.result.stderr):
                if slicer.util.confirmYesNoDisplay(
                        f"{error}\n\nA model checkpoint is a program: loading this one runs code it carries. "
                        "Run it only if you trust where the model came from. Run it anyway?", windowTitle="GlandSeg: untrusted model"):
                    self._trustModelOnce = True
                    qt.QTimer.singleShot(0, self.onApplyButton)
                else:
                    self.setStatus("Stopped: the model was not trusted. The scene was not changed.")
                return
            if error is not None:
                self.setStatus(f"Failed: {error}")
                slicer.util.errorDisplay(f"GlandSeg failed: {error}", windowTitle="GlandSeg",
                                         detailedText=self.ui.logTextEdit.toPlainText())
                return
            try:
                with slicer.util.WaitCursor():
                    seg = self.logic.loadResults(run, target)
            except Exception as exc:
                logging.exception("GlandSeg: loading results failed")
                self.setStatus(f"Failed to load the results: {exc}")
                slicer.util.errorDisplay(f"GlandSeg finished but its results could not be loaded: {exc}", windowTitle="GlandSeg")
                return
            self.onSegmentationDone(seg)
        finally:
            if run is not None:
                run.cleanup()

    def onSegmentationDone(self, seg) -> None:
        ct = seg.GetNodeReference(REF_CT)
        self.ui.progressBar.setValue(100)
        self.ui.outputSegmentationSelector.setCurrentNode(seg)
        self.ui.statisticsTableView.setMRMLTableNode(self.logic.statisticsTableNode(seg))
        self.ui.reviewTableView.setMRMLTableNode(self.logic.reviewTableNode(seg))
        self.ui.correctionsTableView.setMRMLTableNode(None)
        self.ui.editTimeLabel.setText("")
        warnings = self.logic.lastWarnings
        self.showWarnings(warnings)
        table = self.logic.statisticsTableNode(seg)
        found = sum(1 for row in nodes.table_rows(table) if row.get("Volume", 0.0) > 0) if table else 0
        self.setStatus(f"Done: '{seg.GetName()}', {found} of {len(GLANDS)} glands found"
                       + (f", {len(warnings)} warning(s) to check." if warnings else "."))
        if ct is not None:
            slicer.util.setSliceViewerLayers(background=ct, fit=False)
        if self.logic.lastUncertaintyNode is not None:
            slicer.util.setSliceViewerLayers(foreground=self.logic.lastUncertaintyNode, foregroundOpacity=0.5, fit=False)
        swaps = [w for w in warnings if "swap" in w]
        if swaps:
            slicer.util.warningDisplay("GlandSeg found possible left/right swaps:\n\n" + "\n".join(swaps)
                                       + "\n\nCheck these glands before using the segmentation.", windowTitle="GlandSeg")
        if self.ui.openSegmentEditorCheckBox.checked:
            self.openSegmentEditor(seg, ct)

    @staticmethod
    def openSegmentEditor(seg, ct) -> None:
        slicer.util.selectModule("SegmentEditor")
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        editor.setSegmentationNode(seg)
        if ct is not None:
            if hasattr(editor, "setSourceVolumeNode"):
                editor.setSourceVolumeNode(ct)
            else:  # Slicer < 5.4
                editor.setMasterVolumeNode(ct)
