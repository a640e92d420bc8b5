"""Installing GlandSeg's Python dependencies in Slicer: the plan per platform, and what
GlandSegLogic.installDependencies does with it, against fakes of the PyTorch and NNUNet
extensions and of slicer.util (the application is not here).

What a person checks in the real application (README, Release checklist): a fresh Slicer
on Windows (CUDA machine: a CUDA build of torch), macOS (Apple silicon and, where one is
available, Intel) and Linux: "Check / install dependencies" asks once, installs, and a
segmentation runs afterwards.
"""

from __future__ import annotations

import sys
import tomllib
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "GlandSeg"))

from GlandSegSlicerLib import install, process  # noqa: E402
from GlandSegSlicerLib.install import NNUNET_EXTENSION, PIP, PYTORCH_EXTENSION, SLICER, Unmet  # noqa: E402

REQ = dict(process.REQUIREMENTS)
NNUNET = REQ["nnunetv2"]


def unmet(*names: str, installed: dict[str, str] | None = None) -> list[Unmet]:
    installed = installed or {}
    return [Unmet(n, REQ[n], installed.get(n)) for n in names]


def plan_rows(steps) -> list[tuple[str, str, str, tuple[str, ...]]]:
    return [(s.package, s.requirement, s.installer, s.extra) for s in steps]


# ----------------------------------------------------------------------------- the plan

FRESH = ("torch", "scipy", "nnunetv2", "matplotlib")  # a fresh Slicer has numpy, SimpleITK, pydicom


@pytest.mark.parametrize("platform, machine", [("linux", "x86_64"), ("win32", "AMD64"), ("linux", "aarch64")])
def test_plan_on_windows_and_linux(platform, machine):
    """nnunetv2 through the NNUNet extension first (no-deps; it brings torch with nnunetv2's
    own requirement through the PyTorch extension), torch through the PyTorch extension if
    still needed, then pip for what is still missing; nothing through plain pip that could
    pull a CUDA torch."""
    steps = install.install_plan(unmet(*FRESH), platform=platform, machine=machine)
    assert plan_rows(steps) == [
        ("nnunetv2", "nnunetv2>=2.5,<2.9", NNUNET_EXTENSION, ()),
        ("torch", "torch>=2.1", PYTORCH_EXTENSION, ()),
        ("scipy", "scipy>=1.10", PIP, ()),
        ("matplotlib", "matplotlib>=3.7", PIP, ()),
    ]
    assert steps[1].specifier == ">=2.1"


def test_plan_on_apple_silicon():
    """macOS: nnunetv2 >= 2.7.0 (as the NNUNet extension requires there), and the extension
    installs an imagecodecs with macOS wheels before nnunetv2."""
    steps = install.install_plan(unmet(*FRESH), platform="darwin", machine="arm64")
    assert plan_rows(steps)[:2] == [
        ("nnunetv2", "nnunetv2>=2.7.0,<2.9", NNUNET_EXTENSION, ("imagecodecs<=2026.3.6",)),
        ("torch", "torch>=2.1", PYTORCH_EXTENSION, ()),
    ]
    assert not any(s.package == "numpy" for s in steps)


def test_plan_on_intel_mac():
    """Intel macOS: PyTorch stops at 2.2 there, which needs NumPy 1: pinned right after torch."""
    steps = install.install_plan(unmet(*FRESH), platform="darwin", machine="x86_64")
    assert plan_rows(steps)[:3] == [
        ("nnunetv2", "nnunetv2>=2.7.0,<2.9", NNUNET_EXTENSION, ("imagecodecs<=2026.3.6",)),
        ("torch", "torch>=2.1", PYTORCH_EXTENSION, ()),
        ("numpy", "numpy>=1.24,<2", PIP, ()),
    ]


def test_plan_when_only_torch_is_missing():
    assert plan_rows(install.install_plan(unmet("torch"), platform="linux", machine="x86_64")) == [
        ("torch", "torch>=2.1", PYTORCH_EXTENSION, ())]


