"""GlandSegLogic and the panel's job handling, run for real under slicer-core.

GlandSeg.py is imported with stand-ins for what only the application has (qt, ctk, the
ScriptedLoadableModule base classes, slicer.app, slicer.mrmlScene); the Logic's own code,
the `glandseg` command line, MRML and the process runner are real. One real segmentation of
the shipped sample (about 30 s on two cores) covers `segment` end to end: progress on the
main thread, results loaded, uptake statistics against a constant uptake image.

What remains for a person in the real application (README, Release checklist): the panel
drawn by Qt, the dialogs, the Segment Editor hand-over, Cancel and closing Slicer during a
run on Windows (Task Manager shows no PythonSlicer / python-real left) and macOS.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import textwrap
import threading
import time
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "GlandSeg"
SAMPLE = REPO / "Resources" / "sample" / "phantom_head_ct.nii.gz"
sys.path.insert(0, str(MODULE))

slicer = require("slicer", "slicer-core gives Slicer's MRML classes")

from GlandSegSlicerLib import nodes as N  # noqa: E402
from GlandSegSlicerLib import process, runner  # noqa: E402
from GlandSegLib.cli import build_parser  # noqa: E402
from GlandSegLib.geometry import PhysicalBox  # noqa: E402
from GlandSegLib.glands import GLANDS  # noqa: E402

MODULE_NAMES = ("GlandSeg", "GlandSegSlicerLib.logic", "GlandSegSlicerLib.selftest")


class FakeTimer:
    """qt.QTimer as the panel uses it; the test fires it by hand (on the main thread)."""

    instances: list[FakeTimer] = []

    def __init__(self):
        self.slot = None
        self.active = False
        self.interval = None
        FakeTimer.instances.append(self)

    def setInterval(self, ms):
        self.interval = ms

    def connect(self, signal, slot):
        assert signal == "timeout()"
        self.slot = slot

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def fire(self):
        if self.active:
            self.slot()

    @staticmethod
    def singleShot(_ms, slot):
        slot()


class FakeWidget:
    """Any Qt widget the panel touches: properties are stored, method calls recorded."""

    def __init__(self, text=""):
        self.text = text
        self.enabled = True
        self.calls: list[tuple[str, tuple]] = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self.calls.append((name, args))


class FakeLayout(FakeWidget):
    pass


def _import_glandseg(monkeypatch, tmp_path, version=(5, 10, 0)):
    class _Base:
        def __init__(self, *args, **kwargs):
            self.parent = args[0] if args else None

        def setup(self):
            pass

    slm = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest",
                 "ScriptedLoadableModuleWidget"):
        setattr(slm, name, type(name, (_Base,), {}))
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", slm)
    qt = types.ModuleType("qt")
    qt.QTimer = FakeTimer
    qt.QLabel = FakeWidget
    monkeypatch.setitem(sys.modules, "qt", qt)
    monkeypatch.setitem(sys.modules, "ctk", types.ModuleType("ctk"))
    temp = tmp_path / "slicer-temp"
    temp.mkdir(exist_ok=True)
    connections: list[tuple[str, object]] = []
    events = {"processEvents": 0}

    def process_events():
        events["processEvents"] += 1

    app = types.SimpleNamespace(temporaryPath=str(temp), connect=lambda signal, slot: connections.append((signal, slot)),
                                majorVersion=version[0], minorVersion=version[1],
                                applicationVersion=".".join(map(str, version)),
                                processEvents=process_events)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    scene = slicer.vtkMRMLScene()
    N.segmentations_logic(scene)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda *a, **k: None, raising=False)
    for name in MODULE_NAMES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("GlandSeg")
    return types.SimpleNamespace(module=module, scene=scene, temp=temp, slicer=slicer, connections=connections,
                                 events=events)


@pytest.fixture
def glandseg_module(monkeypatch, tmp_path):
    """GlandSeg.py imported under slicer-core as Slicer 5.10 would import it."""
    env = _import_glandseg(monkeypatch, tmp_path)
    yield env
    for name in MODULE_NAMES:
        sys.modules.pop(name, None)
    env.scene.Clear(1)


def _node_ids(scene) -> list[str]:
    return [f"{scene.GetNthNode(i).GetClassName()}:{scene.GetNthNode(i).GetID()}" for i in range(scene.GetNumberOfNodes())]


def _ct_node(env, geometry_seed: int = 0):
    arr = np.random.default_rng(geometry_seed).integers(-200, 200, (12, 24, 30)).astype("int16")
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((1.0, 1.2, 2.0))
    img.SetOrigin((-15.0, -14.0, 3.0))
    return N.add_volume_from_sitk(env.scene, img, "ct"), img


def _fake_run(env, ct_node, ct_img, outdir: Path, warnings: list[str], uptake_node=None):
    """A finished run's folder as the CLI leaves it: glands.seg.nrrd on a crop, report.json."""
    from GlandSegLib.io.segfile import write_seg_nrrd

    arr = np.zeros(sitk.GetArrayViewFromImage(ct_img).shape, np.uint8)
    for g in GLANDS:
        arr[1 + g.label, 3:6, (2 if g.side == "R" else 20):(6 if g.side == "R" else 25)] = g.label
    labels = sitk.GetImageFromArray(arr)
    labels.CopyInformation(ct_img)
    outdir.mkdir(parents=True)
    write_seg_nrrd(sitk.RegionOfInterest(labels, [28, 22, 10], [1, 1, 1]), outdir / "glands.seg.nrrd")
    (outdir / "report.json").write_text(json.dumps({"glandseg_version": "0.1.0", "model": {"name": "m"}, "device": "cpu",
                                                   "warnings": warnings}))
    run = env.module.GlandSegRun(outdir.parent, outdir, [], ct_node.GetID(), uptake_node.GetID() if uptake_node else None)
    return run, labels


