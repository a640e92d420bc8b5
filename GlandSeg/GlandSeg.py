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

import importlib
import importlib.util
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import ctk  # noqa: F401  (the .ui uses ctk widgets; importing registers them for PythonQt)
import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from GlandSegSlicerLib import process

process.ensure_lib_on_path()

from GlandSegSlicerLib import nodes  # noqa: E402
from GlandSegSlicerLib.process import GlandSegRunError  # noqa: E402,F401  (for console users: GlandSeg.GlandSegRunError)
from GlandSegLib.glands import GLANDS  # noqa: E402
from GlandSegLib.io.segfile import TERMINOLOGY_CONTEXT  # noqa: E402

MODULE_DIR = Path(__file__).resolve().parent
TERMINOLOGY_FILE = MODULE_DIR / "Resources" / "GlandSeg.term.json"
SAMPLE_CT = ("sample", "phantom_head_ct.nii.gz")
DEVICE_ITEMS = ("auto", "gpu", "cpu")  # deviceComboBox order -> process.cli_device

# MRML references that tie a result to its inputs, so "Recompute statistics" knows them.
REF_CT = "GlandSeg.ct"
REF_UPTAKE = "GlandSeg.uptake"
REF_TABLE = "GlandSeg.statistics"


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
press <b>Recompute statistics</b>. <b>Show head box</b> shows the region GlandSeg searches;
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
folder) states the data that model was trained on; the shipped model (glandseg-v3) learned
from synthetic CTs around those expert outlines (the lacrimal glands in a second stage on
a fine grid beside each orbit) and from OpenKBP's parotids; its lacrimal and
submandibular glands are measured on synthetic CTs only.
"""
        slicer.app.connect("startupCompleted()", _onStartupCompleted)


def _onStartupCompleted() -> None:
    loadTerminology()
    _registerSampleData()


def loadTerminology() -> bool:
    """Make GlandSeg's terminology known to Slicer (idempotent).

    Slicer's master anatomy list lacks the lacrimal gland and has no colours for these
    glands; without this file the Segment Editor shows the segments' codes unresolved.
    """
    try:
        logic = slicer.modules.terminologies.logic()
    except AttributeError:  # Terminologies module not loaded (e.g. a minimal test launch)
        return False
    names = vtk.vtkStringArray()
    logic.GetLoadedTerminologyNames(names)
    if TERMINOLOGY_CONTEXT in [names.GetValue(i) for i in range(names.GetNumberOfValues())]:
        return True
    loaded = logic.LoadTerminologyFromFile(str(TERMINOLOGY_FILE))
    if loaded != TERMINOLOGY_CONTEXT:
        logging.warning(f"GlandSeg: could not load terminology {TERMINOLOGY_FILE} (got {loaded!r})")
        return False
    return True


def _registerSampleData() -> None:
    """Offer the bundled phantom CT in the Sample Data module, when both exist."""
    path = process.resource_path(*SAMPLE_CT)
    if path is None:
        return
    try:
        import SampleData

        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category="GlandSeg", sampleName="GlandSegPhantomHeadCT",
            thumbnailFileName=str(MODULE_DIR / "Resources" / "Icons" / "GlandSeg.png"),
            uris=path.as_uri(), fileNames=path.name, nodeNames="GlandSegPhantomHeadCT", loadFileType="VolumeFile")
    except Exception as exc:  # a convenience only: never block the module on it
        logging.info(f"GlandSeg: sample data not registered ({exc})")


# ======================================================================================
# Logic
# ======================================================================================

@dataclass
class GlandSegRun:
    """One prepared `glandseg segment` run: its files and the nodes it belongs to."""

    workdir: Path
    outdir: Path
    args: list[str]
    ctNodeID: str
    uptakeNodeID: str | None

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class GlandSegLogic(ScriptedLoadableModuleLogic):
    """Everything the panel does, callable from the Python console too.

    Nothing here touches widgets; dialogs appear only in `installDependencies` (which asks
    before installing, unless told not to).
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastReport: dict = {}
        self.lastWarnings: list[str] = []
        self._capabilities: process.Capabilities | None = None

    # ------------------------------------------------------------------ environment

    def capabilities(self) -> process.Capabilities:
        if self._capabilities is None:
            self._capabilities = process.cli_capabilities()
        return self._capabilities

    @staticmethod
    def models() -> list[process.ModelEntry]:
        return process.list_models()

    @staticmethod
    def detectDevice() -> tuple[bool, str]:
        """(CUDA usable, a sentence for the panel). Imports torch only if it is installed."""
        if importlib.util.find_spec("torch") is None:
            return False, "PyTorch not installed yet (installed on first use)"
        try:
            import torch
        except Exception as exc:  # a broken install: say so instead of failing the panel
            return False, f"PyTorch does not load: {exc}"
        if torch.cuda.is_available():
            return True, f"GPU available: {torch.cuda.get_device_name(0)}"
        return False, "no CUDA GPU visible: CPU only (minutes per scan)"

    @staticmethod
    def missingDependencies() -> list[tuple[str, str]]:
        return process.missing_requirements()

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what GlandSegLib needs into Slicer's Python; True when nothing is missing after.

        torch goes through the PyTorch extension (it picks the CUDA or CPU build that fits
        this computer); the rest through pip. nnU-Net is skipped when torch could not be
        installed, because pip would then fetch a multi-gigabyte CUDA torch on its own.
        """
        missing = self.missingDependencies()
        if not missing:
            return True
        specs = ", ".join(spec for _name, spec in missing)
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                f"GlandSeg needs these Python packages, which are not installed in Slicer yet:\n\n{specs}\n\n"
                "Install them now? This downloads up to a few gigabytes (PyTorch) and can take several minutes; "
                "Slicer may be unresponsive meanwhile.", windowTitle="GlandSeg: install dependencies"):
            return False
        installed: list[str] = []
        failed: list[str] = []
        names = [name for name, _spec in missing]
        if "torch" in names:
            try:
                import PyTorchUtils
            except ModuleNotFoundError:
                failed.append("torch: the PyTorch extension is not installed. Install 'PyTorch' from the "
                              "Extensions Manager, restart Slicer, and try again.")
            else:
                torch_spec = dict(process.REQUIREMENTS)["torch"][len("torch"):]
                try:
                    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                                          torchVersionRequirement=torch_spec)
                except Exception as exc:
                    torch = None
                    failed.append(f"torch: {exc}")
                if torch is not None:
                    installed.append(f"torch {getattr(torch, '__version__', '')}".strip())
                elif not failed:
                    failed.append("torch: installation was declined or did not complete")
        torch_ok = importlib.util.find_spec("torch") is not None
        with slicer.util.WaitCursor():
            for name, spec in missing:
                if name == "torch":
                    continue
                if name == "nnunetv2" and not torch_ok:
                    failed.append(f"{spec}: skipped because PyTorch is missing "
                                  "(pip would install a CUDA build of torch by itself)")
                    continue
                try:
                    slicer.util.pip_install(spec)
                    installed.append(spec)
                except Exception as exc:
                    failed.append(f"{spec}: {exc}")
        importlib.invalidate_caches()
        still = [spec for _n, spec in self.missingDependencies()]
        summary = ("Installed: " + (", ".join(installed) or "nothing") + ".")
        if failed or still:
            details = "\n".join(failed + ([f"Still missing: {', '.join(still)}"] if still else []))
            logging.error(f"GlandSeg dependency installation incomplete. {summary}\n{details}")
            if askConfirmation:
                slicer.util.errorDisplay(f"{summary}\nSome packages could not be installed; GlandSeg cannot run yet.",
                                         windowTitle="GlandSeg: install dependencies", detailedText=details)
            return False
        logging.info(f"GlandSeg dependencies: {summary}")
        if askConfirmation:
            slicer.util.infoDisplay(f"{summary}\nGlandSeg is ready.", windowTitle="GlandSeg: install dependencies")
        return True

    # ------------------------------------------------------------------ head box

    def showHeadBox(self, volumeNode, roiNode=None):
        """Run the fast head locator on the CT and show its box as an ROI; returns (roi, box).

        The locator needs seconds on a CPU, so it runs here in Slicer's process; the user
        can then drag the ROI, and the adjusted box goes to the command line.
        """
        from GlandSegLib.segmentation.headbox import locate_head  # scipy: imported only when asked

        box = locate_head(nodes.volume_to_sitk(volumeNode))
        if roiNode is None:
            roiNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode",
                                                         slicer.mrmlScene.GenerateUniqueName("GlandSeg head box"))
            roiNode.CreateDefaultDisplayNodes()
        nodes.box_to_roi(box, roiNode)
        roiNode.SetAttribute("GlandSeg.locator", getattr(box, "method", ""))
        return roiNode, box

    # ------------------------------------------------------------------ running

    def prepareRun(self, volumeNode, model: str | None = None, device: str = "auto", uptakeNode=None,
                   roiNode=None, trustModel: bool = False) -> GlandSegRun:
        """Write the inputs to a private temporary folder and build the command line.

        The volumes are written from their nodes (not from their original files) so that
        what is segmented is exactly what the user sees, including edits and unsaved data.
        """
        import SimpleITK as sitk

        if volumeNode is None:
            raise ValueError("no CT volume selected")
        ct = nodes.volume_to_sitk(volumeNode)
        uptake = nodes.volume_to_sitk(uptakeNode) if uptakeNode is not None else None
        box = None
        if roiNode is not None:
            if not self.capabilities().box:
                raise RuntimeError("this GlandSeg command line has no --box option yet, so a head box cannot be passed; "
                                   "choose 'Automatic' as head box")
            box = nodes.box_arguments(nodes.roi_to_box(roiNode))
        workdir = Path(tempfile.mkdtemp(prefix="GlandSeg-", dir=slicer.app.temporaryPath))
        try:
            ct_path = workdir / "ct.nrrd"
            sitk.WriteImage(ct, str(ct_path), False)  # uncompressed: faster to write and read back
            uptake_path = None
            if uptake is not None:
                uptake_path = workdir / "uptake.nrrd"
                sitk.WriteImage(uptake, str(uptake_path), False)
            outdir = workdir / "out"
            args = process.segment_arguments(ct_path, outdir, model=model, device=device,
                                                 uptake_path=uptake_path, box_lps=box, trust_model=trustModel)
        except Exception:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return GlandSegRun(workdir, outdir, args, volumeNode.GetID(), uptakeNode.GetID() if uptakeNode else None)

    def loadResults(self, run: GlandSegRun, outputSegmentationNode=None):
        """Bring a finished run into the scene; returns the segmentation node.

        Only here does the scene change, and only when everything loaded: a node created
        for the result is removed again if loading fails.
        """
        ctNode = slicer.mrmlScene.GetNodeByID(run.ctNodeID)
        if ctNode is None:
            raise RuntimeError("the CT volume was removed from the scene while GlandSeg was running")
        uptakeNode = slicer.mrmlScene.GetNodeByID(run.uptakeNodeID) if run.uptakeNodeID else None
        created = outputSegmentationNode is None
        if created:
            outputSegmentationNode = slicer.mrmlScene.AddNewNodeByClass(
                "vtkMRMLSegmentationNode", slicer.mrmlScene.GenerateUniqueName(f"{ctNode.GetName()} glands"))
        try:
            nodes.load_seg_nrrd(run.outdir / "glands.seg.nrrd", outputSegmentationNode, ctNode)
            nodes.show_segmentation(outputSegmentationNode)
            report = process.read_report(run.outdir)
            outputSegmentationNode.SetNodeReferenceID(REF_CT, ctNode.GetID())
            outputSegmentationNode.SetNodeReferenceID(REF_UPTAKE, uptakeNode.GetID() if uptakeNode else None)
            model = report.get("model", {})
            outputSegmentationNode.SetAttribute("GlandSeg.model", str(model.get("name", "")))
            outputSegmentationNode.SetAttribute("GlandSeg.version", str(report.get("glandseg_version", "")))
            outputSegmentationNode.SetAttribute("GlandSeg.device", str(report.get("device", "")))
            self.updateStatistics(outputSegmentationNode, ctNode, uptakeNode)
        except Exception:
            if created:
                slicer.mrmlScene.RemoveNode(outputSegmentationNode)
            raise
        self.lastReport = report
        self.lastWarnings = process.report_warnings(report)
        return outputSegmentationNode

    def segment(self, volumeNode, model: str | None = None, device: str = "auto", uptakeNode=None,
                outputSegmentationNode=None, *, roiNode=None, timeoutSeconds: float | None = None,
                progressCallback: Callable[[process.Event], None] | None = None,
                cancelEvent: threading.Event | None = None):
        """Segment the glands and wait: the synchronous form of the panel's button.

        Runs `glandseg segment` in a subprocess, then loads the result into
        `outputSegmentationNode` (a new node when None) with the CT as reference geometry,
        and a statistics table. Raises process.GlandSegRunError with the CLI's message
        on failure; the scene is then unchanged. Warnings end up in `self.lastWarnings`.
        """
        missing = self.missingDependencies()
        if missing:
            raise RuntimeError("missing Python packages: " + ", ".join(s for _n, s in missing)
                               + "; install them with GlandSeg.GlandSegLogic().installDependencies()")
        run = self.prepareRun(volumeNode, model=model, device=device, uptakeNode=uptakeNode, roiNode=roiNode)
        try:
            process.run_cli(run.args, on_event=progressCallback, cancel=cancelEvent, timeout_s=timeoutSeconds)
            return self.loadResults(run, outputSegmentationNode)
        finally:
            run.cleanup()

    # ------------------------------------------------------------------ statistics, models

    def updateStatistics(self, segmentationNode, ctNode=None, uptakeNode=None):
        """(Re)compute the per-gland table from the segments as they are now; returns the table.

        The table node is kept per segmentation (a node reference), so recomputing after a
        correction updates the same table instead of piling up new ones.
        """
        ctNode = ctNode or segmentationNode.GetNodeReference(REF_CT)
        if ctNode is None:
            raise ValueError("no CT volume for the statistics: select the CT the segmentation was made on")
        table = segmentationNode.GetNodeReference(REF_TABLE)
        if table is None:
            name = slicer.mrmlScene.GenerateUniqueName(f"{segmentationNode.GetName()} statistics")
            table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", name)
            segmentationNode.SetNodeReferenceID(REF_TABLE, table.GetID())
        nodes.compute_statistics(segmentationNode, ctNode, uptakeNode, table)
        return table

    @staticmethod
    def statisticsTableNode(segmentationNode):
        return segmentationNode.GetNodeReference(REF_TABLE)

    def installModel(self, path: str) -> process.RunResult:
        """`glandseg install-model PATH` (a .zip export or an nnU-Net model folder)."""
        if not self.capabilities().install_model:
            raise RuntimeError("this version of GlandSeg has no `glandseg install-model` command")
        return process.run_cli(["install-model", str(path)], timeout_s=1800)


# ======================================================================================
# Widget
# ======================================================================================

class GlandSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: reads the widgets, starts the CLI in a QProcess, shows what it says."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: GlandSegLogic | None = None
        self._process = None
        self._finishedProcess = None
        self._run: GlandSegRun | None = None
        self._targetSegmentationID: str | None = None
        self._pgid: int | None = None
        self._cancelRequested = False
        self._trustModelOnce = False  # set only after the user confirmed an untrusted model
        self._stdout = process.LineBuffer()
        self._stderr = process.LineBuffer()
        self._stderrLines: list[str] = []
        self._runWarnings: list[str] = []

    # ------------------------------------------------------------------ setup

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
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
        """Module closed or reloaded: stop a running segmentation, drop observers."""
        if self._process is not None:
            self.cancel()
        self.removeObservers()

    def onSceneStartClose(self, caller, event) -> None:
        if self._process is not None:
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
        running = self._process is not None
        hasInput = self.ui.inputVolumeSelector.currentNode() is not None
        self.ui.applyButton.enabled = running or hasInput
        self.ui.applyButton.text = "Cancel" if running else "Segment glands"
        self.ui.applyButton.toolTip = ("Stop the running segmentation; the scene is left unchanged." if running
                                       else "Segment the six glands in a separate process.")
        for w in (self.ui.inputVolumeSelector, self.ui.uptakeVolumeSelector, self.ui.modelComboBox,
                  self.ui.installModelButton, self.ui.deviceComboBox, self.ui.headBoxSelector,
                  self.ui.showHeadBoxButton, self.ui.outputSegmentationSelector, self.ui.recomputeStatisticsButton,
                  self.ui.installDependenciesButton, self.ui.refreshModelsButton):
            w.enabled = not running
        self.ui.showHeadBoxButton.enabled = not running and hasInput
        seg = self.ui.outputSegmentationSelector.currentNode()
        self.ui.recomputeStatisticsButton.enabled = not running and seg is not None and (
            seg.GetNodeReference(REF_CT) is not None or hasInput)

    def onOutputChanged(self, node) -> None:
        table = node.GetNodeReference(REF_TABLE) if node is not None else None
        self.ui.statisticsTableView.setMRMLTableNode(table)
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
        before = {m.name for m in self.logic.models()}
        try:
            with slicer.util.WaitCursor():
                result = self.logic.installModel(path)
        except process.GlandSegRunError as exc:
            self.log(exc.log)
            slicer.util.errorDisplay(f"Model installation failed: {exc}", windowTitle="GlandSeg", detailedText=exc.log)
            return
        for line in result.log:
            self.log(line)
        self.populateModels()
        new = [m.name for m in self.logic.models() if m.name not in before]
        if new:
            self.ui.modelComboBox.setCurrentIndex(self.ui.modelComboBox.findData(new[0]))
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

    def onApplyButton(self) -> None:
        if self._process is not None:
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
                                            trustModel=self._trustModelOnce)
            self._trustModelOnce = False
        except Exception as exc:
            slicer.util.errorDisplay(f"GlandSeg could not start: {exc}", windowTitle="GlandSeg")
            return
        self.startProcess(run, seg)

    # ------------------------------------------------------------------ the process

    def startProcess(self, run: GlandSegRun, targetSegmentation=None) -> None:
        self._run = run
        self._targetSegmentationID = targetSegmentation.GetID() if targetSegmentation is not None else None
        self._pgid = None
        self._cancelRequested = False
        self._stdout = process.LineBuffer()
        self._stderr = process.LineBuffer()
        self._stderrLines = []
        self._runWarnings = []
        self.showWarnings([])
        self.ui.progressBar.setValue(0)
        self.ui.logTextEdit.clear()

        program, arguments = process.launch_arguments(run.args)
        self.log("glandseg " + " ".join(run.args))
        qprocess = qt.QProcess()
        environment = qt.QProcessEnvironment()
        for key, value in process.child_environment().items():
            environment.insert(key, value)
        qprocess.setProcessEnvironment(environment)
        qprocess.setWorkingDirectory(str(process.lib_parent()))
        qprocess.connect("readyReadStandardOutput()", self.onProcessStdout)
        qprocess.connect("readyReadStandardError()", self.onProcessStderr)
        qprocess.connect("finished(int,QProcess::ExitStatus)", self.onProcessFinished)
        qprocess.connect("errorOccurred(QProcess::ProcessError)", self.onProcessError)
        self._process = qprocess
        self.updateButtons()
        self.setStatus("Starting GlandSeg...")
        qprocess.start(program, arguments)

    def _processId(self) -> int | None:
        if self._process is None:
            return None
        pid = self._process.processId() if hasattr(self._process, "processId") else self._process.pid()
        return int(pid) or None

    def onProcessStdout(self) -> None:
        if self._process is None:
            return
        for line in self._stdout.feed(self._process.readAllStandardOutput().data()):
            self.handleEvent(process.parse_line(line), line)

    def onProcessStderr(self) -> None:
        if self._process is None:
            return
        for line in self._stderr.feed(self._process.readAllStandardError().data()):
            self._stderrLines.append(line)
            self.log(line)

    def handleEvent(self, event: process.Event, line: str) -> None:
        if event.kind == "pgid":
            self._pgid = event.pgid
            if self._cancelRequested:  # Cancel came before the child announced its group
                process.terminate_process_group(self._pgid, None)
            return
        if event.kind == "progress":
            self.ui.progressBar.setValue(int(round(100 * (event.fraction or 0.0))))
            self.ui.statusLabel.setText(f"{event.stage}: {event.message}" if event.stage else event.message)
            self.log(f"[{event.stage}] {event.message}")
        elif event.kind == "warning":
            self._runWarnings.append(event.message)
            self.log(f"warning: {event.message}")
            self.showWarnings(self._runWarnings)
        else:
            self.log(line)

    def onProcessError(self, error) -> None:
        if error == qt.QProcess.FailedToStart:
            self.log(f"could not start {process.python_executable()}")
            self.finishRun(-1, crashed=True, message=f"could not start Python ({process.python_executable()})")

    def onProcessFinished(self, exitCode, exitStatus) -> None:
        self.onProcessStdout()
        self.onProcessStderr()
        for line in self._stdout.flush():
            self.handleEvent(process.parse_line(line), line)
        for line in self._stderr.flush():
            self._stderrLines.append(line)
            self.log(line)
        self.finishRun(int(exitCode), crashed=exitStatus == qt.QProcess.CrashExit)

    def cancel(self) -> None:
        """Stop the CLI and its workers: SIGTERM to its process group, SIGKILL after 10 s."""
        if self._process is None:
            return
        self._cancelRequested = True
        self.setStatus("Cancelling...")
        process.terminate_process_group(self._pgid, self._processId())
        qt.QTimer.singleShot(10000, self._forceKill)

    def _forceKill(self) -> None:
        if self._process is not None and self._cancelRequested:
            process.terminate_process_group(self._pgid, self._processId(), force=True)
            self._process.kill()

    def finishRun(self, exitCode: int, crashed: bool = False, message: str | None = None) -> None:
        """The process ended: load results on success; otherwise leave the scene as it was."""
        run, self._run = self._run, None
        # keep the finished QProcess alive until the next run: deleting a QObject from
        # inside its own `finished` signal can crash Qt
        self._finishedProcess, self._process = self._process, None
        target = slicer.mrmlScene.GetNodeByID(self._targetSegmentationID) if self._targetSegmentationID else None
        try:
            if run is None:
                return
            if self._cancelRequested:
                self.ui.progressBar.setValue(0)
                self.setStatus("Cancelled. The scene was not changed.")
                return
            if not crashed and process.needs_trust(exitCode, self._stderrLines):
                text = process.error_message(exitCode, self._stderrLines)
                if slicer.util.confirmYesNoDisplay(
                        f"{text}\n\nA model checkpoint is a program: loading this one runs code it carries. "
                        "Run it only if you trust where the model came from. Run it anyway?", windowTitle="GlandSeg: untrusted model"):
                    self._trustModelOnce = True
                    qt.QTimer.singleShot(0, self.onApplyButton)
                else:
                    self.setStatus("Stopped: the model was not trusted. The scene was not changed.")
                return
            if exitCode != 0 or crashed:
                text = message or process.error_message(exitCode, self._stderrLines)
                self.setStatus(f"Failed: {text}")
                slicer.util.errorDisplay(f"GlandSeg failed: {text}", windowTitle="GlandSeg",
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
            self._cancelRequested = False
            self.updateButtons()

    def onSegmentationDone(self, seg) -> None:
        ct = seg.GetNodeReference(REF_CT)
        self.ui.progressBar.setValue(100)
        self.ui.outputSegmentationSelector.setCurrentNode(seg)
        self.ui.statisticsTableView.setMRMLTableNode(self.logic.statisticsTableNode(seg))
        warnings = self.logic.lastWarnings
        self.showWarnings(warnings)
        table = self.logic.statisticsTableNode(seg)
        found = sum(1 for row in nodes.table_rows(table) if row.get("Volume", 0.0) > 0) if table else 0
        self.setStatus(f"Done: '{seg.GetName()}', {found} of {len(GLANDS)} glands found"
                       + (f", {len(warnings)} warning(s) to check." if warnings else "."))
        if ct is not None:
            slicer.util.setSliceViewerLayers(background=ct, fit=False)
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


# ======================================================================================
# Test (inside Slicer: Developer mode > Reload and Test, or ctest -R py_GlandSeg)
# ======================================================================================

class GlandSegTest(ScriptedLoadableModuleTest):
    """The whole flow on the bundled phantom CT, in real Slicer.

    The node conversions are also tested outside Slicer (Testing/test_slicer_nodes.py under
    slicer-core); this adds what only the application has: modules, Qt, the CLI started
    from Slicer's Python, the terminology logic, the Segment Editor.
    """

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_terminology_loaded()
        self.setUp()
        self.test_segment_sample()
        self.setUp()
        self.test_panel_cancel_leaves_scene_unchanged()

    def _sample(self):
        path = process.resource_path(*SAMPLE_CT)
        self.assertIsNotNone(path, f"bundled sample {'/'.join(SAMPLE_CT)} is missing from Resources")
        return slicer.util.loadVolume(str(path))

    def test_terminology_loaded(self):
        self.assertTrue(loadTerminology())
        logic = slicer.modules.terminologies.logic()
        from GlandSegLib.io.segfile import terminology_entry

        for g in GLANDS:
            entry = slicer.vtkSlicerTerminologyEntry()
            self.assertTrue(logic.DeserializeTerminologyEntry(terminology_entry(g), entry))
            self.assertEqual(entry.GetTypeObject().GetCodeValue(), g.structure[1])
            self.assertEqual(entry.GetTypeModifierObject().GetCodeValue(), g.laterality[1])
        self.delayDisplay("terminology loaded")

    def test_segment_sample(self):
        logic = GlandSegLogic()
        self.assertTrue(logic.installDependencies(askConfirmation=False), "dependencies could not be installed")
        ct = self._sample()
        events = []
        seg = logic.segment(ct, device="auto", progressCallback=events.append, timeoutSeconds=1800)
        self.assertTrue(any(e.kind == "progress" for e in events))
        segmentation = seg.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), 6)
        self.assertEqual([segmentation.GetNthSegment(i).GetName() for i in range(6)], [g.name for g in GLANDS])
        self.assertEqual(seg.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()), ct)
        rows = nodes.table_rows(logic.statisticsTableNode(seg))
        self.assertEqual([r["Gland"] for r in rows], [g.name for g in GLANDS])
        volumes = {r["Gland"]: r["Volume"] for r in rows}
        self.assertGreater(volumes["right parotid gland"], 1.0)
        self.assertGreater(volumes["left parotid gland"], 1.0)
        # laterality in physical space: the right parotid has the larger RAS x
        centers = {}
        for key in ("parotid_r", "parotid_l"):
            centers[key] = seg.GetSegmentCenterRAS(key)
        self.assertGreater(centers["parotid_r"][0], centers["parotid_l"][0])
        # a "correction" (erase the right parotid), then recompute: same table, new values
        import numpy as np

        voxels = slicer.util.arrayFromSegmentBinaryLabelmap(seg, "parotid_r", ct)
        slicer.util.updateSegmentBinaryLabelmapFromArray(np.zeros_like(voxels), seg, "parotid_r", ct)
        table = logic.updateStatistics(seg)
        self.assertIs(table, logic.statisticsTableNode(seg))
        self.assertEqual(nodes.table_rows(table)[2]["Volume"], 0.0)
        self.delayDisplay(f"segmented, warnings: {logic.lastWarnings}")

    def test_panel_cancel_leaves_scene_unchanged(self):
        ct = self._sample()
        widget = slicer.modules.glandseg.widgetRepresentation().self()
        widget.ui.inputVolumeSelector.setCurrentNode(ct)
        widget.ui.outputSegmentationSelector.setCurrentNode(None)
        widget.ui.headBoxSelector.setCurrentNode(None)
        nodes_before = slicer.mrmlScene.GetNumberOfNodes()
        widget.onApplyButton()
        self.assertIsNotNone(widget._process, "the segmentation process did not start")
        self.assertEqual(widget.ui.applyButton.text, "Cancel")
        timer = qt.QElapsedTimer()
        timer.start()
        while widget._process is not None and widget.ui.progressBar.value < 5 and timer.elapsed() < 120000:
            slicer.app.processEvents()
        widget.cancel()
        while widget._process is not None and timer.elapsed() < 180000:
            slicer.app.processEvents()
        self.assertIsNone(widget._process, "the process did not stop after Cancel")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes_before)
        self.assertEqual(widget.ui.applyButton.text, "Segment glands")
        self.delayDisplay("cancel left the scene unchanged")
