"""SLURM job scripts for `glandseg train --slurm` and `glandseg batch --slurm`.

Why scripts and not submission: a cluster's rules (accounts, partitions, modules, quotas)
are the user's to check, and a written script can be read, versioned and resubmitted.
The script runs the same `glandseg` command without --slurm, with the Python that wrote
it (a cluster shares the file system; the venv path is absolute) and GlandSeg's folder on
PYTHONPATH, so nothing needs installing on the compute node.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from GlandSegLib.errors import InvalidInputError

REPO_ROOT = Path(__file__).resolve().parents[2]
_TIME = re.compile(r"^(\d+-)?\d{1,3}(:\d{2}){0,2}$")
_SAFE = re.compile(r"^[A-Za-z0-9_.:/+=@,\-]*$")


@dataclass
class SlurmOptions:
    account: str | None = None
    partition: str | None = None
    time: str = "24:00:00"
    gpus: int = 1
    cpus: int = 8
    mem: str = "32G"
    modules: list[str] = field(default_factory=list)
    job_name: str = "glandseg"

    def validate(self) -> None:
        if not _TIME.match(self.time):
            raise InvalidInputError(f"--time {self.time!r}: use [D-]HH:MM:SS, HH:MM or minutes")
        for what, v in (("--account", self.account), ("--partition", self.partition), ("--mem", self.mem),
                        ("job name", self.job_name), *(("--modules", m) for m in self.modules)):
            if v is not None and (not v or not _SAFE.match(v)):
                raise InvalidInputError(f"{what} {v!r}: only letters, digits and _ . : / + = @ , - are allowed")
        if self.gpus < 0 or self.cpus < 1:
            raise InvalidInputError("--gpus must be >= 0 and cpus >= 1")


def sbatch_script(command: Sequence[str], options: SlurmOptions, *, env: dict[str, str] | None = None,
                  log: str | Path = "glandseg-%j.log", array: str | None = None, workdir: str | Path | None = None) -> str:
    """The text of an sbatch script running `command` (argv list, quoted here)."""
    options.validate()
    lines = ["#!/bin/bash", f"#SBATCH --job-name={options.job_name}"]
    if options.account:
        lines.append(f"#SBATCH --account={options.account}")
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    lines += [f"#SBATCH --time={options.time}", "#SBATCH --nodes=1", "#SBATCH --ntasks=1",
              f"#SBATCH --cpus-per-task={options.cpus}", f"#SBATCH --mem={options.mem}"]
    if options.gpus:
        lines.append(f"#SBATCH --gres=gpu:{options.gpus}")
    if array:
        lines.append(f"#SBATCH --array={array}")
    lines += [f"#SBATCH --output={log}", "", "set -euo pipefail", ""]
    if options.modules:
        lines += [f"module load {m}" for m in options.modules] + [""]
    lines.append(f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}")
    for k, v in (env or {}).items():
        lines.append(f"export {k}={shlex.quote(v)}")
    if workdir:
        lines.append(f"cd {shlex.quote(str(workdir))}")
    lines += ["", " ".join(_quote(c) for c in command), ""]
    return "\n".join(lines)


def _quote(arg: str) -> str:
    """Quote for bash, but leave $SLURM_* variables expandable."""
    if re.fullmatch(r"\$\{?SLURM_[A-Z_]+\}?", arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def glandseg_command(*args: str) -> list[str]:
    """argv for running `glandseg` with this Python."""
    return [sys.executable, "-m", "GlandSegLib.cli", *args]