# ----------------------------------------------------------------------------- start-up check

def test_module_registers_startup_and_exit_hooks(glandseg_module):
    env = glandseg_module
    assert env.module.UNSUPPORTED is None
    parent = types.SimpleNamespace()
    env.module.GlandSeg(parent)
    signals = [signal for signal, _slot in env.connections]
    assert signals == ["startupCompleted()", "aboutToQuit()"]
    assert dict(env.connections)["aboutToQuit()"] is runner.stop_all


def test_old_slicer_gets_a_message_instead_of_a_traceback(monkeypatch, tmp_path):
    """Slicer 5.8: GlandSeg.py loads, imports none of the rest, and the module's help and
    panel say what to upgrade."""
    for name in ("GlandSegSlicerLib.process", "GlandSegSlicerLib.runner", "GlandSegSlicerLib.logic"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    env = _import_glandseg(monkeypatch, tmp_path, version=(5, 8, 1))
    try:
        module = env.module
        assert module.UNSUPPORTED and "GlandSeg needs 3D Slicer 5.10 or later; this is 3D Slicer 5.8.1" in module.UNSUPPORTED
        assert not hasattr(module, "GlandSegLogic")
        assert "GlandSegSlicerLib.logic" not in sys.modules and "GlandSegSlicerLib.runner" not in sys.modules
        parent = types.SimpleNamespace()
        module.GlandSeg(parent)
        assert parent.helpText == module.UNSUPPORTED
        assert [s for s, _slot in env.connections] == ["startupCompleted()"]
        widget = module.GlandSegWidget()
        widget.layout = FakeLayout()
        widget.setup()
        (name, (label,)), _stretch = widget.layout.calls
        assert name == "addWidget" and label.text == module.UNSUPPORTED
        widget.cleanup()  # nothing running, nothing to do: must not fail
    finally:
        for name in MODULE_NAMES:
            sys.modules.pop(name, None)


# ----------------------------------------------------------------------------- results

def test_logic_loads_results_into_a_new_segmentation(glandseg_module, tmp_path):
    env = glandseg_module
    ct_node, ct_img = _ct_node(env)
    run, labels = _fake_run(env, ct_node, ct_img, tmp_path / "run" / "out",
                            ["left lacrimal gland not found", "right parotid gland ...: possible left/right swap"])
    logic = env.module.GlandSegLogic()
    seg = logic.loadResults(run)
    assert seg.GetName() == "ct glands"
    assert seg.GetSegmentation().GetNumberOfSegments() == 6
    assert seg.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) is ct_node
    np.testing.assert_array_equal(sitk.GetArrayFromImage(N.segmentation_to_labelmap(seg, ct_node)),
                                  sitk.GetArrayFromImage(labels))
    table = logic.statisticsTableNode(seg)
    assert [r["Gland"] for r in N.table_rows(table)] == [g.name for g in GLANDS]
    assert logic.lastWarnings[0].endswith("possible left/right swap")
    assert seg.GetAttribute("GlandSeg.model") == "m"
    assert logic.updateStatistics(seg) is table  # recompute reuses the table


