"""What GlandSeg needs in Slicer's Python, and how each missing piece gets there.

The extension depends on the PyTorch and NNUNet extensions, and installs through them, as
SlicerTotalSegmentator does:

- **nnunetv2** through the NNUNet extension (SlicerNNUNetLib.InstallLogic): it installs
  nnunetv2 with `--no-deps`, then its dependencies except SimpleITK (Slicer's own, with
  Slicer's IO), torch and requests, then torch through the PyTorch extension with nnunetv2's
  own torch requirement; on macOS it raises nnunetv2 to >= 2.7.0 (Rosetta 2) and installs an
  imagecodecs that has x86_64 wheels first. pip on its own would pull a CUDA build of torch
  from PyPI, or try to compile imagecodecs on an Intel Mac.
- **torch** through the PyTorch extension (PyTorchUtils), which picks the CUDA or CPU build
  for this computer: only when nnunetv2 was already there and torch is not, or too old.
- **numpy, SimpleITK** come with 3D Slicer and are never replaced (except NumPy 1 on an Intel
  Mac, where the last PyTorch build, 2.2, needs it).
- the rest (scipy, matplotlib, pydicom: normally there already, through Slicer or nnunetv2)
  with pip, one by one, each only if still missing when its turn comes.

A package that is installed at a version outside GlandSeg's limits (pyproject.toml) counts as
missing: nnunetv2 2.9 is replaced by a 2.8, after the user agreed.

No slicer or qt import: the plan is plain data, tested for every platform in
Testing/test_slicer_install.py; GlandSegLogic.installDependencies carries it out.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import platform as _platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from .process import REQUIREMENTS

NNUNET_EXTENSION = "NNUNet extension"  # SlicerNNUNetLib.InstallLogic().setupPythonRequirements
PYTORCH_EXTENSION = "PyTorch extension"  # PyTorchUtils.PyTorchUtilsLogic().installTorch
PIP = "pip"  # slicer.util.pip_install
SLICER = "3D Slicer"  # comes with the application: never installed by GlandSeg

PROVIDED_BY_SLICER = frozenset({"numpy", "SimpleITK"})
MACOS_NNUNET_MINIMUM = "2.7.0"  # what the NNUNet extension requires on macOS (nnU-Net issue 2742)
MACOS_IMAGECODECS = "imagecodecs<=2026.3.6"  # installed by the NNUNet extension on macOS: later ones lack x86_64 wheels
INTEL_MAC_NUMPY = "numpy>=1.24,<2"  # PyTorch 2.2, the last build for Intel Macs, is built against NumPy 1


# --------------------------------------------------------------------------------------
# Requirements and versions
# --------------------------------------------------------------------------------------

def split_requirement(requirement: str) -> tuple[str, str]:
    """("nnunetv2", ">=2.5,<2.9") from "nnunetv2>=2.5,<2.9"."""
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    if not m:
        raise ValueError(f"not a requirement: {requirement!r}")
    return m.group(1), m.group(2).replace(" ", "")


def _release(version: str) -> tuple[int, ...]:
    numbers = []
    for part in re.split(r"[.+]", version):
        m = re.match(r"\d+", part)
        if not m:
            break
        numbers.append(int(m.group()))
    return tuple(numbers)


def version_satisfies(version: str, specifier: str) -> bool:
    """Whether `version` ("2.8.1", "2.13.0+cpu") meets `specifier` (">=2.5,<2.9,!=2.9.*").

    packaging (which 3D Slicer ships) decides where it is importable; the fallback compares
    release numbers for the operators GlandSeg's requirements use.
    """
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version

        return Version(version) in SpecifierSet(specifier, prereleases=True)
    except ImportError:
        pass
    have = _release(version)
    for clause in specifier.split(","):
        m = re.match(r"(==|!=|>=|<=|>|<|~=)(.+)$", clause.strip())
        if not m:
            raise ValueError(f"cannot read version clause {clause!r}")
        op, text = m.groups()
        wildcard = text.endswith(".*")
        want = _release(text[:-2] if wildcard else text)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if wildcard:
            a, b = have[:len(want)], want
        ok = {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b,
              "~=": a >= b and have[:len(want) - 1] == want[:len(want) - 1]}[op]
        if not ok:
            return False
    return True


def installed_version(distribution: str) -> str | None:
    """The installed version of a distribution, or None when it has no metadata."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # imported already, without a spec
        return module in sys.modules


