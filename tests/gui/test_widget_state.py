"""The shared model state is evented: every widget's model line follows it (Save included);
Annotate says where it *will* autosave until the first save; Train dispatches events by type."""
from __future__ import annotations

import numpy as np

from napari_unet._widgets._state import model_state


def test_save_updates_every_model_line(viewer, dock, tiny_model, tmp_path):
    train, predict, batch = dock("Train"), dock("Predict"), dock("Batch")
    model_state(viewer).set(tiny_model, "trained 35 steps")
    for w in (train, predict, batch):
        assert "trained 35 steps" in w.model_label.text()
    out = train.save_model(str(tmp_path / "m.pt"))
    for w in (train, predict, batch):
        assert f"saved to {out}" in w.model_label.text(), w

    seen = []
    model_state(viewer).changed.connect(seen.append)
    model_state(viewer).source = "renamed"
    assert seen == [tiny_model] and "renamed" in predict.model_label.text()


def test_state_is_per_viewer(make_napari_viewer):
    a, b = make_napari_viewer(), make_napari_viewer()
    assert model_state(a) is model_state(a) and model_state(a) is not model_state(b)


def test_autosave_says_will_until_first_save(viewer, dock):
    viewer.add_image(np.zeros((30, 40), np.float32), name="img")
    w = dock("Annotate")
    paint = w.create_paint_layer()
    assert w.status.text().startswith("will autosave to "), w.status.text()
    w.autosaver.save_now(paint, wait=True)
    assert w.status.text().startswith("autosaved to "), w.status.text()


def test_train_events_dispatch_by_type(viewer, dock):
    from napari_unet.core.events import Checkpoint, TrainStep

    w = dock("Train")
    w._on_event(TrainStep(step=3, loss=0.5, lr=1e-3, steps_per_s=2.0, elapsed=1.5, fraction=0.5))
    assert w.status.text().startswith("step 3 · loss 0.5000"), w.status.text()
    w._on_event(Checkpoint(step=4, path="/x/ckpt.pt"))
    assert "checkpoint at step 4" in w.model_label.text()
    w._on_event(object())  # an unknown event is ignored
    from napari_unet._widgets._train_events import event_handlers

    from napari_unet.core import events as e

    assert set(event_handlers()) == {e.TrainStarted, e.TrainStep, e.Validation, e.Preview, e.Checkpoint,
                                     e.TrainFinished}


def test_predict_batch_evaluate_share_the_job_panel(viewer, dock, tiny_model, tmp_path, qtbot, notes):
    from napari_unet._widgets._job_panel import JobPanel

    predict, batch, evaluate = dock("Predict"), dock("Batch"), dock("Evaluate")
    assert all(isinstance(w, JobPanel) for w in (predict, batch, evaluate))
    model_state(viewer).set(tiny_model, "test")
    viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), name="img")
    batch.write.setChecked(True)
    batch.out_dir.setText(str(tmp_path / "a folder with a long name" / "out"))
    batch.run()
    qtbot.waitUntil(lambda: batch.worker is None, timeout=120_000)  # only catches a hang
    # the notification is one short sentence; where the files are is in the status line
    assert ("info", "Segmented 1 image(s).") in notes
    assert str(tmp_path / "a folder with a long name" / "out") in batch.status.text()

    pred = viewer.add_labels(np.ones((6, 5), np.uint8), name="p")
    truth = viewer.add_labels(np.ones((6, 5), np.uint8), name="t")
    evaluate.pred_combo.set_layer(pred.name)
    evaluate.truth_combo.set_layer(truth.name)
    assert evaluate.run() is not None
    qtbot.waitUntil(lambda: evaluate.worker is None, timeout=120_000)  # (scoring runs in a worker)
    assert evaluate.status.text() == "scored 'p' against 't'"


def test_train_status_line_takes_the_finished_events_detail(viewer, dock):
    """The status line shows TrainFinished.detail (a field of the event), whatever the message."""
    from napari_unet.core.events import TrainFinished

    w = dock("Train")
    w._on_event(TrainFinished("steps", 12, None, message="a message; with a semicolon",
                              kept_previous=True, detail="kept the previous model: it fits better",
                              paint_iou=(0.8, 0.6)))
    assert w.status.text() == "finished: step limit reached (step 12): kept the previous model: it fits better"
    w._on_event(TrainFinished("stopped", 3, None, message="stopped after 3 steps (1.0 s)"))
    assert w.status.text() == "stopped: the model so far is kept (step 3)"


