"""Print napari-unet's import graph (read with ``ast``, lazy imports inside functions included,
nothing imported) by layer, and its cycles between modules.

    python docs/import_graph.py          # pasted into docs/architecture.md

It reuses the walker of tests/test_architecture.py, so the page and the test see the same graph.
"""
from __future__ import annotations

import importlib.util
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("_arch", ROOT / "tests" / "test_architecture.py")
arch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(arch)


def layer(module: str) -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "napari_unet (public API)"
    head = parts[0]
    if head == "core":
        return "core (incl. core/train/)"
    if head == "_widgets":
        return "_widgets"
    if head.startswith("_cli_"):
        return "_cli_* (args, inputs, report, run, predict, bigdata, export)"
    return head


def main() -> None:
    graph = arch.import_graph()
    edges: dict[str, set[str]] = defaultdict(set)
    sizes: dict[str, int] = defaultdict(int)
    for mod, deps in graph.items():
        sizes[layer(mod)] += 1
        for d in deps:
            if layer(d) != layer(mod):
                edges[layer(mod)].add(layer(d))
    print(f"{len(graph)} modules; layer -> the layers it imports (lazy imports included)")
    for name in sorted(sizes):
        print(f"  {name} ({sizes[name]} modules) -> {', '.join(sorted(edges[name])) or '(nothing)'}")
    cycles = arch.find_cycles(graph)
    print("cycles between modules:", "none" if not cycles else "; ".join(" <-> ".join(c) for c in cycles))


if __name__ == "__main__":
    main()
