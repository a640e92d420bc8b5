"""GlandSegSlicerLib.runner for real: process trees end, callbacks stay on the polling thread.

A child that starts grandchildren (one ignores SIGTERM, one leaves the process group, one
starts a child of its own) stands in for `PythonSlicer` -> `python-real` -> nnU-Net workers.
After Cancel, after `stop()` (module unloaded) and after the owning interpreter exits
(Slicer closed), none of them may be left. What only Windows can show (taskkill /F /T on
the launcher, no console windows) is checked here through the arguments the runner passes;
a person checks it in Task Manager (README, Release checklist).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "GlandSeg"
sys.path.insert(0, str(MODULE))

from GlandSegSlicerLib import process, runner  # noqa: E402

posix_only = pytest.mark.skipif(os.name == "nt", reason="the tree is inspected through /proc or ps (POSIX)")

TREE = textwrap.dedent("""
    import os, signal, subprocess, sys, time
    role, pidfile = sys.argv[1], sys.argv[2]

    def record():
        with open(pidfile, "a") as f:
            f.write(f"{role} {os.getpid()}\\n")

    def spawn(r, **kw):
        return subprocess.Popen([sys.executable, __file__, r, pidfile], **kw)

    if role == "root":
        spawn("mid")
        spawn("stubborn")
        spawn("escapee", start_new_session=True)  # leaves the process group: found as a descendant
        record()
        print("root running", flush=True)
    elif role == "mid":
        spawn("leaf")
        record()
    elif role == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
        record()
    else:
        record()
    while True:
        time.sleep(0.1)
""")
ROLES = {"root", "mid", "leaf", "stubborn", "escapee"}


def start_tree(tmp_path: Path, **kwargs) -> tuple[runner.ProcessRun, Path]:
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    pidfile = tmp_path / "pids.txt"
    run = runner.ProcessRun([sys.executable, str(script), "root", str(pidfile)], **kwargs).start()
    return run, pidfile


def recorded(pidfile: Path) -> dict[str, int]:
    if not pidfile.exists():
        return {}
    return {role: int(pid) for role, pid in (line.split() for line in pidfile.read_text().splitlines() if line.strip())}


def wait_for_tree(run: runner.ProcessRun | None, pidfile: Path, timeout_s: float = 60) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while set(recorded(pidfile)) != ROLES:
        assert time.monotonic() < deadline, f"the tree did not start: {recorded(pidfile)}"
        if run is not None:
            run.poll()
        time.sleep(0.05)
    return recorded(pidfile)


def survivors(pids: dict[str, int], settle_s: float = 5.0) -> dict[str, int]:
    deadline = time.monotonic() + settle_s
    while True:
        alive = {role: pid for role, pid in pids.items() if runner.is_alive(pid)}
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


@pytest.fixture
def reap_leftovers():
    """Never leave a process behind, whatever a failing test did."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, 9)
        except (ProcessLookupError, PermissionError):
            pass


@posix_only
def test_cancel_ends_the_whole_tree(tmp_path, reap_leftovers):
    lines: list[str] = []
    run, pidfile = start_tree(tmp_path, on_stdout=lines.append)
    pids = wait_for_tree(run, pidfile)
    reap_leftovers.extend(pids.values())
    assert set(runner.descendants(pids["root"])) >= {pids["mid"], pids["leaf"], pids["stubborn"], pids["escapee"]}
    t0 = time.monotonic()
    run.cancel(grace_s=1.0)
    run.wait(timeout_s=30)
    assert run.finished and run.cancelled and run.exit_code != 0
    assert survivors(pids) == {}, "processes left running after Cancel"
    assert time.monotonic() - t0 < 15
    assert lines == ["root running"]
    assert run not in runner.live_runs()


@posix_only
def test_stop_ends_the_tree_at_once_and_drops_further_output(tmp_path, reap_leftovers):
    """The module unloaded or reloaded: `stop()` returns only when nothing is left."""
    lines: list[str] = []
    run, pidfile = start_tree(tmp_path, on_stdout=lines.append)
    pids = wait_for_tree(None, pidfile)  # nobody polls: nothing is delivered
    reap_leftovers.extend(pids.values())
    assert lines == []
    run.stop(grace_s=0.5)
    assert run.finished
    assert survivors(pids, settle_s=2.0) == {}
    assert lines == [], "no callback may run during or after stop()"