def test_logic_load_results_with_uptake_gives_uptake_of_a_constant_image(glandseg_module, tmp_path):
    """Uptake c everywhere (on a grid of its own): mean = max = c, total = c x volume (ml; the
    table shows the volume rounded to 0.001 ml, the total is computed from the voxels)."""
    env = glandseg_module
    ct_node, ct_img = _ct_node(env)
    c = 2500.0
    uptake = sitk.Image([20, 20, 14], sitk.sitkFloat32) + c
    uptake.SetSpacing((2.0, 2.0, 2.5))
    uptake.SetOrigin((-16.0, -15.0, 1.0))  # covers the CT, on a coarser, shifted grid
    uptake_node = N.add_volume_from_sitk(env.scene, uptake, "spect")
    run, labels = _fake_run(env, ct_node, ct_img, tmp_path / "run" / "out", [], uptake_node)
    seg = env.module.GlandSegLogic().loadResults(run)
    assert seg.GetNodeReference(env.module.REF_UPTAKE) is uptake_node
    rows = N.table_rows(env.module.GlandSegLogic.statisticsTableNode(seg))
    voxel_ml = float(np.prod(ct_img.GetSpacing())) / 1000.0
    counts = {g.name: int((sitk.GetArrayViewFromImage(labels) == g.label).sum()) for g in GLANDS}
    for row in rows:
        volume = counts[row["Gland"]] * voxel_ml
        assert volume > 0 and row["Volume"] == pytest.approx(round(volume, 3), abs=1e-12)
        assert row["Uptake mean"] == pytest.approx(c, rel=1e-9)
        assert row["Uptake max"] == pytest.approx(c, rel=1e-9)
        assert row["Uptake total"] == pytest.approx(c * volume, rel=1e-6)  # summed in float32


def test_logic_replaces_segments_of_a_chosen_node(glandseg_module, tmp_path):
    env = glandseg_module
    ct_node, ct_img = _ct_node(env)
    run, _labels = _fake_run(env, ct_node, ct_img, tmp_path / "run" / "out", [])
    target = env.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    target.GetSegmentation().AddEmptySegment("x", "old", [1, 0, 0])
    seg = env.module.GlandSegLogic().loadResults(run, target)
    assert seg is target and seg.GetName() == "mine"
    assert target.GetSegmentation().GetSegment("x") is None


def test_logic_failed_load_leaves_the_scene_unchanged(glandseg_module, tmp_path):
    env = glandseg_module
    ct_node, _ = _ct_node(env)
    (tmp_path / "run" / "out").mkdir(parents=True)
    run = env.module.GlandSegRun(tmp_path / "run", tmp_path / "run" / "out", [], ct_node.GetID(), None)
    before = _node_ids(env.scene)
    with pytest.raises(RuntimeError):
        env.module.GlandSegLogic().loadResults(run)
    assert _node_ids(env.scene) == before


