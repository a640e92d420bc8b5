"""The folder tree is the architecture: these tests keep it true.

GlandSegLib's subpackages form layers, and an import may only point down (or stay inside
its own subpackage). segmentation/ and training/ stand side by side and know nothing of each
other, so the Slicer extension can ship the main job without the training recipes, and a
change to a recipe cannot break segmentation. Imports are read with `ast` (also those
inside functions), so a lazy import cannot hide a wrong arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path


REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "GlandSegLib"
MAX_LINES = 600

# rank: a module may import modules of a lower rank, and modules of its own subpackage
LAYERS = {
    "": 0,  # the shared vocabulary at the top of GlandSegLib: glands, names, errors, progress, geometry
    "io": 1,
    "models": 2,
    "segmentation": 3,
    "training": 3,
    "cohort": 4,
    "defaultmodel": 5,
    "cli": 6,
}
# The package's public API and the one shim of an old path re-export from above; nothing imports them.
API_MODULES = {"GlandSegLib", "GlandSegLib.pipeline"}
SLICER_ONLY = {"slicer", "qt", "ctk", "vtk", "slicerio", "sitkUtils", "MRMLCorePython"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(LIB.rglob("*.py"))}


MODULES = _modules()


def _resolve(target: str) -> str:
    """`GlandSegLib.io.images.read_ct` -> the module `GlandSegLib.io.images`."""
    while target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def _imports(path: Path, me: str | None = None) -> list[tuple[int, str]]:
    """(line, imported module) for every GlandSegLib import in the file, at any depth."""
    tree = ast.parse(path.read_text(), str(path))
    me = me or _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name == "GlandSegLib" or name.startswith("GlandSegLib."):
                found.append((node.lineno, _resolve(name)))
    return found


def _layer(module: str) -> str:
    """The subpackage a module belongs to ("" for the vocabulary at the top)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


def _violations(module: str, path: Path) -> list[str]:
    mine = _layer(module)
    wrong = []
    for line, target in _imports(path, module):
        theirs = _layer(target)
        where = f"{path.relative_to(path.parents[2]) if len(path.parents) > 2 else path}:{line}"
        if target in API_MODULES and target != "GlandSegLib":
            wrong.append(f"{where} imports the old-path shim {target}")
        elif target != "GlandSegLib" and theirs != mine and LAYERS[theirs] >= LAYERS[mine]:
            wrong.append(f"{where} ({mine or 'top'}) imports {target} ({theirs or 'top'})")
    return wrong


def _graph() -> dict[str, set[str]]:
    """Module -> modules it imports. The API modules are facades (they re-export, lazily, what
    lies below them), so only their own imports are left out: what imports them still counts."""
    return {m: set() if m in API_MODULES else {t for _, t in _imports(p) if t != m} for m, p in MODULES.items()}


def test_every_subpackage_has_a_layer_and_says_what_it_does():
    subpackages = {p.parent.relative_to(LIB).parts[0] for p in LIB.rglob("__init__.py") if p.parent != LIB}
    assert subpackages == set(LAYERS) - {""}
    for sub in subpackages:
        doc = ast.get_docstring(ast.parse((LIB / sub / "__init__.py").read_text()))
        assert doc and "use" in doc.lower(), f"{sub}/__init__.py must say what it does and what it may use"


def test_imports_point_down_the_layers():
    wrong = [w for m, p in MODULES.items() if m not in API_MODULES for w in _violations(m, p)]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_layer_check_catches_wrong_arrows(tmp_path):
    """The checker itself: upward and sideways imports, lazy or not, are caught; downward ones pass."""
    source = (LIB / "segmentation" / "pipeline.py").read_text()
    bad = tmp_path / "pipeline.py"
    bad.write_text(source + "\n\ndef _late():\n    from GlandSegLib.defaultmodel.train_default import main\n"
                   "    from GlandSegLib.training import trainer\n")
    wrong = _violations("GlandSegLib.segmentation.pipeline", bad)
    assert len(wrong) == 2 and "defaultmodel" in wrong[0] and "training" in wrong[1]
    assert _violations("GlandSegLib.segmentation.pipeline", LIB / "segmentation" / "pipeline.py") == []
    rel = tmp_path / "relative.py"
    rel.write_text("from ..cohort.batch import run_batch\n")
    assert len(_violations("GlandSegLib.models.relative", rel)) == 1


def test_no_module_over_the_size_limit():
    files = list(LIB.rglob("*.py")) + list((REPO / "GlandSeg").rglob("*.py"))
    big = {str(p.relative_to(REPO)): n for p in files if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them by responsibility): {big}"


def test_glandseglib_never_imports_slicer():
    wrong = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            wrong += [f"{module}: {n}" for n in names if n.split(".")[0] in SLICER_ONLY]
    assert not wrong, wrong
