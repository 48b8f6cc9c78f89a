"""Train: one-click training on the sample, Stop, live preview, save/load, closing the viewer."""
from __future__ import annotations

import numpy as np

from napari_unet._widgets._state import model_state

from conftest import errors

HANG_MS = 120_000  # waits end on state; this only catches a hang (never a speed requirement)


def _train_widget(viewer, dock, seconds: float = 3, sample: str = "nuclei_2d"):
    viewer.open_sample("napari-unet", sample)
    w = dock("Train")
    w.base_channels.setValue(8)  # tiny network: fast on 2 CPU cores
    w.depth.setValue(2)
    w.set_limit(int(seconds), "seconds")
    return w


def test_one_click_training_leaves_a_model(viewer, dock, qtbot, tmp_path):
    w = _train_widget(viewer, dock, seconds=3)
    predict = dock("Predict")
    w.start()
    assert w.is_running() and not w.train_btn.isEnabled() and w.stop_btn.isEnabled()
    try:
        qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    except Exception:
        from qtpy.QtCore import QThreadPool
        p = QThreadPool.globalInstance()
        print("POOL", p.activeThreadCount(), p.maxThreadCount(), w.status.text(), w.worker.is_running)
        raise
    assert w.finished_reason in ("time", "steps")
    assert w.train_btn.isEnabled() and not w.stop_btn.isEnabled()
    state = model_state(viewer)
    assert state.model is not None
    assert state.model.meta["class_names"] == ["background", "nucleus"]
    assert w.plot.train, "the loss curve got no points"
    assert w.progress.value() == 1000
    assert "device" in w.device_label.text() and "cpu" in w.device_label.text()
    assert "trained" in predict.model_label.text()  # the model is shared with Predict

    # save and load again
    path = w.save_model(str(tmp_path / "m.pt"))
    assert path.exists()
    loaded = w.load_model(str(path))
    assert state.model is loaded and loaded.meta["classes"] == 2


def test_stop_stops_and_keeps_the_model(viewer, dock, qtbot):
    w = _train_widget(viewer, dock, seconds=3600)  # only Stop can end this run within the test
    w.live_preview.setChecked(False)
    w.start()
    qtbot.waitUntil(lambda: len(w.plot.train) >= 2, timeout=HANG_MS)
    w.stop()
    assert w.status.text().startswith("stopping")
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert w.finished_reason == "stopped"
    assert model_state(viewer).model is not None
    assert w.train_btn.isEnabled()


def test_live_preview_follows_the_slice_on_screen(viewer, dock, qtbot):
    w = _train_widget(viewer, dock, seconds=3600, sample="nuclei_3d")  # stopped below
    w.dims.setCurrentIndex(0)  # the user picks 2D: one slice previewed (3D: a slab of planes)
    w.dims.activated.emit(0)
    w.preview_every = 0.5
    viewer.dims.set_current_step(0, 7)
    paint = next(la for la in viewer.layers if la.name.endswith("paint"))
    viewer.layers.selection.active = paint  # the user is painting while training runs
    w.start()
    try:
        qtbot.waitUntil(lambda: "nuclei 3d preview" in [la.name for la in viewer.layers], timeout=HANG_MS)
        preview = viewer.layers["nuclei 3d preview"]
        assert viewer.layers.selection.active is paint and set(viewer.layers.selection) == {paint}
        assert preview.data.shape == viewer.layers["nuclei 3d"].data.shape
        qtbot.waitUntil(lambda: preview.data[7].any(), timeout=HANG_MS)
        assert not preview.data[15].any()
        assert 0.0 <= preview.data.min() and preview.data.max() <= 1.0
        viewer.dims.set_current_step(0, 15)  # the user moves: the next preview is of slice 15
        qtbot.waitUntil(lambda: preview.data[15].any(), timeout=HANG_MS)
    finally:
        w.stop()
        qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)


def test_closing_the_viewer_stops_training(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "nuclei_2d")
    _dw, w = viewer.window.add_plugin_dock_widget("napari-unet", "Train")
    w.base_channels.setValue(8)
    w.depth.setValue(2)
    w.set_limit(3600, "seconds")
    w.start()
    qtbot.waitUntil(lambda: len(w.plot.train) >= 1, timeout=HANG_MS)
    worker, stop = w.worker, w._stop
    viewer.close()
    assert stop.is_set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=HANG_MS)
    from napari_unet.core import train_process

    # no training process is left, even though the deleted widget's worker never resumes the run
    qtbot.waitUntil(lambda: all(p.poll() is not None for p in list(train_process._LIVE)), timeout=HANG_MS)


def test_user_mistakes_are_notifications(viewer, dock, notes):
    w = dock("Train")
    w.start()  # nothing painted, nothing open
    assert "Nothing to train on" in errors(notes)[-1]
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    a = dock("Annotate")
    a.create_paint_layer()
    w.refresh_pairs()
    w.start()
    assert "no paint yet" in errors(notes)[-1]
    w.start_from.setCurrentText("continue current model")
    viewer.layers["img paint"].data[1, 1] = 2
    w.start()
    assert "No model yet" in errors(notes)[-1]
    w.save_model("/nonexistent/x.pt")
    assert "No model yet" in errors(notes)[-1]
    w.load_model("/nonexistent/x.pt")
    assert "does not exist" in errors(notes)[-1]
    assert not w.is_running() and w.train_btn.isEnabled()


def test_a_run_that_fails_in_the_engine_leaves_no_empty_preview(viewer, dock, qtbot, notes, tmp_path):
    w = _train_widget(viewer, dock, seconds=3)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a model")
    w.start_from.setCurrentText("fine-tune a model file")
    w.init_path.setText(str(bad))
    assert w.live_preview.isChecked()
    w.start()
    assert "nuclei 2d preview" in [la.name for la in viewer.layers]  # added on the click
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert "corrupt.pt" in errors(notes)[-1]
    assert "nuclei 2d preview" not in [la.name for la in viewer.layers]
    assert w.train_btn.isEnabled()


def test_a_training_process_that_never_starts_is_reported(viewer, dock, qtbot, notes, monkeypatch):
    import sys

    from napari_unet.core import train_process

    monkeypatch.setattr(train_process, "_child_command",
                        lambda address: [sys.executable, "-c", "import time; time.sleep(600)"])
    monkeypatch.setattr(train_process, "STARTUP_S", 1.0)
    w = _train_widget(viewer, dock, seconds=3)
    assert w.separate_process.isChecked()
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert "did not start within 1 s" in errors(notes)[-1]
    assert "starting" not in w.status.text() and w.train_btn.isEnabled()
    assert not train_process._LIVE  # the stuck process was ended


def test_a_class_painted_in_a_few_spots_is_noted_when_training_starts(viewer, dock, qtbot):
    """The nuclei sample with all but one small background stroke erased: training runs, and
    the device line says which class is short of paint (it stays for the whole run)."""
    w = _train_widget(viewer, dock, seconds=2)
    paint = viewer.layers["nuclei 2d paint"]
    data = np.array(paint.data)
    bg = np.argwhere(data == 1)
    data[data == 1] = 0
    for y, x in bg[:20]:
        data[y, x] = 1
    paint.data = data
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert w.finished_reason in ("time", "steps")
    text = w.device_label.text()
    assert "note: background (class 1) holds 20 of the" in text and "paint it in more places" in text
