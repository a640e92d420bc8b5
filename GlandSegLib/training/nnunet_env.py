"""Point nnU-Net v2 at a work folder and make it behave on a small CPU machine.

nnU-Net takes its three folders (raw data, preprocessed data, results) and its worker
counts from environment variables. Depending on the version it reads them when a module
is imported (older releases copy strings into module globals; `nnunetv2.configuration`
still copies `nnUNet_def_n_proc` into `default_num_processes`) or on every use (2.8's
`nnunetv2.paths._EnvPath`). GlandSeg's training, tests and inference all run nnU-Net in
one process, each with its own folders, so setting the variables once at start-up is not
enough: `nnunet_environment` sets them, also rewrites copies already held by imported
`nnunetv2` modules, and puts everything back on exit so nothing leaks into the next user.

Nothing here imports nnunetv2; callers may use this before nnU-Net is imported at all.
Spawned workers (nnU-Net uses the "spawn" start method) inherit `os.environ`, so they see
the same folders as long as they start inside the context. Scripts that start them need
an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FOLDER_VARIABLES: tuple[str, ...] = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
N_PROC_VARIABLE = "nnUNet_def_n_proc"
N_PROC_DA_VARIABLE = "nnUNet_n_proc_DA"

# Module globals that some nnunetv2 releases fill from the environment at import time.
# Only plain values (str, int, None) are rewritten; 2.8's lazy _EnvPath objects already
# read os.environ on every use and are left alone.
_COPIED_GLOBALS: dict[str, str] = {
    "nnUNet_raw": "nnUNet_raw",
    "nnUNet_preprocessed": "nnUNet_preprocessed",
    "nnUNet_results": "nnUNet_results",
    "default_num_processes": N_PROC_VARIABLE,
    "default_n_proc_DA": N_PROC_DA_VARIABLE,
}


@dataclass(frozen=True)
class NnUNetFolders:
    """The three nnU-Net folders, all under one work folder owned by the caller."""

    raw: Path
    preprocessed: Path
    results: Path

    @classmethod
    def under(cls, work: str | os.PathLike[str]) -> NnUNetFolders:
        root = Path(work).absolute()
        return cls(raw=root / "nnUNet_raw", preprocessed=root / "nnUNet_preprocessed", results=root / "nnUNet_results")

    def as_env(self) -> dict[str, str]:
        return {"nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed), "nnUNet_results": str(self.results)}

    def create(self) -> None:
        for p in (self.raw, self.preprocessed, self.results):
            p.mkdir(parents=True, exist_ok=True)


def default_threads() -> int:
    """Cores this process may use (cgroup/affinity aware where the OS tells us)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def current_folders() -> NnUNetFolders | None:
    """The folders nnU-Net would use right now, or None when any variable is unset."""
    values = [os.environ.get(v) for v in FOLDER_VARIABLES]
    if any(v is None for v in values):
        return None
    return NnUNetFolders(Path(values[0]), Path(values[1]), Path(values[2]))  # type: ignore[arg-type]


def _patch_imported_modules(env: dict[str, str]) -> list[tuple[Any, str, Any]]:
    """Rewrite value copies of our variables inside already-imported nnunetv2 modules.

    Returns (module, attribute, old value) triples so the caller can undo exactly this.
    """
    undo: list[tuple[Any, str, Any]] = []
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name == "nnunetv2" or mod_name.startswith("nnunetv2.")):
            continue
        for attr, var in _COPIED_GLOBALS.items():
            if var not in env or not hasattr(module, attr):
                continue
            old = getattr(module, attr)
            if isinstance(old, bool) or not (old is None or isinstance(old, (str, int))):
                continue  # a lazy path object or something unrelated: leave it
            new: Any = int(env[var]) if isinstance(old, int) else env[var]
            setattr(module, attr, new)
            undo.append((module, attr, old))
    return undo


@contextmanager
def nnunet_environment(
    work: str | os.PathLike[str] | NnUNetFolders,
    *,
    n_proc: int | None = None,
    n_proc_da: int = 0,
    torch_threads: int | None = None,
    create: bool = True,
) -> Iterator[NnUNetFolders]:
    """Run the body with nnU-Net pointed at `work` and tuned for the CPUs at hand.

    n_proc: worker processes for fingerprinting/preprocessing (`nnUNet_def_n_proc`);
        default: one per usable core.
    n_proc_da: data-augmentation workers during training (`nnUNet_n_proc_DA`). 0 runs
        augmentation in the training process, which on two cores is as fast as a worker
        that competes with torch for the same cores, and cannot hang on a dead worker.
    torch_threads: intra-op threads for torch; default: one per usable core; 0 leaves
        torch alone (and unimported).

    Everything (environment, patched module globals, torch's thread count) is restored on
    exit, also when the body raises.
    """
    folders = work if isinstance(work, NnUNetFolders) else NnUNetFolders.under(work)
    if create:
        folders.create()
    cores = default_threads()
    env = folders.as_env()
    env[N_PROC_VARIABLE] = str(max(1, n_proc if n_proc is not None else cores))
    env[N_PROC_DA_VARIABLE] = str(max(0, int(n_proc_da)))

    torch_mod = None
    old_threads = None
    threads = torch_threads if torch_threads is not None else cores
    with override_env(**env):
        if threads:
            import torch  # deferred: this module must stay importable without paying for torch

            torch_mod = torch
            old_threads = torch.get_num_threads()
            torch.set_num_threads(max(1, int(threads)))
        try:
            yield folders
        finally:
            if torch_mod is not None and old_threads is not None:
                torch_mod.set_num_threads(old_threads)


@contextmanager
def override_env(**values: str | None) -> Iterator[None]:
    """Temporarily set (or, with None, unset) environment variables; used for nnU-Net knobs
    that one step needs differently from the rest (see training.plan_and_preprocess)."""
    saved = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    undo = _patch_imported_modules({k: v for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        for module, attr, old in reversed(undo):
            setattr(module, attr, old)
        for k, old_value in saved.items():
            if old_value is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = old_value


def require_folders() -> NnUNetFolders:
    """The active folders, or a clear error telling the caller to use nnunet_environment."""
    folders = current_folders()
    if folders is None:
        raise RuntimeError(
            "nnU-Net folders are not set: call this inside GlandSegLib.training.nnunet_env.nnunet_environment(work_folder) "
            "or pass folders= explicitly"
        )
    return folders


def folders_context(folders: NnUNetFolders | str | os.PathLike[str] | None, **kwargs: Any) -> AbstractContextManager[Any]:
    """Enter nnunet_environment for explicit folders; with None, use what is already set."""
    if folders is None:
        require_folders()
        return nullcontext(None)
    return nnunet_environment(folders, **kwargs)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's intra-op threads for the body only (None: leave as is)."""
    if not n:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)