# ----------------------------------------------------------------------------- runs

def test_logic_prepare_run_writes_what_the_user_sees(glandseg_module):
    env = glandseg_module
    ct_node, ct_img = _ct_node(env)
    uptake_node, _ = _ct_node(env, 1)
    logic = env.module.GlandSegLogic()
    run = logic.prepareRun(ct_node, model="m1", device="cpu", uptakeNode=uptake_node)
    try:
        ns = build_parser().parse_args(run.args)
        written = sitk.ReadImage(ns.input)
        assert written.GetSize() == ct_img.GetSize()
        np.testing.assert_allclose(written.GetOrigin(), ct_img.GetOrigin())
        np.testing.assert_array_equal(sitk.GetArrayViewFromImage(written), sitk.GetArrayViewFromImage(ct_img))
        assert Path(ns.uptake).is_file() and ns.model == "m1" and ns.device == "cpu" and ns.box is None
        assert run.workdir.parent == env.temp
    finally:
        run.cleanup()
    assert not run.workdir.exists()
    assert list(env.temp.iterdir()) == []


def test_logic_loads_review_uncertainty_and_measures_corrections(glandseg_module, tmp_path):
    """After a run: the review table in the report's order, the uncertainty map on the CT's
    grid, GlandSeg's original kept; an edit of a segment is counted and measured."""
    env = glandseg_module
    ct_node, ct_img = _ct_node(env)
    run, labels = _fake_run(env, ct_node, ct_img, tmp_path / "run" / "out", [])
    report = json.loads((run.outdir / "report.json").read_text())
    report["glands"] = [{"label": g.label, "name": g.name, "voxels": 20, "volume_ml": 0.05, "status": "found",
                         "confidence": 1 - g.label / 10} for g in GLANDS]
    report["review_order"] = [6, 5, 4, 3, 2, 1]
    (run.outdir / "report.json").write_text(json.dumps(report))
    umap = sitk.GetImageFromArray(np.random.default_rng(3).integers(0, 86, sitk.GetArrayViewFromImage(ct_img).shape).astype(np.uint8))
    umap.CopyInformation(ct_img)
    sitk.WriteImage(umap, str(run.outdir / "uncertainty.nii.gz"))
    run_with_flag = env.module.GlandSegLogic().prepareRun(ct_node, uncertainty=True)
    try:
        assert build_parser().parse_args(run_with_flag.args).uncertainty
    finally:
        run_with_flag.cleanup()

    logic = env.module.GlandSegLogic()
    seg = logic.loadResults(run)
    rows = N.table_rows(logic.reviewTableNode(seg))
    assert [r["Gland"] for r in rows] == [g.name for g in reversed(GLANDS)]
    unode = logic.lastUncertaintyNode
    back = N.volume_to_sitk(unode)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(umap))
    np.testing.assert_allclose(back.GetOrigin(), ct_img.GetOrigin())
    assert unode.GetName() == "ct uncertainty"

    segment = seg.GetSegmentation().GetSegment("parotid_r")
    rep = segment.GetRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    from vtk.util import numpy_support
    values = numpy_support.vtk_to_numpy(rep.GetPointData().GetScalars())
    values[values == segment.GetLabelValue()] = 0  # the user erases the right parotid
    rep.Modified()
    assert seg.GetAttribute("GlandSeg.edits") == "1"
    table = logic.measureCorrections(seg, tmp_path / "c.csv")
    by = {r["Gland"]: r for r in N.table_rows(table)}
    assert by["right parotid gland"]["Change"] == "removed" and by["left parotid gland"]["Dice"] == 1.0
    assert (tmp_path / "c.csv").is_file()


