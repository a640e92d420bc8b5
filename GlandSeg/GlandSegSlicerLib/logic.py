"""GlandSeg's Logic: everything the panel does, callable from Slicer's Python console.

Kept apart from the panel (GlandSeg.py) so that it can run, and be tested, without widgets:
under slicer-core its code runs for real (Testing/test_slicer_module.py). It starts the
`glandseg` command line through `process` and moves data through `nodes`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import slicer
import vtk
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleLogic

from GlandSegSlicerLib import install, nodes, process, review
from GlandSegLib.io.segfile import TERMINOLOGY_CONTEXT

MODULE_DIR = Path(__file__).resolve().parents[1]  # the GlandSeg module folder
TERMINOLOGY_FILE = MODULE_DIR / "Resources" / "GlandSeg.term.json"
SAMPLE_CT = ("sample", "phantom_head_ct.nii.gz")

# MRML references that tie a result to its inputs, so "Recompute statistics" knows them.
REF_CT = "GlandSeg.ct"
REF_UPTAKE = "GlandSeg.uptake"
REF_TABLE = "GlandSeg.statistics"


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


def registerSampleData() -> None:
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
        self._editTimers: dict[str, review.EditTimer] = {}  # segmentation node ID -> its edit timer
        self.lastUncertaintyNode = None  # the last run's uncertainty map, when it wrote one

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
        """(import name, requirement) of what is missing or installed at a wrong version."""
        return [(u.name, u.requirement) for u in install.unmet_requirements()]

    @staticmethod
    def installers() -> dict[str, Callable[[install.Step], None]]:
        """How each kind of step is carried out in the application (install.execute_plan)."""

        def nnunet(step: install.Step) -> None:
            import SlicerNNUNetLib

            nnunetLogic = SlicerNNUNetLib.InstallLogic(doAskConfirmation=False)
            progress = getattr(nnunetLogic, "progressInfo", None)
            if progress is not None and hasattr(progress, "connect"):
                progress.connect(lambda text: logging.info(f"GlandSeg (NNUNet extension): {text}"))
            ok = nnunetLogic.setupPythonRequirements(step.requirement)
            if getattr(nnunetLogic, "needsRestart", False):
                raise RuntimeError("restart 3D Slicer to finish installing the PyTorch extension, then try again")
            if not ok:
                raise RuntimeError("the NNUNet extension could not install it (see the application log)")

        def torch(step: install.Step) -> None:
            import PyTorchUtils

            # GlandSeg asked already: no second confirmation from the PyTorch extension
            if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                             torchVersionRequirement=step.specifier) is None:
                raise RuntimeError("the PyTorch extension did not install PyTorch")

        def pip(step: install.Step) -> None:
            slicer.util.pip_install(step.requirement)

        def provided(step: install.Step) -> None:
            raise RuntimeError(step.why)

        return {install.NNUNET_EXTENSION: nnunet, install.PYTORCH_EXTENSION: torch, install.PIP: pip,
                install.SLICER: provided}

    def installDependencies(self, askConfirmation: bool = True) -> bool:
        """Install what GlandSegLib needs into Slicer's Python; True when nothing is unmet after.

        Asks once (with askConfirmation) and then installs through the NNUNet and PyTorch
        extensions and pip in the order install.install_plan gives for this platform; the
        extensions are told not to ask again.
        """
        unmet = install.unmet_requirements()
        if not unmet:
            return True
        plan = install.install_plan(unmet, nnunet_torch=install.declared_requirement("nnunetv2", "torch"))
        absent = install.missing_extensions(plan)
        if absent:
            text = (f"GlandSeg installs PyTorch and nnU-Net through the {' and '.join(absent)} extension"
                    f"{'s' if len(absent) > 1 else ''} of 3D Slicer, which {'are' if len(absent) > 1 else 'is'} "
                    "not installed. Install them from the Extensions Manager, restart 3D Slicer, and try again.")
            logging.error(f"GlandSeg: {text}")
            if askConfirmation:
                slicer.util.errorDisplay(text, windowTitle="GlandSeg: install dependencies")
            return False
        listing = "\n".join(f"- {u.describe()}" for u in unmet)
        if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                "GlandSeg needs these Python packages in 3D Slicer, which are missing or at a version it cannot "
                f"use:\n\n{listing}\n\nInstall them now? This downloads up to a few gigabytes (PyTorch) and can take "
                "several minutes.", windowTitle="GlandSeg: install dependencies",
                detailedText="\n".join(f"{s.requirement}: {s.installer} ({s.why})" for s in plan)):
            return False
        with slicer.util.WaitCursor():
            done, failed = install.execute_plan(plan, self.installers(), log=lambda t: logging.info(f"GlandSeg: {t}"))
        still = [u.describe() for u in install.unmet_requirements()]
        summary = "Installed: " + (", ".join(done) or "nothing") + "."
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
                   roiNode=None, trustModel: bool = False, uncertainty: bool = False) -> GlandSegRun:
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
        if uncertainty and not self.capabilities().uncertainty:
            raise RuntimeError("this GlandSeg command line cannot write an uncertainty map (no --uncertainty option)")
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
                                                 uptake_path=uptake_path, box_lps=box, trust_model=trustModel,
                                                 uncertainty=uncertainty)
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
        uncertaintyNode = None
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
            review.show_review(outputSegmentationNode, report)
            uncertaintyFile = run.outdir / "uncertainty.nii.gz"
            if uncertaintyFile.is_file():
                uncertaintyNode = self.loadUncertainty(uncertaintyFile, ctNode)
            review.keep_original(outputSegmentationNode, ctNode)  # what "Measure my corrections" compares with
        except Exception:
            if created:
                slicer.mrmlScene.RemoveNode(outputSegmentationNode)
            if uncertaintyNode is not None:
                slicer.mrmlScene.RemoveNode(uncertaintyNode)
            raise
        self.lastUncertaintyNode = uncertaintyNode
        self.startEditTimer(outputSegmentationNode)
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
        `progressCallback` runs on this (the main) thread, between Qt event rounds, so it may
        update widgets; setting `cancelEvent` (from a callback or another thread) stops the
        command and everything it started.
        """
        missing = self.missingDependencies()
        if missing:
            raise RuntimeError("missing Python packages: " + ", ".join(s for _n, s in missing)
                               + "; install them with GlandSeg.GlandSegLogic().installDependencies()")
        run = self.prepareRun(volumeNode, model=model, device=device, uptakeNode=uptakeNode, roiNode=roiNode)
        try:
            process.run_cli(run.args, on_event=progressCallback, cancel=cancelEvent, timeout_s=timeoutSeconds,
                            idle=processEvents)
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

    # ------------------------------------------------------------------ review

    @staticmethod
    def reviewTableNode(segmentationNode):
        """The glands in the order to review them, with status and confidence (review.py)."""
        return segmentationNode.GetNodeReference(review.REF_REVIEW_TABLE)

    @staticmethod
    def loadUncertainty(path, ctNode):
        """The run's uncertainty map (uint8 percent on the CT grid) as a volume named after the CT."""
        import SimpleITK as sitk

        scene = ctNode.GetScene()
        node = nodes.add_volume_from_sitk(scene, sitk.ReadImage(str(path)),
                                          scene.GenerateUniqueName(f"{ctNode.GetName()} uncertainty"))
        display = node.GetDisplayNode()
        color = scene.GetNodeByID("vtkMRMLColorTableNodeFileColdToHotRainbow.txt")  # present in the application
        if display is not None:
            if color is not None:
                display.SetAndObserveColorNodeID(color.GetID())
            display.SetAutoWindowLevel(False)
            display.SetWindowLevelMinMax(0, 60)  # 0 certain; stage one tops out at 86, most boundaries lie below 60
            display.SetLowerThreshold(5)
            display.SetApplyThreshold(True)  # certain voxels transparent over the CT
        return node

    def startEditTimer(self, segmentationNode) -> review.EditTimer:
        """Count edits of this segmentation from now on (one timer per node)."""
        old = self._editTimers.pop(segmentationNode.GetID(), None)
        if old is not None:
            old.stop()
        timer = review.EditTimer(segmentationNode)
        self._editTimers[segmentationNode.GetID()] = timer
        return timer

    def measureCorrections(self, segmentationNode, csvPath=None):
        """Per gland, the segments now against GlandSeg's original: a table node (kept per
        segmentation) and, with csvPath, a CSV. Includes the time spent editing."""
        ctNode = segmentationNode.GetNodeReference(REF_CT)
        table, _rows = review.measure_corrections(segmentationNode, ctNode, csvPath)
        return table

    def installModelJob(self, path: str, onLog: Callable[[str], None] | None = None) -> process.CliJob:
        """`glandseg install-model PATH` as a job, not started: the panel polls it (progress, Cancel)."""
        if not self.capabilities().install_model:
            raise RuntimeError("this version of GlandSeg has no `glandseg install-model` command")
        return process.CliJob(["install-model", str(path)], on_log=onLog, on_event=(
            (lambda ev: onLog(ev.message or ev.stage)) if onLog is not None else None))

    def installModel(self, path: str, onLog: Callable[[str], None] | None = None,
                     cancelEvent: threading.Event | None = None, timeoutSeconds: float | None = 1800) -> process.RunResult:
        """`glandseg install-model PATH` (a .zip export or an nnU-Net model folder), waiting.

        The application keeps processing events meanwhile; raises GlandSegRunError on failure.
        """
        job = self.installModelJob(path, onLog)
        return job.wait(timeout_s=timeoutSeconds, cancel=cancelEvent, idle=processEvents)


def processEvents() -> None:
    """Let the application repaint and react while a console call waits (no-op without slicer.app)."""
    app = getattr(slicer, "app", None)
    process_events = getattr(app, "processEvents", None)
    if process_events is not None:
        process_events()