def test_plan_replaces_an_nnunet_outside_the_limits():
    """An installed nnunetv2 2.9 is not accepted: the NNUNet extension replaces it."""
    steps = install.install_plan(unmet("nnunetv2", installed={"nnunetv2": "2.9.0"}), platform="win32", machine="AMD64")
    assert [(s.package, s.installer) for s in steps] == [("nnunetv2", NNUNET_EXTENSION), ("torch", PYTORCH_EXTENSION)]


def test_plan_never_replaces_slicers_own_packages():
    steps = install.install_plan(unmet("numpy", "SimpleITK"), platform="linux", machine="x86_64")
    assert [(s.package, s.installer) for s in steps] == [("numpy", SLICER), ("SimpleITK", SLICER)]
    assert "comes with 3D Slicer" in steps[0].why


def test_missing_extensions_are_named_as_the_index_names_them():
    plan = install.install_plan(unmet(*FRESH), platform="linux", machine="x86_64")
    assert install.missing_extensions(plan, has_module=lambda m: False) == ["NNUNet", "PyTorch"]
    assert install.missing_extensions(plan, has_module=lambda m: m == "SlicerNNUNetLib") == ["PyTorch"]
    assert install.missing_extensions(plan, has_module=lambda m: True) == []
    pip_only = install.install_plan(unmet("scipy"), platform="linux", machine="x86_64")
    assert install.missing_extensions(pip_only, has_module=lambda m: False) == []


def test_extension_depends_match_the_installers():
    """The extensions the installers need are the ones the extension declares."""
    import re

    text = (REPO / "CMakeLists.txt").read_text()
    depends = re.search(r"set\(EXTENSION_DEPENDS ([^)#]+)\)", text).group(1).split()
    plan = install.install_plan(unmet(*FRESH), platform="linux", machine="x86_64")
    assert sorted(install.missing_extensions(plan, has_module=lambda m: False)) == sorted(depends)


# ----------------------------------------------------------------------------- versions

@pytest.mark.parametrize("version, spec, ok", [
    ("2.8.1", ">=2.5,<2.9", True),
    ("2.9.0", ">=2.5,<2.9", False),
    ("2.4.2", ">=2.5,<2.9", False),
    ("2.13.0+cpu", ">=2.1", True),
    ("2.9.1", ">=2.1.2,!=2.9.*", False),
    ("2.10.0", ">=2.1.2,!=2.9.*", True),
    ("1.26.4", ">=1.24,<2", True),
    ("2.0.2", ">=1.24,<2", False),
    ("2.5", ">=2.5", True),
    ("2.5.0", "==2.5", True),
])
def test_version_limits_with_and_without_packaging(monkeypatch, version, spec, ok):
    assert install.version_satisfies(version, spec) is ok
    monkeypatch.setitem(sys.modules, "packaging.specifiers", None)  # as if packaging were absent
    assert install.version_satisfies(version, spec) is ok


def test_unmet_requirements_checks_versions_not_only_presence(monkeypatch):
    versions = {"torch": "2.13.0+cpu", "numpy": "1.26.4", "SimpleITK": None, "scipy": "1.9.0",
                "nnunetv2": "2.9.1", "matplotlib": "3.9.0", "pydicom": "2.4.4"}
    monkeypatch.setattr(install, "importable", lambda module: module in versions)
    monkeypatch.setattr(install, "installed_version", lambda dist: versions.get(dist))
    got = {u.name: u for u in install.unmet_requirements()}
    assert set(got) == {"scipy", "nnunetv2"}  # SimpleITK without metadata: Slicer's own build, accepted
    assert got["nnunetv2"].describe() == "nnunetv2>=2.5,<2.9 (2.9.1 installed)"
    assert got["scipy"].installed == "1.9.0"


def test_requirements_mirror_pyproject():
    """The first-use installer installs what GlandSegLib declares, with the same bounds."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    norm = lambda s: s.replace(" ", "").lower()  # noqa: E731
    assert sorted(norm(spec) for _name, spec in process.REQUIREMENTS) == sorted(norm(d) for d in deps)


# ----------------------------------------------------------------------------- installDependencies with fakes

class FakeEnvironment:
    """Slicer's Python as the fakes change it, plus a record of every call, in order."""

    def __init__(self, versions: dict[str, str]):
        self.versions = dict(versions)
        self.calls: list[tuple] = []


