"""GlandSeg's self-test inside the real 3D Slicer (Developer mode > Reload and Test, or ctest -R py_GlandSeg).

GlandSeg.py imports `GlandSegTest` from here, which is where Slicer looks for it.
"""

from __future__ import annotations

import qt
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest

from GlandSegSlicerLib import nodes, process, runner
from GlandSegSlicerLib.logic import SAMPLE_CT, GlandSegLogic, loadTerminology
from GlandSegLib.glands import GLANDS



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
        threads = set()

        def onEvent(event):  # runs on the main thread: may touch widgets
            import threading

            threads.add(threading.current_thread() is threading.main_thread())
            events.append(event)
            slicer.util.showStatusMessage(f"GlandSeg test: {event.stage} {event.message}")

        seg = logic.segment(ct, device="auto", progressCallback=onEvent, timeoutSeconds=1800)
        self.assertTrue(any(e.kind == "progress" for e in events))
        self.assertEqual(threads, {True}, "progress callbacks must run on the main thread")
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
        # the correction measured against the kept original: the erased parotid removed, the rest untouched
        self.assertGreaterEqual(int(seg.GetAttribute("GlandSeg.edits")), 1)
        changes = {r["Gland"]: r for r in nodes.table_rows(logic.measureCorrections(seg))}
        self.assertEqual(changes["right parotid gland"]["Change"], "removed")
        self.assertEqual(changes["left parotid gland"]["Added path length"], 0.0)
        self.assertEqual(len(nodes.table_rows(logic.reviewTableNode(seg))), 6)
        self.delayDisplay(f"segmented, warnings: {logic.lastWarnings}")

    def test_panel_cancel_leaves_scene_unchanged(self):
        ct = self._sample()
        widget = slicer.modules.glandseg.widgetRepresentation().self()
        widget.ui.inputVolumeSelector.setCurrentNode(ct)
        widget.ui.outputSegmentationSelector.setCurrentNode(None)
        widget.ui.headBoxSelector.setCurrentNode(None)
        nodes_before = slicer.mrmlScene.GetNumberOfNodes()
        widget.onApplyButton()
        self.assertIsNotNone(widget._job, "the segmentation process did not start")
        self.assertEqual(widget.ui.applyButton.text, "Cancel")
        timer = qt.QElapsedTimer()
        timer.start()
        while widget._job is not None and widget.ui.progressBar.value < 5 and timer.elapsed() < 120000:
            slicer.app.processEvents()
        job = widget._job
        tree = [job.run.pid, *runner.descendants(job.run.pid)] if job is not None and not runner.WINDOWS else []
        widget.cancel()
        while widget._job is not None and timer.elapsed() < 180000:
            slicer.app.processEvents()
        self.assertIsNone(widget._job, "the process did not stop after Cancel")
        # the launcher, the CLI and nnU-Net's workers are all gone (Windows: check Task Manager)
        self.assertEqual([p for p in tree if runner.is_alive(p)], [], "processes left running after Cancel")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes_before)
        self.assertEqual(widget.ui.applyButton.text, "Segment glands")
        self.delayDisplay("cancel left the scene unchanged")