def test_revert_after_keep_better_kept_the_previous_model_takes_the_new_weights(viewer, dock):
    """keep_better kept the previous weights: Revert offers the run's own (the user says
    otherwise), and a second Revert goes back."""
    from napari_unet.core.events import TrainFinished
    from napari_unet.core.model import build_model

    w = dock("Train")
    state = model_state(viewer)
    kept, new = build_model(base_channels=4, depth=1), build_model(base_channels=4, depth=1)
    w._previous = (kept, "trained 10 steps")
    w._on_event(TrainFinished("steps", 12, kept, message="m", kept_previous=True,
                              detail="kept the previous model: it fits better", discarded=new))
    assert state.model is kept and state.previous[0] is new and "not kept" in state.previous[1]
    assert w.status.text().endswith("it fits better (Revert takes the new weights after all)")
    assert w.revert_btn.isEnabled()
    w.revert()
    assert state.model is new and state.previous[0] is kept
    w.revert()
    assert state.model is kept


def test_docked_one_by_one_the_widgets_fit_a_laptop_screen(make_napari_viewer, qtbot):
    """Train and Predict docked separately asked for 1,230 px and napari grew the window past
    a 1,000-px screen (the Predict button out of reach); now each scrolls in the room it gets,
    at full width (nothing cut off on the right)."""
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    win = viewer.window._qt_window
    win.resize(1400, 900)
    docks = [viewer.window.add_plugin_dock_widget("napari-unet", name) for name in ("Train", "Predict")]
    qtbot.waitUntil(lambda: all(d.isVisible() for d, _ in docks), timeout=60_000)
    qtbot.wait(200)
    assert win.height() <= 900
    for d, w in docks:
        assert w.minimumSizeHint().height() < 300
        scroll = w.findChild(QScrollArea)
        inner = scroll.widget()
        assert not scroll.horizontalScrollBar().isVisible()
        assert scroll.viewport().width() >= inner.minimumSizeHint().width()


def test_revert_and_load_predict_the_preview_again(viewer, dock, qtbot, tmp_path):
    """The preview layer showed the model being replaced: Revert and Load predict the slice on
    screen again with the model now current (in the background)."""
    from napari_unet._widgets._preview import preview_layer
    from napari_unet.core.events import TrainFinished
    from napari_unet.core.io import save_model
    from napari_unet.core.model import build_model
    from napari_unet.core.predict import predict

    image = viewer.add_image(np.random.default_rng(0).random((48, 64)).astype(np.float32), name="cells")
    w = dock("Train")
    preview = preview_layer(viewer, image)
    viewer.layers.selection.active = image
    first, second = build_model(base_channels=4, depth=1), build_model(base_channels=4, depth=1)

    def shows(model) -> bool:
        want = 1.0 - predict(model, image.data, device="cpu")[0]
        return float(np.abs(preview.data - want).max()) < 1e-4

    assert not shows(first) and not shows(second)   # two random networks: different previews
    w._previous = (first, "trained 10 steps")
    w._on_event(TrainFinished("steps", 12, second, message="m"))
    w.revert()
    assert model_state(viewer).model is first
    qtbot.waitUntil(lambda: shows(first), timeout=60_000)
    path = save_model(second, tmp_path / "second.pt")
    w.load_model(str(path))
    qtbot.waitUntil(lambda: shows(second), timeout=60_000)
    w.live_preview.setChecked(False)    # off: the preview is left as it is
    w.revert()
    assert w.refresh_preview() is None and shows(second)


def test_loading_a_model_for_other_images_clears_the_preview(viewer, dock, qtbot, tmp_path, notes):
    """A 3D model loaded while a 2D image's preview is shown: that preview was another model's
    and this one cannot predict the image, so the preview is emptied, without an error."""
    from napari_unet._widgets._preview import preview_layer
    from napari_unet.core.io import save_model
    from napari_unet.core.model import build_model

    image = viewer.add_image(np.ones((48, 64), np.float32), name="cells")
    w = dock("Train")
    preview = preview_layer(viewer, image)
    preview.data[...] = 0.5
    viewer.layers.selection.active = image
    path = save_model(build_model(dims=3, base_channels=4, depth=1), tmp_path / "m3d.pt")
    w.load_model(str(path))
    qtbot.waitUntil(lambda: not preview.data.any(), timeout=60_000)
    assert not any(level == "error" for level, _ in notes)