@dataclass(frozen=True)
class Unmet:
    """A package GlandSeg needs that is missing (installed None) or outside its limits."""

    name: str  # import name
    requirement: str  # pip requirement, e.g. "nnunetv2>=2.5,<2.9"
    installed: str | None = None

    def describe(self) -> str:
        if self.installed is None:
            return f"{self.requirement} (not installed)"
        return f"{self.requirement} ({self.installed} installed)"


def requirement_met(requirement: str, module: str | None = None) -> bool:
    distribution, spec = split_requirement(requirement)
    if module is not None and not importable(module):
        return False
    version = installed_version(distribution)
    if version is None:
        # importable without metadata (Slicer's own builds): its version cannot be told, accept it
        return module is not None or not spec
    return version_satisfies(version, spec)


def unmet_requirements(requirements: Iterable[tuple[str, str]] = REQUIREMENTS) -> list[Unmet]:
    """What is missing or at a version outside its limits; nothing is imported."""
    importlib.invalidate_caches()
    unmet = []
    for name, requirement in requirements:
        if requirement_met(requirement, name):
            continue
        installed = installed_version(split_requirement(requirement)[0]) if importable(name) else None
        unmet.append(Unmet(name, requirement, installed))
    return unmet


# --------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """Install `requirement` through `installer`; `extra` lists what that installer puts in
    on the way (platform pins), `why` says why this installer and this order."""

    package: str  # import name
    requirement: str
    installer: str
    why: str
    extra: tuple[str, ...] = ()

    @property
    def specifier(self) -> str:
        return split_requirement(self.requirement)[1]


def raise_minimum(requirement: str, minimum: str) -> str:
    """"nnunetv2>=2.7.0,<2.9" from ("nnunetv2>=2.5,<2.9", "2.7.0"): keep the higher lower bound."""
    name, spec = split_requirement(requirement)
    clauses = [c for c in spec.split(",") if c]
    lower = [c for c in clauses if c.startswith(">=")]
    if lower and all(_release(c[2:]) >= _release(minimum) for c in lower):
        return requirement
    rest = [c for c in clauses if not c.startswith(">=")]
    return name + ",".join([f">={minimum}", *rest])


def declared_requirement(distribution: str, dependency: str) -> str | None:
    """What an installed distribution says it needs of `dependency` ("torch!=2.9.*,>=2.1.2"
    for nnunetv2 2.8), or None (not installed, or the NNUNet extension removed the line)."""
    try:
        lines = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for line in lines:
        requirement = line.split(";")[0].strip()
        if ";" not in line and split_requirement(requirement)[0].lower() == dependency.lower():
            return requirement
    return None


def combine(requirement: str, other: str | None) -> str:
    """Both requirements at once: "torch>=2.1,!=2.9.*,>=2.1.2" from "torch>=2.1" and "torch!=2.9.*,>=2.1.2"."""
    if not other:
        return requirement
    name, spec = split_requirement(requirement)
    extra = [c for c in split_requirement(other)[1].split(",") if c and c not in spec.split(",")]
    return name + ",".join([c for c in spec.split(",") if c] + extra)


def install_plan(unmet: Iterable[Unmet], *, platform: str | None = None, machine: str | None = None,
                 nnunet_torch: str | None = None) -> list[Step]:
    """The steps, in order, that bring what is unmet into Slicer's Python on this platform.

    `platform` is sys.platform ("win32", "darwin", "linux"), `machine` platform.machine()
    ("x86_64", "AMD64", "arm64"). `nnunet_torch` is the torch requirement of an installed
    nnunetv2 (declared_requirement), honoured when torch alone is installed. Each step runs
    only if its requirement is still unmet when its turn comes (an earlier step may have
    brought it).
    """
    platform = sys.platform if platform is None else platform
    machine = _platform.machine() if machine is None else machine
    unmet = list(unmet)
    wanted = {u.name: u.requirement for u in unmet}
    macos = platform == "darwin"
    intel_mac = macos and machine.lower() in ("x86_64", "amd64", "i386")
    steps: list[Step] = []
    if "nnunetv2" in wanted:
        requirement = raise_minimum(wanted["nnunetv2"], MACOS_NNUNET_MINIMUM) if macos else wanted["nnunetv2"]
        extra = (MACOS_IMAGECODECS,) if macos else ()
        steps.append(Step("nnunetv2", requirement, NNUNET_EXTENSION,
                          "nnunetv2 without its dependencies, then those except SimpleITK, torch and requests, then "
                          "torch through the PyTorch extension with nnunetv2's own torch requirement", extra))
    torch_requirement = combine(wanted.get("torch") or dict(REQUIREMENTS)["torch"],
                                None if "nnunetv2" in wanted else nnunet_torch)
    if "torch" in wanted or "nnunetv2" in wanted:
        steps.append(Step("torch", torch_requirement, PYTORCH_EXTENSION,
                          "the PyTorch extension picks the CUDA or CPU build that fits this computer "
                          "(pip would take a CUDA build from PyPI); skipped when the nnunetv2 step brought one"))
        if intel_mac:
            steps.append(Step("numpy", INTEL_MAC_NUMPY, PIP,
                              "PyTorch 2.2, the last build for Intel Macs, needs NumPy 1"))
    for name, requirement in wanted.items():
        if name in ("nnunetv2", "torch"):
            continue
        if name in PROVIDED_BY_SLICER:
            if not (intel_mac and name == "numpy" and any(s.package == "numpy" for s in steps)):
                steps.append(Step(name, requirement, SLICER,
                                  f"{name} comes with 3D Slicer and is never replaced: install a current 3D Slicer"))
            continue
        steps.append(Step(name, requirement, PIP,
                          "plain Python package; usually already brought by 3D Slicer or nnunetv2"))
    return steps


def step_needed(step: Step) -> bool:
    """Whether a step still has work to do now (an earlier step may have done it)."""
    return not requirement_met(step.requirement, step.package)


def missing_extensions(plan: Iterable[Step], *, has_module: Callable[[str], bool] | None = None) -> list[str]:
    """The Slicer extensions a plan needs that are not installed, as the index names them."""
    has_module = importable if has_module is None else has_module
    needed = {s.installer for s in plan}
    missing = []
    if NNUNET_EXTENSION in needed and not has_module("SlicerNNUNetLib"):
        missing.append("NNUNet")
    if (PYTORCH_EXTENSION in needed or NNUNET_EXTENSION in needed) and not has_module("PyTorchUtils"):
        missing.append("PyTorch")
    return missing


def execute_plan(plan: Iterable[Step], installers: Mapping[str, Callable[[Step], None]],
                 needed: Callable[[Step], bool] | None = None,
                 log: Callable[[str], None] = lambda _text: None) -> tuple[list[str], list[str]]:
    """Run the steps in order with the given installers; (done, failed) as sentences.

    A step whose requirement is met by then is skipped. When nnunetv2 or torch fails, the
    steps after it still run (they are independent), and the failure is reported.
    """
    needed = step_needed if needed is None else needed
    done: list[str] = []
    failed: list[str] = []
    for step in plan:
        if not needed(step):
            log(f"{step.requirement}: already there")
            continue
        log(f"{step.requirement}: installing through {step.installer}")
        try:
            installers[step.installer](step)
        except Exception as exc:  # each installer raises with a sentence for the user
            failed.append(f"{step.requirement} ({step.installer}): {exc}")
            continue
        importlib.invalidate_caches()
        if needed(step):
            failed.append(f"{step.requirement} ({step.installer}): still not met after installing")
        else:
            done.append(f"{step.requirement} ({step.installer})")
    return done, failed
