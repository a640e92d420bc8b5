"""A child process and everything it starts, run without Qt: the one way GlandSeg runs work.

Both the panel and the Python console start the `glandseg` command line through this class;
the panel polls it from a QTimer, the console waits on it. What it guarantees:

- **Callbacks on the caller's thread.** Two reader threads only put output lines in a
  queue; `poll()` hands them to the callbacks on whichever thread calls it (Slicer's main
  thread: the panel's QTimer, or the console's `wait()`), the way Slicer's own background
  runners do. No callback ever runs on a reader thread, so a callback may touch Qt and MRML.
- **The whole tree stops.** On Windows Slicer starts Python through the `PythonSlicer`
  launcher, which starts `python-real` as a child of its own, which starts nnU-Net's
  workers: stopping the launcher alone leaves the work running. Cancel and `stop()` end the
  root, every descendant and (POSIX) the child's own process group, SIGTERM first (the CLI
  exits 130 through its handler) and SIGKILL after a grace period; on Windows `taskkill /F
  /T` at once (a windowless Python ignores a polite request).
- **Nothing outlives Slicer.** Every running instance is registered; `stop_all()` runs at
  interpreter exit (atexit) and from Slicer's aboutToQuit and the module's cleanup.
- **No console windows** on Windows (CREATE_NO_WINDOW, hidden STARTUPINFO), as Slicer's own
  `slicer.util.launchConsoleProcess` does, for the child and for `taskkill`.

No slicer, qt or GlandSegLib import here: Testing/test_slicer_runner.py runs it for real.
"""

from __future__ import annotations

import atexit
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

WINDOWS = os.name == "nt"
CREATE_NO_WINDOW = 0x08000000  # subprocess.CREATE_NO_WINDOW, defined on Windows only
STARTF_USESHOWWINDOW = 0x00000001
SW_HIDE = 0


def popen_options(windows: bool = WINDOWS) -> dict:
    """Popen keyword arguments for a child GlandSeg starts.

    Windows: no console window (the child and anything it starts with a console would flash
    one up otherwise). POSIX: a session of its own, so the child and everything it starts
    form one process group (id = the child's pid) that can be signalled at once, and a Ctrl-C
    in the terminal that started Slicer does not reach it.
    """
    if windows:
        info = subprocess.STARTUPINFO()  # type: ignore[attr-defined]  (Windows only)
        info.dwFlags |= STARTF_USESHOWWINDOW
        info.wShowWindow = SW_HIDE
        return {"startupinfo": info, "creationflags": CREATE_NO_WINDOW}
    return {"start_new_session": True}