def test_logic_prepare_run_passes_the_roi_as_the_head_box(glandseg_module):
    """The ROI the user dragged goes to the CLI as --box, in LPS millimetres."""
    env = glandseg_module
    ct_node, _ = _ct_node(env)
    logic = env.module.GlandSegLogic()
    assert logic.capabilities().box, "the CLI has --box"
    roi = env.scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "head box")
    box = PhysicalBox(np.array([-90.0, -120.5, -250.0]), np.array([110.0, 80.25, 4.0]))
    N.box_to_roi(box, roi)
    roi.SetSize(roi.GetSize()[0], roi.GetSize()[1], 300.0)  # the user made it taller (RAS z: centre kept)
    run = logic.prepareRun(ct_node, device="cpu", roiNode=roi)
    try:
        ns = build_parser().parse_args(run.args)
        assert ns.box == pytest.approx([-90.0, -120.5, -273.0, 110.0, 80.25, 27.0], abs=0.006)
    finally:
        run.cleanup()


def _tiny_model_zip(tmp_path: Path) -> Path:
    """A minimal nnU-Net results folder (as nnU-Net writes it), zipped as an export."""
    import torch

    folder = tmp_path / "src" / "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
    (folder / "fold_0").mkdir(parents=True)
    labels = {"background": 0, **{g.tg263: g.label for g in GLANDS}}
    (folder / "dataset.json").write_text(json.dumps({"labels": labels, "channel_names": {"0": "CT"}, "file_ending": ".nii.gz"}))
    (folder / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {"spacing": [2.0, 2.0, 2.0], "patch_size": [48, 48, 48]}}}))
    torch.save({"network_weights": {"w": torch.ones(3)}, "trainer_name": "nnUNetTrainerNoMirroring",
                "init_args": {"configuration": "3d_fullres", "fold": 0}, "inference_allowed_mirroring_axes": None},
               folder / "fold_0" / "checkpoint_final.pth")
    archive = tmp_path / "tinyteam.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return archive


def test_logic_install_model_runs_the_cli(glandseg_module, tmp_path):
    """`installModel` for real: the CLI installs the archive into GLANDSEG_HOME, the model
    list shows it, the application kept processing events, and a second install fails with
    the CLI's own message."""
    env = glandseg_module
    logic = env.module.GlandSegLogic()
    archive = _tiny_model_zip(tmp_path)
    lines: list[str] = []
    result = logic.installModel(str(archive), onLog=lines.append)
    assert result.exit_code == 0
    installed = [m for m in logic.models() if m.name == "tinyteam"]
    assert installed and installed[0].origin == "installed"
    assert Path(os.environ["GLANDSEG_HOME"]) in installed[0].folder.parents
    assert env.events["processEvents"] > 0
    with pytest.raises(process.GlandSegRunError) as err:
        logic.installModel(str(archive))
    assert err.value.exit_code == 8 and "tinyteam" in str(err.value)


def test_logic_detect_device(glandseg_module, monkeypatch):
    import torch

    logic = glandseg_module.module.GlandSegLogic()
    cuda, text = logic.detectDevice()
    assert cuda == torch.cuda.is_available()
    assert text.startswith("GPU available: ") if cuda else "CPU only" in text
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None if name == "torch" else real(name, *a, **k))
    assert logic.detectDevice() == (False, "PyTorch not installed yet (installed on first use)")


def test_logic_segment_failure_leaves_scene_unchanged(glandseg_module):
    """The console API with a model that does not exist: the CLI's message comes back,
    the scene and Slicer's temporary folder are left as they were."""
    env = glandseg_module
    ct_node, _ = _ct_node(env)
    before = _node_ids(env.scene)
    with pytest.raises(process.GlandSegRunError) as err:
        env.module.GlandSegLogic().segment(ct_node, model="no-such-model-for-tests", device="cpu", timeoutSeconds=300)
    assert err.value.exit_code == 7 and "no-such-model-for-tests" in str(err.value)
    assert _node_ids(env.scene) == before
    assert list(env.temp.iterdir()) == []


