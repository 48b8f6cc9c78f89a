"""napari hub readiness: the manifest validates with its imports, the metadata is complete, and
every third-party package the code imports is declared in pyproject.toml."""
import ast
import importlib.metadata as md
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution, for those not installed here (optional extras)
KNOWN = {"dask_jobqueue": "dask-jobqueue", "yaml": "pyyaml", "skimage": "scikit-image"}


def _pyproject() -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(project: dict) -> set[str]:
    reqs = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return {_norm(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in reqs}


def _imported_top_level() -> set[str]:
    names: set[str] = set()
    for f in (ROOT / "napari_unet").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "napari_unet"}


def test_npe2_validate_with_imports():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution("napari-unet")
    pm.validate_imports()  # what `npe2 validate --imports napari-unet` does; raises on a bad python_name


def test_every_imported_package_is_declared():
    project = _pyproject()["project"]
    declared = _declared(project)
    dists = md.packages_distributions()
    missing = []
    for name in sorted(_imported_top_level()):
        candidates = {_norm(d) for d in dists.get(name, [])} | {_norm(KNOWN.get(name, name))}
        if not candidates & declared:
            missing.append(name)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
    assert "magicgui" not in {_norm(r.split(">")[0]) for r in project["dependencies"]}  # unused


def test_hub_metadata():
    project = _pyproject()["project"]
    assert project["license"] == "BSD-3-Clause" and (ROOT / "LICENSE").is_file()
    classifiers = project["classifiers"]
    assert "Framework :: napari" in classifiers
    assert any(c.startswith("Programming Language :: Python :: 3.1") for c in classifiers)
    assert "example.invalid" not in (ROOT / "pyproject.toml").read_text()
    for url in project.get("urls", {}).values():
        assert url.startswith("https://") and "example" not in url
