"""Train: what a run replaces. A new run keeps the model it replaces for Revert, a run stopped
before its first step replaces nothing, one run at a time per viewer (whichever Train widget),
and the device line after a run the engine refused."""
from __future__ import annotations

import numpy as np

from napari_unet._widgets._state import model_state

from conftest import errors

HANG_MS = 120_000  # waits end on state; this only catches a hang (never a speed requirement)


def _train_widget(viewer, dock, seconds: int = 3600):
    viewer.open_sample("napari-unet", "nuclei_2d")
    return _tiny(dock("Train"), seconds)


def _tiny(w, seconds: int = 3600):
    w.base_channels.setValue(4)  # tiny network: fast on 2 CPU cores
    w.depth.setValue(2)
    w.set_limit(seconds, "seconds")
    w.live_preview.setChecked(False)
    return w


def test_a_new_run_keeps_the_model_it_replaces_for_revert(viewer, dock, qtbot, tiny_model):
    """'start from: new model' with a model current: the new one replaces it, and one click
    on Revert puts it back (as after a continued run)."""
    w = _train_widget(viewer, dock)
    state = model_state(viewer)
    state.set(tiny_model, "loaded from a.pt")
    assert w.start_from.currentText() == "new model"
    w.start()
    qtbot.waitUntil(lambda: len(w.plot.train) >= 1, timeout=HANG_MS)
    w.stop()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert w.finished_reason == "stopped"
    assert state.model is not tiny_model and "trained" in state.source and "more" not in state.source
    assert state.previous is not None and state.previous[0] is tiny_model
    assert w.revert_btn.isEnabled()
    new = state.model
    w.revert()
    assert state.model is tiny_model and state.previous[0] is new


def test_a_run_stopped_before_its_first_step_replaces_nothing(viewer, dock, qtbot, tiny_model, notes):
    """An accidental click on Train, stopped at once: the untrained weights it hands back do
    not replace the current model, and the status line says so."""
    w = _train_widget(viewer, dock)
    state = model_state(viewer)
    state.set(tiny_model, "loaded from a.pt")
    w.start()
    w.stop()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert w.finished_reason == "stopped"
    assert state.model is tiny_model and state.source == "loaded from a.pt" and state.previous is None
    assert w.status.text() == "stopped before the first step: the model is unchanged"
    assert "loaded from a.pt" in w.model_label.text()
    assert not errors(notes) and "the model is unchanged" in notes[-1][1]


def test_one_run_at_a_time_per_viewer(viewer, dock, qtbot, notes):
    """The tabs' Train page and a Train dock share the viewer's model: while one trains, the
    other refuses to start (the last to finish would silently replace the other's model)."""
    viewer.open_sample("napari-unet", "nuclei_2d")
    first = _tiny(dock("All steps (tabs)").page("Train"))
    second = _tiny(dock("Train"))
    first.start()
    second.start()
    assert first.is_running() and not second.is_running()
    assert "Training is already running" in errors(notes)[-1]
    assert second.train_btn.isEnabled() and not second.stop_btn.isEnabled()
    second.revert()
    assert "Stop training" in errors(notes)[-1]
    first.stop()
    qtbot.waitUntil(lambda: not first.is_running(), timeout=HANG_MS)
    assert model_state(viewer).training is None
    second.start()   # the first run is over: the other widget may train now
    assert second.is_running()
    second.stop()
    qtbot.waitUntil(lambda: not second.is_running(), timeout=HANG_MS)


def test_the_device_line_after_a_run_the_engine_refused(viewer, dock, qtbot, notes):
    """Only one class painted: the engine refuses the run; the device line does not stay
    'device: starting…'."""
    w = _train_widget(viewer, dock)
    paint = viewer.layers["nuclei 2d paint"]
    paint.data = np.where(paint.data == 2, 0, paint.data).astype(paint.data.dtype)
    before = w.device_label.text()
    w.start()
    assert "starting" in w.device_label.text()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert errors(notes), "the engine was expected to refuse one painted class"
    assert w.device_label.text() == before
    assert model_state(viewer).training is None


def test_the_engines_refusals_name_the_layers_and_the_widgets_controls(viewer, dock, qtbot, notes):
    """The engine speaks to Python callers ('image 1', 'classes=2'); the widget says the
    same mistake with the layers' names and its own controls."""
    from napari_unet._widgets._layers import KEY, info

    w = _train_widget(viewer, dock)
    img = viewer.layers["nuclei 2d"]
    paint = viewer.layers["nuclei 2d paint"]
    bad = np.array(img.data, dtype=np.float32)
    bad[5, 5] = np.nan
    second = viewer.add_image(bad, name="b_bad")
    painting = viewer.add_labels(np.array(paint.data), name="b_bad paint")
    painting.metadata[KEY] = {**info(paint), "image": second.name}   # its painting, as Annotate tags it
    w.refresh_pairs()
    assert [i.name for i, _ in w.chosen_pairs()] == ["nuclei 2d", "b_bad"]
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert errors(notes) and errors(notes)[-1].startswith("'b_bad' contains NaN"), errors(notes)
    viewer.layers.remove(second)
    viewer.layers.remove(painting)
    w.refresh_pairs()
    paint.data = np.where(paint.data == 2, 5, paint.data).astype(paint.data.dtype)   # class 5 of 2
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    last = errors(notes)[-1]
    assert last.startswith("a painting holds class 5 but Annotate lists 2 classes"), last
    assert "classes=" not in last