def run_hidden(args: Sequence[str], timeout_s: float = 30.0, windows: bool = WINDOWS) -> int:
    """Run a short helper command (taskkill) without a console window; its exit code."""
    options = popen_options(windows)
    options.pop("start_new_session", None)
    try:
        return subprocess.run(list(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                              timeout=timeout_s, **options).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1


# --------------------------------------------------------------------------------------
# Process trees (POSIX; Windows uses taskkill /T)
# --------------------------------------------------------------------------------------

def _proc_table_linux() -> dict[int, tuple[int, str]] | None:
    """pid -> (parent pid, state) from /proc; None where there is no /proc."""
    root = Path("/proc")
    if not (root / "self" / "stat").exists():
        return None
    table: dict[int, tuple[int, str]] = {}
    for entry in root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if len(fields) >= 2:
            table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def _proc_table_ps() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, state) from `ps` (macOS, BSD)."""
    try:
        out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "stat="], capture_output=True,
                             text=True, check=False, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    table: dict[int, tuple[int, str]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
            table[int(parts[0])] = (int(parts[1]), parts[2][:1])
    return table


def process_table() -> dict[int, tuple[int, str]]:
    table = _proc_table_linux()
    return table if table is not None else _proc_table_ps()


def descendants(pid: int, table: dict[int, tuple[int, str]] | None = None) -> list[int]:
    """Every process below `pid` (children, grandchildren, ...), found now."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for child, (parent, _state) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if p in found or p == pid:
            continue
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def is_alive(pid: int, table: dict[int, tuple[int, str]] | None = None) -> bool:
    """True while `pid` runs (POSIX; a zombie, dead but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    table = process_table() if table is None else table
    return table.get(pid, (0, "?"))[1] not in ("Z", "X")


def signal_tree(root: int, *, force: bool, known: Iterable[int] = (), group: int | None = None) -> set[int]:
    """Stop `root` and everything below it; returns the pids signalled (POSIX).

    POSIX: SIGTERM (or SIGKILL with force) to every descendant found now and to `known`
    (found earlier: they may have left the tree since, when their parent died), and to
    their process groups and `group` (the child's own group: it also reaches orphans whose
    parent is gone), never to Slicer's own group. Windows: `taskkill /F /T`, which ends the
    launcher and all it started.
    """
    if WINDOWS:
        run_hidden(["taskkill", "/F", "/T", "/PID", str(root)])
        return {root}
    sig = signal.SIGKILL if force else signal.SIGTERM
    targets = {root, *descendants(root), *known}
    own_group = os.getpgrp()
    groups: set[int] = {group} if group else set()
    for pid in targets:
        try:
            groups.add(os.getpgid(pid))
        except (ProcessLookupError, PermissionError):
            pass
    for group in groups - {own_group}:
        try:
            os.killpg(group, sig)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in targets:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
    return targets


# --------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------

_LIVE: set[ProcessRun] = set()
_LIVE_LOCK = threading.Lock()


class ProcessRun:
    """One child process: start, poll (callbacks on the polling thread), cancel, stop, wait.

    on_stdout / on_stderr receive one decoded line at a time (no line end), only from
    `poll()` or `wait()`. `finished` becomes True once the child has exited and all of its
    output has been delivered; `exit_code` is then its exit status (negative: killed by a
    signal, POSIX).
    """

    def __init__(self, args: Sequence[str], *, env: dict[str, str] | None = None, cwd: str | None = None,
                 on_stdout: Callable[[str], None] | None = None, on_stderr: Callable[[str], None] | None = None,
                 eof_grace_s: float = 2.0):
        self.args = [str(a) for a in args]
        self.env = env
        self.cwd = cwd
        self.on_stdout = on_stdout
        self.on_stderr = on_stderr
        self.eof_grace_s = eof_grace_s
        self.proc: subprocess.Popen | None = None
        self.exit_code: int | None = None
        self.finished = False
        self.cancelled = False
        self._queue: queue.Queue = queue.Queue()
        self._open_streams = 0
        self._exited_at: float | None = None
        self._force_at: float | None = None
        self._known: set[int] = set()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ProcessRun:
        if self.proc is not None:
            raise RuntimeError("already started")
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=self.env, cwd=self.cwd, **popen_options())
        with _LIVE_LOCK:
            _LIVE.add(self)
        for name, stream in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            t = threading.Thread(target=self._read, args=(name, stream), name=f"GlandSeg {name} reader", daemon=True)
            self._open_streams += 1
            self._threads.append(t)
            t.start()
        return self

    @property
    def _group(self) -> int | None:
        """The child's process group (POSIX: its own session, id = its pid) while it is ours."""
        return None if WINDOWS or self.proc is None or self.finished else self.proc.pid

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and not self.finished

    def _read(self, name: str, stream) -> None:
        """Reader thread: lines into the queue, nothing else (never a callback)."""
        try:
            for raw in iter(stream.readline, b""):
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                text = text.split("\r")[-1]  # a progress bar redrawn with \r: its last state
                self._queue.put((name, text))
        except (OSError, ValueError):
            pass
        finally:
            self._queue.put((name, None))

    def poll(self) -> bool:
        """Deliver pending output on this thread, enforce Cancel's deadline; True when finished."""
        if self.proc is None or self.finished:
            return self.finished
        self._deliver()
        now = time.monotonic()
        if self._force_at is not None and now >= self._force_at and self.proc.poll() is None:
            self._known |= signal_tree(self.proc.pid, force=True, known=self._known, group=self._group)
            self._force_at = None
        if self.proc.poll() is None:
            return False
        if self._exited_at is None:
            self._exited_at = now
        if self._open_streams > 0 and now - self._exited_at < self.eof_grace_s:
            return False  # output still arriving
        if self._open_streams > 0:
            # the child is gone but something it started still holds its output open
            self._known |= signal_tree(self.proc.pid, force=True, known=self._known, group=self._group)
        self._deliver()
        self._finish()
        return True

    def _deliver(self) -> None:
        while True:
            try:
                name, text = self._queue.get_nowait()
            except queue.Empty:
                return
            if text is None:
                self._open_streams -= 1
                continue
            callback = self.on_stdout if name == "stdout" else self.on_stderr
            if callback is not None and text.strip():
                callback(text)

    def _finish(self) -> None:
        self.exit_code = self.proc.returncode
        self.finished = True
        with _LIVE_LOCK:
            _LIVE.discard(self)

    # ------------------------------------------------------------------ stopping

    def cancel(self, grace_s: float = 10.0) -> None:
        """Ask the whole tree to stop now; `poll()` kills it after `grace_s` if it has not.

        Windows: forced at once (taskkill /F /T): there is no polite signal a windowless
        process group receives there.
        """
        if self.proc is None or self.finished:
            return
        self.cancelled = True
        self._known |= signal_tree(self.proc.pid, force=WINDOWS, known=self._known, group=self._group)
        if self._force_at is None:
            self._force_at = time.monotonic() + max(grace_s, 0.0)

    def kill(self) -> None:
        """Kill the whole tree at once (SIGKILL / taskkill /F /T)."""
        if self.proc is None:
            return
        self.cancelled = self.cancelled or not self.finished
        self._known |= signal_tree(self.proc.pid, force=True, known=self._known, group=self._group)

    def stop(self, grace_s: float = 2.0) -> None:
        """Synchronously end the tree: polite, then forced after `grace_s`; for unload and exit.

        Output still queued is dropped (no callbacks: the receiver may be going away).
        """
        if self.proc is None or self.finished:
            return
        self.on_stdout = self.on_stderr = None
        self.cancel(grace_s)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and (self.proc.poll() is None or self._tree_alive()):
            time.sleep(0.05)
        self.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for t in self._threads:
            t.join(timeout=1)
        self._deliver()
        self._finish()

    def _tree_alive(self) -> bool:
        if WINDOWS:
            return False
        table = process_table()
        return any(is_alive(p, table) for p in self._known if p != self.proc.pid)

    # ------------------------------------------------------------------ waiting

    def wait(self, timeout_s: float | None = None, *, idle: Callable[[], None] | None = None,
             should_cancel: Callable[[], bool] | None = None, interval_s: float = 0.05,
             grace_s: float = 10.0) -> int:
        """Block until finished, delivering output on this thread; the exit code.

        `idle` runs between polls (in Slicer: slicer.app.processEvents, so the application
        stays responsive); `should_cancel` and `timeout_s` cancel as the panel's button does.
        """
        if self.proc is None:
            self.start()
        start = time.monotonic()
        self.timed_out = False
        try:
            while not self.poll():
                if not self.cancelled:
                    if should_cancel is not None and should_cancel():
                        self.cancel(grace_s)
                    elif timeout_s is not None and time.monotonic() - start > timeout_s:
                        self.timed_out = True
                        self.cancel(grace_s)
                if idle is not None:
                    idle()
                time.sleep(interval_s)
        except BaseException:  # a callback failed, Ctrl-C in a console: leave nothing running
            self.stop(grace_s=2.0)
            raise
        return self.exit_code

    timed_out = False


def live_runs() -> list[ProcessRun]:
    with _LIVE_LOCK:
        return list(_LIVE)


def stop_all(grace_s: float = 2.0) -> int:
    """Stop every running child of this process (Slicer closing, module unloaded); how many."""
    runs = live_runs()
    for run in runs:
        run.on_stdout = run.on_stderr = None
        run.cancel(grace_s)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(r.proc is not None and r.proc.poll() is None for r in runs):
        time.sleep(0.05)
    for run in runs:
        run.stop(0.0)
    return len(runs)


atexit.register(stop_all)