def test_logic_segment_sample_end_to_end(glandseg_module):
    """The one real segmentation of the default suite: `segment` on the shipped sample with
    the shipped model and a constant uptake image. Progress arrives on the main thread, in
    stage order, ending at 1; the six segments land on the CT's geometry; the table's uptake
    equals the constant; nothing is left in Slicer's temporary folder."""
    env = glandseg_module
    ct = sitk.ReadImage(str(SAMPLE))
    ct_node = N.add_volume_from_sitk(env.scene, ct, "sample")
    c = 1234.5
    uptake = sitk.Image(ct.GetSize(), sitk.sitkFloat32) + c
    uptake.CopyInformation(ct)
    uptake_node = N.add_volume_from_sitk(env.scene, uptake, "spect")
    events: list[process.Event] = []
    on_main: set[bool] = set()

    def on_event(ev):
        on_main.add(threading.current_thread() is threading.main_thread())
        events.append(ev)

    logic = env.module.GlandSegLogic()
    t0 = time.monotonic()
    seg = logic.segment(ct_node, device="cpu", uptakeNode=uptake_node, progressCallback=on_event, timeoutSeconds=900)
    assert on_main == {True}, "progress callbacks must run on the main thread"
    from GlandSegLib.progress import STAGES

    order = [name for name, _weight in STAGES] + ["done"]
    progress = [e for e in events if e.kind == "progress"]
    assert len(progress) >= 3, [e.stage for e in events]
    stages = [e.stage for e in progress]
    assert stages == sorted(stages, key=order.index)
    fractions = [e.fraction for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert env.events["processEvents"] > 0, "the application was not given a chance to repaint"

    segmentation = seg.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())] == \
        [g.name for g in GLANDS]
    assert seg.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) is ct_node
    assert logic.lastReport.get("model", {}).get("name")
    rows = N.table_rows(logic.statisticsTableNode(seg))
    found = [r for r in rows if r["Volume"] > 0]
    assert len(found) >= 4, rows
    for row in found:
        assert row["Uptake mean"] == pytest.approx(c, rel=1e-6) and row["Uptake max"] == pytest.approx(c, rel=1e-6)
        # the table's volume is rounded to 0.001 ml; the total comes from the voxels
        assert row["Uptake total"] == pytest.approx(c * row["Volume"], abs=c * 0.0005 + 1e-6)
    assert list(env.temp.iterdir()) == []
    print(f"segment on the sample: {time.monotonic() - t0:.1f} s")


def test_logic_show_head_box_adds_an_roi(glandseg_module):
    from GlandSegLib.segmentation.headbox import locate_head

    env = glandseg_module
    ct = sitk.ReadImage(str(SAMPLE))
    node = N.add_volume_from_sitk(env.scene, ct, "ct")
    roi, box = env.module.GlandSegLogic().showHeadBox(node)
    assert roi.GetClassName() == "vtkMRMLMarkupsROINode" and roi.GetScene() is env.scene
    expected = locate_head(ct)
    np.testing.assert_allclose(N.roi_to_box(roi).lower, expected.lower, atol=1e-6)
    again, _ = env.module.GlandSegLogic().showHeadBox(node, roi)
    assert again is roi


# ----------------------------------------------------------------------------- the panel's job handling

TREE = textwrap.dedent("""
    import subprocess, sys, time
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"]) for _ in range(2)]
    print("workers " + " ".join(str(k.pid) for k in kids), flush=True)
    print('{"stage": "inference", "fraction": 0.5, "message": "tile 1/2"}', flush=True)
    time.sleep(300)
""")


def _panel(env):
    widget = env.module.GlandSegWidget()
    widget.logic = env.module.GlandSegLogic()
    names = ("applyButton", "inputVolumeSelector", "uptakeVolumeSelector", "modelComboBox", "installModelButton",
             "deviceComboBox", "headBoxSelector", "showHeadBoxButton", "outputSegmentationSelector",
             "recomputeStatisticsButton", "installDependenciesButton", "refreshModelsButton", "progressBar",
             "statusLabel", "logTextEdit", "warningsLabel", "uncertaintyCheckBox", "measureCorrectionsButton")
    widget.ui = types.SimpleNamespace(**{n: FakeWidget() for n in names})
    return widget


