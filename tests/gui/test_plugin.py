"""The manifest: every widget docks, samples open, and nothing imports torch at start."""
from __future__ import annotations

import subprocess
import sys

import pytest

WIDGETS = ["Annotate", "Train", "Predict", "Evaluate", "Batch", "Measure objects", "All steps (tabs)"]


def test_manifest_lists_widgets_and_samples():
    from npe2 import PluginManifest

    mf = PluginManifest.from_distribution("napari-unet")
    assert mf.name == "napari-unet"
    assert [w.display_name for w in mf.contributions.widgets] == WIDGETS
    assert {s.key for s in mf.contributions.sample_data} == {"nuclei_2d", "nuclei_3d"}
    assert all(c.id.startswith("napari-unet.") for c in mf.contributions.commands)


@pytest.mark.parametrize("name", WIDGETS)
def test_widget_docks(viewer, name):
    dw, widget = viewer.window.add_plugin_dock_widget("napari-unet", name)
    assert widget is not None and dw is not None


def test_samples_open_ready_to_train(viewer, dock):
    viewer.open_sample("napari-unet", "nuclei_3d")
    names = [layer.name for layer in viewer.layers]
    assert names == ["nuclei 3d", "nuclei 3d truth", "nuclei 3d paint"]
    image, truth, paint = viewer.layers
    assert image.data.shape == truth.data.shape == paint.data.shape
    assert set(truth.data.ravel().tolist()) == {1, 2}
    assert paint.data.max() == 2 and (paint.data == 0).mean() > 0.9  # sparse strokes
    train = dock("Train")
    assert [i.name for i, _ in train.chosen_pairs()] == ["nuclei 3d"]


def test_opening_plugin_does_not_import_torch():
    code = ("import sys\n"
            "import napari_unet._sample_data as s\n"
            "from napari_unet._widgets import annotate, train, predict, evaluate, batch, measure, tabs\n"
            "import napari_unet._launch\n"
            "s.sample_2d()\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_launch_falls_back_without_display(monkeypatch, tmp_path):
    from napari_unet import _launch

    calls = []
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    import types

    fake = types.ModuleType("napari_unet._demo")
    fake.run_demo = lambda out, **kw: calls.append(out) or 0
    monkeypatch.setitem(sys.modules, "napari_unet._demo", fake)
    assert _launch.run_gui(sample=True, demo_out_dir=tmp_path) == 0
    assert calls == [tmp_path]


def test_all_steps_in_one_tabbed_dock(viewer):
    """One dock with a tab per step fits a laptop screen (docked one by one they stack 2200 px)."""
    from napari_unet._widgets._state import model_state

    dw, tabs = viewer.window.add_plugin_dock_widget("napari-unet", "All steps (tabs)")
    titles = [tabs.tabs.tabText(i) for i in range(tabs.tabs.count())]
    assert titles == ["Annotate", "Train", "Predict", "Evaluate", "Batch", "Measure"]
    assert tabs.minimumSizeHint().height() < 600
    assert tabs.page("Train").state is model_state(viewer) is tabs.page("Predict").state
