"""The Slicer module's side of the `glandseg` command line: build it, run it, read it, stop it.

Segmentation and model installation run in a separate process so Slicer's GUI never waits
on nnU-Net and Cancel can stop them at any moment. This module holds everything about that
process that does not need Qt or MRML (command line, progress-line protocol, exit codes,
dependency list) and `CliJob`, the command run through `runner.ProcessRun` (whole-tree
Cancel, callbacks on the polling thread), shared by the panel (polled from a QTimer) and the
synchronous `GlandSegLogic.segment` / `installModel` (Python console).

It never imports slicer, qt or GlandSegLib's heavy parts at import time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable, Iterable, Sequence

from . import runner

MODULE_DIR = Path(__file__).resolve().parent.parent  # the folder of GlandSeg.py

# Exit codes of `glandseg` (GlandSegLib/cli/main.py) and what the user can do about each.
EXIT_HINTS: dict[int, str] = {
    2: "the GlandSeg command line rejected its arguments (a version mismatch between the module and GlandSegLib?)",
    3: "the input image could not be found or read",
    4: "the input is not a usable CT (2D image, MR intensities, corrupt header?)",
    5: "the DICOM folder holds several CT series; choose one",
    6: "no head was found in the CT; check the volume, or place the head box by hand",
    7: "the model is missing, incomplete or modified; reinstall it",
    8: "the output folder already holds results",
    9: "a required tool or device is missing (CUDA GPU requested on a machine without one?)",
    70: "internal error in GlandSeg: please report it together with the log",
    130: "cancelled",
}
CANCELLED_EXIT_CODE = 130

# Python packages GlandSegLib needs in Slicer's Python, as (import name, pip requirement).
# Mirrors the `dependencies` of pyproject.toml (a test keeps the two in step). How and in
# which order each is installed in Slicer (NNUNet and PyTorch extensions, pip, or Slicer's
# own) is decided by install.install_plan, not by this order.
REQUIREMENTS: tuple[tuple[str, str], ...] = (
    ("torch", "torch>=2.1"),
    ("numpy", "numpy>=1.24"),
    ("SimpleITK", "SimpleITK>=2.3"),
    ("scipy", "scipy>=1.10"),
    ("nnunetv2", "nnunetv2>=2.5,<2.9"),
    ("matplotlib", "matplotlib>=3.7"),
    ("pydicom", "pydicom>=2.4"),
)


# --------------------------------------------------------------------------------------
# Where GlandSegLib is, and how to start Python on it
# --------------------------------------------------------------------------------------

def lib_parent() -> Path:
    """The folder that contains the GlandSegLib package.

    Installed extension: GlandSegLib sits next to GlandSeg.py (both in qt-scripted-modules).
    Source checkout used through "Additional module paths": GlandSeg/ and GlandSegLib/ are
    siblings, so the parent of this folder holds it.
    """
    for candidate in (MODULE_DIR, MODULE_DIR.parent):
        if (candidate / "GlandSegLib" / "__init__.py").is_file():
            return candidate
    raise ModuleNotFoundError(f"GlandSegLib not found next to {MODULE_DIR} or in {MODULE_DIR.parent}")


def ensure_lib_on_path() -> Path:
    """Make `import GlandSegLib` work in this process (source checkout case); return its parent."""
    parent = lib_parent()
    if importlib.util.find_spec("GlandSegLib") is None and str(parent) not in sys.path:
        sys.path.insert(0, str(parent))
    return parent


def resource_path(*parts: str) -> Path | None:
    """A file of the extension's Resources, in the installed or the source layout, or None."""
    for root in (MODULE_DIR / "Resources", MODULE_DIR.parent / "Resources"):
        p = root.joinpath(*parts)
        if p.exists():
            return p
    return None


def python_executable() -> str:
    """The Python that has GlandSeg's dependencies: Slicer's own, else this interpreter.

    Inside Slicer `sys.executable` can be the application itself, so the `PythonSlicer`
    launcher on PATH is preferred (it also sets Slicer's library environment).
    """
    for name in ("PythonSlicer", "PythonSlicer.exe"):
        found = shutil.which(name)
        if found:
            return found
    return sys.executable