@pytest.fixture
def glandseg_module(monkeypatch, tmp_path):
    """GlandSeg.py under slicer-core (test_slicer_logic's stand-ins); the plan tests above
    need no slicer-core, these below do (skipped without it locally, failing under CI)."""
    import test_slicer_logic as logic_tests

    env = logic_tests._import_glandseg(monkeypatch, tmp_path)
    yield env
    for name in logic_tests.MODULE_NAMES:
        sys.modules.pop(name, None)
    env.scene.Clear(1)


@pytest.fixture
def fake_slicer(glandseg_module, monkeypatch):
    env = FakeEnvironment({"numpy": "2.2.0", "SimpleITK": "2.5.0", "pydicom": "2.4.4"})
    monkeypatch.setattr(install, "importable", lambda module: module in env.versions
                        or module in ("PyTorchUtils", "SlicerNNUNetLib") and module in sys.modules)
    monkeypatch.setattr(install, "installed_version", lambda dist: env.versions.get(dist))

    class Signal:
        def connect(self, slot):
            env.calls.append(("nnunet.progressInfo.connect",))

    class InstallLogic:
        def __init__(self, doAskConfirmation=True):
            env.calls.append(("nnunet.InstallLogic", doAskConfirmation))
            self.progressInfo = Signal()
            self.needsRestart = False

        def setupPythonRequirements(self, requirement="nnunetv2"):
            env.calls.append(("nnunet.setupPythonRequirements", requirement))
            env.versions.update({"nnunetv2": "2.8.1", "scipy": "1.14.1"})  # nnunetv2 and its dependencies
            return True

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            env.calls.append(("torch.installTorch", askConfirmation, torchVersionRequirement))
            env.versions["torch"] = "2.7.1"
            return types.SimpleNamespace(__version__="2.7.1")

    monkeypatch.setitem(sys.modules, "SlicerNNUNetLib", types.SimpleNamespace(InstallLogic=InstallLogic))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    util = glandseg_module.slicer.util

    class WaitCursor:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def confirm(text, **kwargs):
        env.calls.append(("confirm", text))
        return env.answer

    def pip_install(requirement):
        env.calls.append(("pip_install", requirement))
        name = install.split_requirement(requirement)[0]
        env.versions[name] = {"matplotlib": "3.9.2"}.get(name, "99")

    env.answer = True
    monkeypatch.setattr(util, "confirmOkCancelDisplay", confirm, raising=False)
    monkeypatch.setattr(util, "pip_install", pip_install, raising=False)
    monkeypatch.setattr(util, "infoDisplay", lambda text, **k: env.calls.append(("info", text)), raising=False)
    monkeypatch.setattr(util, "errorDisplay", lambda text, **k: env.calls.append(("error", text, k.get("detailedText"))),
                        raising=False)
    monkeypatch.setattr(util, "WaitCursor", WaitCursor, raising=False)
    monkeypatch.setattr(install.sys, "platform", "linux")
    env.logic = glandseg_module.module.GlandSegLogic()
    return env


def names(calls) -> list[str]:
    return [c[0] for c in calls]


def test_install_asks_once_and_goes_through_the_extensions(fake_slicer):
    env = fake_slicer
    assert env.logic.installDependencies(askConfirmation=True) is True
    assert names(env.calls) == ["confirm", "nnunet.InstallLogic", "nnunet.progressInfo.connect",
                                "nnunet.setupPythonRequirements", "torch.installTorch", "pip_install", "info"]
    assert sum(1 for c in env.calls if c[0] == "confirm") == 1, "one confirmation for the whole install"
    assert ("nnunet.InstallLogic", False) in env.calls, "the NNUNet extension must not ask again"
    assert ("nnunet.setupPythonRequirements", NNUNET) in env.calls
    assert ("torch.installTorch", False, ">=2.1") in env.calls, "the PyTorch extension must not ask again"
    assert ("pip_install", "matplotlib>=3.7") in env.calls
    assert "torch>=2.1 (not installed)" in env.calls[0][1] and "nnunetv2>=2.5,<2.9 (not installed)" in env.calls[0][1]
    assert env.logic.missingDependencies() == []