@posix_only
def test_application_exit_ends_the_tree(tmp_path, reap_leftovers):
    """Slicer closing: the interpreter that started the run exits without any Cancel; the
    runner's exit hook (also connected to aboutToQuit in the application) ends the tree."""
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    pidfile = tmp_path / "pids.txt"
    app = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(MODULE)!r})
        from GlandSegSlicerLib import runner
        run = runner.ProcessRun([sys.executable, {str(script)!r}, "root", {str(pidfile)!r}]).start()
        deadline = time.monotonic() + 60

        def started():
            return os.path.exists({str(pidfile)!r}) and len(open({str(pidfile)!r}).read().split()) >= {2 * len(ROLES)}

        while not started():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        print("closing", flush=True)
        sys.exit(0)  # no cancel, no stop: as when the user closes Slicer
    """)
    r = subprocess.run([sys.executable, "-c", app], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "closing" in r.stdout, r.stderr
    pids = recorded(pidfile)
    reap_leftovers.extend(pids.values())
    assert set(pids) == ROLES
    assert survivors(pids) == {}, "processes outlived the application"


def test_callbacks_run_on_the_polling_thread_only(tmp_path):
    """Reader threads only queue; stdout and stderr reach the callbacks inside poll()/wait(),
    on the thread that calls them (Slicer's main thread), complete and in order."""
    script = tmp_path / "talk.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        for i in range(20):
            print(f"out {i}", flush=True)
            if i % 5 == 0:
                print(f"err {i}", file=sys.stderr, flush=True)
            time.sleep(0.01)
    """))
    calls: list[tuple[str, str, bool]] = []

    def on(kind):
        return lambda line: calls.append((kind, line, threading.current_thread() is threading.main_thread()))

    run = runner.ProcessRun([sys.executable, str(script)], on_stdout=on("out"), on_stderr=on("err")).start()
    time.sleep(1.5)  # the child is done by now; nobody polled
    assert calls == [], "a callback ran without poll(): it came from a reader thread"
    run.wait(timeout_s=30)
    assert run.exit_code == 0
    assert all(main for _k, _l, main in calls)
    assert [line for k, line, _m in calls if k == "out"] == [f"out {i}" for i in range(20)]
    assert [line for k, line, _m in calls if k == "err"] == ["err 0", "err 5", "err 10", "err 15"]


def test_wait_keeps_the_application_responsive_and_can_cancel(tmp_path):
    """`idle` (slicer.app.processEvents in Slicer) runs while waiting; `should_cancel` stops."""
    script = tmp_path / "sleep.py"
    script.write_text("import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    ticks: list[float] = []
    run = runner.ProcessRun([sys.executable, str(script)])
    t0 = time.monotonic()
    run.wait(idle=lambda: ticks.append(time.monotonic()), should_cancel=lambda: time.monotonic() - t0 > 1.0, grace_s=2)
    assert run.cancelled and run.exit_code != 0 and time.monotonic() - t0 < 20
    assert len(ticks) > 10


@posix_only
def test_a_worker_holding_the_output_open_does_not_block_the_end(tmp_path, reap_leftovers):
    """The child exits, a worker it left behind still holds stdout: the run ends after the
    grace period and the worker is killed (TotalSegmentator met this with nnU-Net on macOS)."""
    pidfile = tmp_path / "worker.pid"
    script = tmp_path / "leave.py"
    script.write_text(textwrap.dedent(f"""
        import subprocess, sys
        w = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pidfile)!r}, "w").write(str(w.pid))
        print("bye", flush=True)
    """))
    run = runner.ProcessRun([sys.executable, str(script)], eof_grace_s=1.0).start()
    t0 = time.monotonic()
    run.wait(timeout_s=60)
    worker = int(pidfile.read_text())
    reap_leftovers.append(worker)
    assert run.exit_code == 0 and not run.cancelled
    assert time.monotonic() - t0 < 20
    assert survivors({"worker": worker}) == {}


def test_windows_children_get_no_console_window(monkeypatch):
    """CREATE_NO_WINDOW and a hidden STARTUPINFO, as slicer.util.launchConsoleProcess sets,
    for the child and for taskkill; POSIX gets a session of its own instead."""

    class StartupInfo:
        def __init__(self):
            self.dwFlags = 0
            self.wShowWindow = 1

    monkeypatch.setattr(subprocess, "STARTUPINFO", StartupInfo, raising=False)
    options = runner.popen_options(windows=True)
    assert options["creationflags"] & 0x08000000  # CREATE_NO_WINDOW
    assert options["startupinfo"].dwFlags & 0x1 and options["startupinfo"].wShowWindow == 0  # SW_HIDE
    assert "start_new_session" not in options
    assert runner.popen_options(windows=False) == {"start_new_session": True}

    seen = {}
    monkeypatch.setattr(subprocess, "run", lambda args, **kw: seen.update(args=args, **kw) or subprocess.CompletedProcess(args, 0))
    assert runner.run_hidden(["taskkill", "/F", "/T", "/PID", "42"], windows=True) == 0
    assert seen["creationflags"] & 0x08000000 and seen["startupinfo"].wShowWindow == 0


def test_windows_cancel_kills_the_launcher_tree_at_once(monkeypatch):
    """Windows: taskkill /F /T on the launcher's pid (the /F a windowless Python needs), at
    the first Cancel, not after a grace period."""
    calls: list[list[str]] = []
    monkeypatch.setattr(runner, "WINDOWS", True)
    monkeypatch.setattr(runner, "run_hidden", lambda args, **kw: calls.append(list(args)) or 0)
    assert runner.signal_tree(4242, force=False) == {4242}
    assert calls == [["taskkill", "/F", "/T", "/PID", "4242"]]

    class FakeProc:
        pid = 777
        returncode = None

        def poll(self):
            return None

    run = runner.ProcessRun(["x"])
    run.proc = FakeProc()
    calls.clear()
    run.cancel(grace_s=10)
    assert calls == [["taskkill", "/F", "/T", "/PID", "777"]]


@posix_only
def test_cli_cancel_goes_through_the_cli_handler(tmp_path):
    """The real `glandseg`: Cancel sends SIGTERM first, the CLI exits 130 through its own
    handler (`error: cancelled`), writes nothing, and no process of its tree survives."""
    out = tmp_path / "ph"
    job = process.CliJob(["phantom", "-o", str(out), "--field", "wholebody"]).start()
    t0 = time.monotonic()
    tree: set[int] = set()
    while time.monotonic() - t0 < 4.0:  # past interpreter start-up: the CLI's SIGTERM handler is installed
        job.poll()
        tree |= {job.run.pid, *runner.descendants(job.run.pid)}
        time.sleep(0.1)
    job.cancel(grace_s=10)
    with pytest.raises(process.GlandSegRunError) as err:
        job.wait(timeout_s=60)
    assert err.value.cancelled and err.value.exit_code == process.CANCELLED_EXIT_CODE
    assert "error: cancelled" in err.value.log
    assert time.monotonic() - t0 < 25, "cancel took too long (the wholebody phantom takes ~30 s)"
    assert not (out / "ct.nii.gz").exists()
    assert survivors({str(p): p for p in tree}) == {}


def test_a_failing_callback_while_waiting_leaves_nothing_running(tmp_path):
    """A console user's progressCallback raises: the error reaches them, the child is gone."""
    script = tmp_path / "talk.py"
    script.write_text("import time\nprint('hello', flush=True)\ntime.sleep(60)\n")

    def boom(_line):
        raise RuntimeError("callback failed")

    run = runner.ProcessRun([sys.executable, str(script)], on_stdout=boom)
    with pytest.raises(RuntimeError, match="callback failed"):
        run.wait(timeout_s=30)
    assert run.finished and run.proc.poll() is not None
    assert run not in runner.live_runs()