# How the child runs the CLI: as `python -m GlandSegLib.cli`, but named `glandseg` in its
# messages. The child is started in a session of its own (runner.popen_options), so on POSIX
# the launcher, the CLI and nnU-Net's workers form one process group from the first moment.
BOOTSTRAP = (
    "import runpy, sys\n"
    "sys.argv = ['glandseg'] + sys.argv[1:]\n"
    "runpy.run_module('GlandSegLib.cli', run_name='__main__', alter_sys=True)\n"
)


def launch_arguments(cli_args: Sequence[str]) -> tuple[str, list[str]]:
    """(program, arguments) that run `glandseg <cli_args>` with Slicer's Python."""
    return python_executable(), ["-u", "-c", BOOTSTRAP, *[str(a) for a in cli_args]]


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the child: GlandSegLib importable, output unbuffered.

    PYTHONPATH is prepended, not replaced: Slicer's launcher puts its own paths there.
    """
    env = dict(os.environ if base is None else base)
    parent = str(lib_parent())
    old = env.get("PYTHONPATH", "")
    env["PYTHONPATH"] = parent + (os.pathsep + old if old else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("nnUNet_n_proc_DA", "0")  # nnU-Net's data-augmentation workers are not needed at inference
    return env


# --------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------

DEVICE_CHOICES = {"auto": "auto", "gpu": "cuda", "cuda": "cuda", "cpu": "cpu"}


def cli_device(device: str) -> str:
    """The panel says GPU, the CLI says cuda."""
    try:
        return DEVICE_CHOICES[device.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown device {device!r}; use auto, gpu or cpu") from None


def format_box(box_lps: Sequence[float]) -> list[str]:
    """`--box xmin ymin zmin xmax ymax zmax` in LPS mm, rounded to 0.01 mm."""
    if len(box_lps) != 6:
        raise ValueError("a box needs six numbers: xmin ymin zmin xmax ymax zmax (LPS mm)")
    lo, hi = box_lps[:3], box_lps[3:]
    if any(high <= low for low, high in zip(lo, hi)):
        raise ValueError(f"empty box {list(box_lps)}")
    return ["--box", *[f"{float(v):.2f}" for v in box_lps]]


def segment_arguments(input_path: str | Path, output_dir: str | Path, *, model: str | None = None,
                      device: str = "auto", uptake_path: str | Path | None = None,
                      box_lps: Sequence[float] | None = None, overwrite: bool = True,
                     trust_model: bool = False, uncertainty: bool = False) -> list[str]:
    """Arguments of `glandseg segment ... --progress json` (the panel's machine-readable mode)."""
    args = ["segment", str(input_path), "-o", str(output_dir), "--device", cli_device(device), "--progress", "json"]
    if model:
        args += ["--model", str(model)]
    if uptake_path:
        args += ["--uptake", str(uptake_path)]
    if box_lps is not None:
        args += format_box(box_lps)
    if overwrite:
        args.append("--overwrite")
    if trust_model:
        args.append("--trust-model")
    if uncertainty:
        args.append("--uncertainty")
    return args


def needs_trust(exit_code: int, stderr_lines: Iterable[str]) -> bool:
    """The CLI refused a checkpoint that would run code; only the user may overrule that."""
    return exit_code == 7 and any("--trust-model" in line for line in stderr_lines)


@dataclass(frozen=True)
class Capabilities:
    """What the installed GlandSegLib's CLI accepts: the module adapts to older/newer libs."""

    commands: frozenset[str]
    segment_options: frozenset[str]

    @property
    def box(self) -> bool:
        return "--box" in self.segment_options

    @property
    def uncertainty(self) -> bool:
        return "--uncertainty" in self.segment_options

    @property
    def install_model(self) -> bool:
        return "install-model" in self.commands


def cli_capabilities() -> Capabilities:
    """Read the CLI's argparse parser in-process (cheap: cli.py imports nothing heavy)."""
    import argparse

    ensure_lib_on_path()
    from GlandSegLib.cli import build_parser

    parser = build_parser()
    commands: set[str] = set()
    segment_options: set[str] = set()
    for action in parser._actions:  # argparse has no public API for sub-commands
        if isinstance(action, argparse._SubParsersAction):
            commands.update(action.choices)
            seg = action.choices.get("segment")
            if seg is not None:
                for a in seg._actions:
                    segment_options.update(a.option_strings)
    return Capabilities(frozenset(commands), frozenset(segment_options))


# --------------------------------------------------------------------------------------
# The progress protocol: one JSON object a line on stdout, `error: ...` on stderr
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """One stdout line, classified.

    kind: "progress" (stage, fraction, message), "warning" (message), "text" (anything
    else: shown in the log, never fatal).
    """

    kind: str
    message: str = ""
    stage: str = ""
    fraction: float | None = None


def parse_line(line: str) -> Event:
    text = line.strip()
    if not text.startswith("{"):
        return Event("text", text)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return Event("text", text)
    if not isinstance(obj, dict):
        return Event("text", text)
    message = str(obj.get("message", ""))
    stage = str(obj.get("stage", ""))
    if obj.get("level") == "warning":
        return Event("warning", message, stage)
    if "fraction" in obj:
        try:
            fraction = min(max(float(obj["fraction"]), 0.0), 1.0)
        except (TypeError, ValueError):
            return Event("text", text)
        return Event("progress", message, stage, fraction)
    return Event("text", text)


# `error: ...` from GlandSeg, `glandseg segment: error: ...` from argparse (usage errors)
_ERROR_LINE = re.compile(r"^(?:glandseg[\w -]*: )?error: (.*)$")


def error_message(exit_code: int, stderr_lines: Iterable[str]) -> str:
    """The one line a user reads when the CLI failed.

    The CLI's own `error:` line is specific and actionable, so it is shown as is; the
    generic hint for the exit code is the fallback when the process died without one
    (killed, crashed interpreter, missing package before the CLI could start).
    """
    lines = list(stderr_lines)
    errors = [m.group(1).strip() for m in (_ERROR_LINE.match(ln.strip()) for ln in lines) if m]
    if errors:
        return errors[-1]
    hint = EXIT_HINTS.get(exit_code, f"GlandSeg stopped with exit code {exit_code}")
    tail = [ln.strip() for ln in lines if ln.strip()]
    return hint + (f": {tail[-1]}" if tail else "")


class GlandSegRunError(RuntimeError):
    """The CLI failed: `exit_code` is the CLI's, `log` the whole exchange for the user."""

    def __init__(self, message: str, exit_code: int, log: str = ""):
        super().__init__(message)
        self.exit_code = exit_code
        self.log = log

    @property
    def cancelled(self) -> bool:
        return self.exit_code == CANCELLED_EXIT_CODE


# --------------------------------------------------------------------------------------
# Running: one job, polled (panel) or waited for (console, self-test)
# --------------------------------------------------------------------------------------

@dataclass
class RunResult:
    exit_code: int
    warnings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


class CliJob:
    """`glandseg <cli_args>` in a child process: stdout lines become Events, stderr the log.

    Callbacks (`on_event`, `on_log`) run only inside `poll()` / `wait()`, on the thread that
    calls them; Cancel and `stop()` end the CLI and every worker it started (runner).
    """

    def __init__(self, cli_args: Sequence[str], *, on_event: Callable[[Event], None] | None = None,
                 on_log: Callable[[str], None] | None = None, env: dict[str, str] | None = None):
        self.cli_args = [str(a) for a in cli_args]
        self.on_event = on_event
        self.on_log = on_log
        self.result = RunResult(exit_code=-1)
        program, arguments = launch_arguments(self.cli_args)
        self.run = runner.ProcessRun([program, *arguments], env=child_environment(env), cwd=str(lib_parent()),
                                     on_stdout=self._stdout, on_stderr=self._stderr)

    def _stdout(self, line: str) -> None:
        ev = parse_line(line)
        if ev.kind == "warning":
            self.result.warnings.append(ev.message)
        self.result.log.append(line)
        if self.on_event is not None:
            self.on_event(ev)

    def _stderr(self, line: str) -> None:
        self.result.stderr.append(line)
        self.result.log.append(line)
        if self.on_log is not None:
            self.on_log(line)

    def start(self) -> CliJob:
        self.run.start()
        return self

    def poll(self) -> bool:
        done = self.run.poll()
        if done:
            self.result.exit_code = self.run.exit_code
        return done

    def cancel(self, grace_s: float = 10.0) -> None:
        self.run.cancel(grace_s)

    def stop(self, grace_s: float = 2.0) -> None:
        self.run.stop(grace_s)
        self.result.exit_code = self.run.exit_code if self.run.exit_code is not None else -1

    @property
    def running(self) -> bool:
        return self.run.running

    @property
    def cancelled(self) -> bool:
        return self.run.cancelled

    @property
    def exit_code(self) -> int | None:
        return self.run.exit_code

    def error(self) -> GlandSegRunError | None:
        """None after success; else the error a user reads (CLI's message, exit code, whole log)."""
        code = self.run.exit_code
        if code == 0:
            return None
        log = "\n".join(self.result.log)
        if self.run.cancelled:
            if self.run.timed_out:
                return GlandSegRunError("GlandSeg did not finish in time and was stopped", -1 if code is None else code, log)
            return GlandSegRunError("cancelled", CANCELLED_EXIT_CODE, log)
        return GlandSegRunError(error_message(-1 if code is None else code, self.result.stderr), -1 if code is None else code, log)

    def wait(self, *, timeout_s: float | None = None, cancel: threading.Event | None = None,
             idle: Callable[[], None] | None = None, grace_s: float = 10.0) -> RunResult:
        """Run to the end on this thread; the result, or GlandSegRunError unless it exits 0."""
        if not self.run.proc:
            self.start()
        self.run.wait(timeout_s, idle=idle, should_cancel=(cancel.is_set if cancel is not None else None), grace_s=grace_s)
        self.result.exit_code = self.run.exit_code
        err = self.error()
        if err is not None:
            raise err
        return self.result


def run_cli(cli_args: Sequence[str], *, on_event: Callable[[Event], None] | None = None,
            cancel: threading.Event | None = None, timeout_s: float | None = None,
            env: dict[str, str] | None = None, grace_s: float = 10.0,
            idle: Callable[[], None] | None = None, on_log: Callable[[str], None] | None = None) -> RunResult:
    """Run `glandseg <cli_args>` and wait; raise GlandSegRunError unless it exits 0.

    `on_event` runs on the calling thread, between reads, never on a reader thread. `cancel`
    (set from anywhere) and `timeout_s` stop the whole process tree the way the panel's
    Cancel does; `idle` runs between polls (Slicer: slicer.app.processEvents).
    """
    job = CliJob(cli_args, on_event=on_event, on_log=on_log, env=env)
    return job.wait(timeout_s=timeout_s, cancel=cancel, idle=idle, grace_s=grace_s)


# --------------------------------------------------------------------------------------
# Results, models, dependencies
# --------------------------------------------------------------------------------------

def read_report(output_dir: str | Path) -> dict:
    """report.json of a finished run ({} when absent: older libs, or a partial copy)."""
    p = Path(output_dir) / "report.json"
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def report_warnings(report: dict) -> list[str]:
    """Warnings for the panel, laterality ("possible left/right swap") first: they matter most."""
    seen: list[str] = []
    for w in report.get("warnings", []):
        if isinstance(w, str) and w not in seen:
            seen.append(w)
    return sorted(seen, key=lambda w: (0 if "swap" in w else 1))


@dataclass(frozen=True)
class ModelEntry:
    name: str
    folder: Path
    origin: str  # "installed" | "shipped"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.origin})"


def list_models() -> list[ModelEntry]:
    """Installed models (GLANDSEG_HOME) then shipped ones; a name shadowed by an installed
    model is the installed one, as GlandSegLib.models.registry resolves names in that order."""
    ensure_lib_on_path()
    from GlandSegLib.models import registry as models

    roots = models.model_roots()
    seen: set[str] = set()
    entries: list[ModelEntry] = []
    for i, root in enumerate(roots):
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if folder.name in seen:
                continue
            seen.add(folder.name)
            entries.append(ModelEntry(folder.name, folder, "installed" if i == 0 else "shipped"))
    default = getattr(models, "DEFAULT_MODEL", None)
    entries.sort(key=lambda e: (e.name != default, e.origin != "installed", e.name))
    return entries


def missing_requirements(requirements: Iterable[tuple[str, str]] = REQUIREMENTS) -> list[tuple[str, str]]:
    """(import name, pip requirement) of each package that is missing or outside its version
    limits (install.unmet_requirements); nothing is imported."""
    from . import install

    return [(u.name, u.requirement) for u in install.unmet_requirements(requirements)]