def test_install_declined_installs_nothing(fake_slicer):
    env = fake_slicer
    env.answer = False
    assert env.logic.installDependencies(askConfirmation=True) is False
    assert names(env.calls) == ["confirm"]


def test_console_install_without_confirmation_asks_nothing(fake_slicer):
    env = fake_slicer
    assert env.logic.installDependencies(askConfirmation=False) is True
    assert "confirm" not in names(env.calls) and "info" not in names(env.calls)
    assert ("torch.installTorch", False, ">=2.1") in env.calls


def test_install_replaces_a_wrong_nnunet_and_keeps_a_good_torch(fake_slicer):
    env = fake_slicer
    env.versions.update({"torch": "2.6.0", "scipy": "1.14.1", "matplotlib": "3.9.2", "nnunetv2": "2.9.1"})
    assert env.logic.installDependencies(askConfirmation=True) is True
    assert "nnunetv2>=2.5,<2.9 (2.9.1 installed)" in env.calls[0][1]
    assert ("nnunet.setupPythonRequirements", NNUNET) in env.calls
    assert "torch.installTorch" not in names(env.calls) and "pip_install" not in names(env.calls)


def test_install_on_macos_raises_the_nnunet_minimum(fake_slicer, monkeypatch):
    monkeypatch.setattr(install.sys, "platform", "darwin")
    monkeypatch.setattr(install._platform, "machine", lambda: "arm64")
    assert fake_slicer.logic.installDependencies(askConfirmation=False) is True
    assert ("nnunet.setupPythonRequirements", "nnunetv2>=2.7.0,<2.9") in fake_slicer.calls


def test_install_without_the_extensions_says_which_to_install(fake_slicer, monkeypatch):
    env = fake_slicer
    monkeypatch.delitem(sys.modules, "SlicerNNUNetLib")
    assert env.logic.installDependencies(askConfirmation=True) is False
    assert names(env.calls) == ["error"]
    assert "NNUNet extension" in env.calls[0][1] and "Extensions Manager" in env.calls[0][1]


def test_install_failure_is_reported_and_returns_false(fake_slicer, monkeypatch):
    env = fake_slicer

    class NoTorch:
        def installTorch(self, **kwargs):
            env.calls.append(("torch.installTorch", kwargs.get("askConfirmation"), kwargs.get("torchVersionRequirement")))
            return None

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=NoTorch))
    assert env.logic.installDependencies(askConfirmation=True) is False
    error = [c for c in env.calls if c[0] == "error"]
    assert error and "torch>=2.1 (PyTorch extension): the PyTorch extension did not install PyTorch" in error[0][2]
    assert ("pip_install", "matplotlib>=3.7") in env.calls, "independent steps still run"


def test_plan_for_torch_alone_honours_the_installed_nnunet(monkeypatch):
    """nnunetv2 2.8 is there and excludes torch 2.9: the PyTorch extension is asked for a
    torch both GlandSeg and that nnunetv2 accept."""
    steps = install.install_plan(unmet("torch"), platform="win32", machine="AMD64", nnunet_torch="torch!=2.9.*,>=2.1.2")
    assert plan_rows(steps) == [("torch", "torch>=2.1,!=2.9.*,>=2.1.2", PYTORCH_EXTENSION, ())]
    assert install.version_satisfies("2.9.1", steps[0].specifier) is False
    assert install.version_satisfies("2.8.0", steps[0].specifier) is True
    # when nnunetv2 is installed too, the NNUNet extension brings torch with nnunetv2's requirement
    both = install.install_plan(unmet("torch", "nnunetv2"), platform="linux", machine="x86_64",
                                nnunet_torch="torch!=2.9.*,>=2.1.2")
    assert [s.requirement for s in both] == ["nnunetv2>=2.5,<2.9", "torch>=2.1"]


def test_declared_requirement_reads_the_installed_metadata():
    import importlib.metadata

    if install.installed_version("nnunetv2") is None:
        pytest.skip("nnunetv2 is not installed here")
    declared = install.declared_requirement("nnunetv2", "torch")
    expected = [r for r in importlib.metadata.requires("nnunetv2") if r.lower().startswith("torch") and ";" not in r]
    assert declared == (expected[0] if expected else None)
    assert install.declared_requirement("no-such-distribution-for-tests", "torch") is None
