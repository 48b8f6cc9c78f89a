"""GUI tests: pytest-qt + napari's make_napari_viewer. Run under a display, e.g.
``xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/pytest tests/gui``."""
from __future__ import annotations

import os
import sys

import pytest

if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    pytest.skip("GUI tests need a display: run them under xvfb-run", allow_module_level=True)

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    """Autosaved paintings go to a temporary folder, never the user's."""
    monkeypatch.setenv("NAPARI_UNET_DATA_DIR", str(tmp_path / "userdata"))


@pytest.fixture
def notes(monkeypatch):
    """Captures (kind, message) of every notification the widgets show."""
    from napari.utils import notifications

    seen: list[tuple[str, str]] = []
    for kind in ("error", "warning", "info"):
        monkeypatch.setattr(notifications, f"show_{kind}",
                            lambda msg, _k=kind: seen.append((_k, str(msg))))
    return seen


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def dock(viewer):
    """dock(name) -> the widget, docked from the manifest."""

    def _dock(name: str):
        _dw, widget = viewer.window.add_plugin_dock_widget("napari-unet", name)
        return widget

    return _dock


@pytest.fixture
def evaluated(qtbot):
    """evaluated(widget) -> its scores: press Evaluate (the scoring runs in a worker) and wait
    for the result; None when the choices were refused (the notification says why)."""

    def _run(w):
        if w.run() is None:
            return None
        qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
        return w.result

    return _run


@pytest.fixture
def tiny_model():
    """An untrained but valid 2D model (fast): enough for predict/batch plumbing tests."""
    from napari_unet.core.model import build_model

    return build_model(dims=2, classes=2, base_channels=4, depth=2,
                       class_names=["background", "nucleus"])


def errors(notes):
    return [m for k, m in notes if k == "error"]
