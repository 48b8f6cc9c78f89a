"""The package's shape: no import cycles between its modules, and small modules.

Imports are read with ``ast`` (nothing is imported), including the lazy ones inside functions
(a cycle through a lazy import is still a tangle); imports under ``if TYPE_CHECKING:`` are
ignored. A module's parent packages are not counted as its imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "napari_unet"
MAX_LINES = 400
# the size limit applies to these (modules split for issue 14, and the new ones under them);
# every other module is a known exception until it is split too (over the limit today:
# none since _widgets/train.py, cli.py and core/train_process.py were split down to 400;
# test_no_module_is_large checks them all)
SIZE_CHECKED = [
    "napari_unet.core.predict", "napari_unet.core.tiling", "napari_unet.core.inference",
    "napari_unet.core.checks", "napari_unet.core.postprocess", "napari_unet.core.labels",
    "napari_unet.core.pixels",
    "napari_unet.core.data", "napari_unet.core.regions", "napari_unet.core.sampling",
    "napari_unet.core.augment",
]
SIZE_CHECKED_PACKAGES = ["napari_unet.core.train"]
# cycles tolerated while other work in progress fixes them; each entry is one cycle, as
# find_cycles reports it. Empty: the package has none (train_pool <-> train_process went when
# their shared part moved to core/train_children.py); keep it that way.
KNOWN_CYCLES: list[list[str]] = []


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for a in child.names:
                    found.add(a.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[:len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.add(mod)
                for a in child.names:  # ``from . import device``: the submodule itself
                    found.add(f"{mod}.{a.name}")
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    parents = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {m for m in found if m in mods and m != name and m not in parents}


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    cycles = [c for c in find_cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_split_modules_stay_small():
    mods = _modules()
    checked = [m for m in SIZE_CHECKED if m in mods]
    checked += [m for m in mods for p in SIZE_CHECKED_PACKAGES if m == p or m.startswith(p + ".")]
    assert "napari_unet.core.predict" in checked
    big = {m: n for m in checked
           if (n := len(mods[m].read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_checker_sees_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_walker_sees_imports_inside_functions(tmp_path):
    """A cycle closed by a lazy import (inside a function or a method) is still a cycle."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import helper\n")
    (pkg / "b.py").write_text("class K:\n    def m(self):\n        from . import a\n"
                              "def helper():\n    import pkg.c\n")
    (pkg / "c.py").write_text("def f():\n    from .a import x\n")
    mods = {"pkg": pkg / "__init__.py", **{f"pkg.{n}": pkg / f"{n}.py" for n in "abc"}}
    graph = {name: _imports(name, path, mods) for name, path in mods.items()}
    assert graph["pkg.b"] == {"pkg.a", "pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert not KNOWN_CYCLES


def test_planning_and_checks_are_numpy_only():
    """Tile planning, input checks and post-processing import no torch (directly or through
    another module of ours)."""
    mods = _modules()
    graph = import_graph()

    def imports_torch(name: str, seen: set) -> bool:
        if name in seen:
            return False
        seen.add(name)
        tree = ast.parse(mods[name].read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            if any(n == "torch" or n.startswith("torch.") for n in names):
                return True
        return any(imports_torch(m, seen) for m in graph[name])

    for name in ("napari_unet.core.tiling", "napari_unet.core.checks", "napari_unet.core.postprocess",
                 "napari_unet.core.labels"):
        assert not imports_torch(name, set()), name


def test_no_module_is_large():
    """Every module of the package, not only the split ones, stays under the limit."""
    big = {m: n for m, path in _modules().items()
           if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"