def _tree_job(tmp_path: Path) -> process.CliJob:
    """A CliJob whose child is a stand-in for the CLI with two workers (seconds, not a model run)."""
    script = tmp_path / "cli.py"
    script.write_text(TREE)
    job = process.CliJob(["models"])
    job.on_event = None
    job.run = runner.ProcessRun([sys.executable, str(script)], on_stdout=job._stdout, on_stderr=job._stderr)
    return job


def _fire_until(widget, condition, timeout_s=30):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline
        widget._timer.fire()
        time.sleep(0.05)


def _workers(widget) -> list[int]:
    lines = [args[0] for name, args in widget.ui.logTextEdit.calls if name == "appendPlainText"]
    return [int(p) for line in lines if line.startswith("workers ") for p in line.split()[1:]]


@pytest.mark.skipif(os.name == "nt", reason="the tree is inspected through /proc or ps (POSIX)")
def test_panel_job_output_on_the_main_thread_and_cleanup_ends_the_tree(glandseg_module, tmp_path):
    """The panel polls its job from a QTimer (main thread); unloading the module (cleanup)
    ends the command and its workers at once, and calls nothing afterwards."""
    widget = _panel(glandseg_module)
    job = _tree_job(tmp_path)
    job.on_event = widget.handleEvent
    finished: list = []
    assert widget.startJob(job, finished.append, "Starting...")
    assert widget.ui.applyButton.text == "Cancel" and widget._timer.interval == glandseg_module.module.POLL_MS
    _fire_until(widget, lambda: len(_workers(widget)) == 2 and ("setValue", (50,)) in widget.ui.progressBar.calls)
    pids = [job.run.pid, *_workers(widget)]
    widget.cleanup()
    assert widget._job is None and not widget._timer.active and finished == []
    time.sleep(0.5)
    assert [p for p in pids if runner.is_alive(p)] == []


@pytest.mark.skipif(os.name == "nt", reason="the tree is inspected through /proc or ps (POSIX)")
def test_panel_cancel_stops_the_tree_and_reports_once(glandseg_module, tmp_path):
    widget = _panel(glandseg_module)
    job = _tree_job(tmp_path)
    job.on_event = widget.handleEvent
    finished: list = []
    widget.startJob(job, finished.append, "Starting...")
    _fire_until(widget, lambda: len(_workers(widget)) == 2)
    pids = [job.run.pid, *_workers(widget)]
    widget.onApplyButton()  # the button reads "Cancel" while a job runs
    _fire_until(widget, lambda: finished)
    assert finished == [job] and job.cancelled and job.error().cancelled
    assert widget._job is None and widget.ui.applyButton.text == "Segment glands"
    time.sleep(0.5)
    assert [p for p in pids if runner.is_alive(p)] == []


def test_untrusted_model_refusal_is_recognised_and_trust_is_explicit():
    """The panel asks before rerunning with --trust-model; only the CLI's refusal triggers that."""
    refusal = ["error: /m/fold_all/checkpoint_final.pth: the checkpoint asks to run or construct posix.system, "
               "which a plain nnU-Net checkpoint never needs; refused. Load it only if you trust its origin (--trust-model)"]
    assert process.needs_trust(7, refusal)
    assert not process.needs_trust(7, ["error: model 'x' not found"])
    assert not process.needs_trust(4, refusal)
    args = process.segment_arguments("ct.nrrd", "out", trust_model=True)
    assert "--trust-model" in args and "--trust-model" not in process.segment_arguments("ct.nrrd", "out")
    assert build_parser().parse_args(args).trust_model is True
