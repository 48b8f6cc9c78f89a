"""RGB images (e.g. histology) train in the widget as three channels, with a live preview."""
from __future__ import annotations

import numpy as np

from napari_unet._widgets._state import model_state

HANG_MS = 180_000  # only catches hangs


def test_train_on_an_rgb_image_with_preview(viewer, dock, qtbot):
    rng = np.random.default_rng(0)
    rgb = (rng.random((64, 64, 3)) * 60).astype(np.uint8)
    rgb[16:40, 16:40] = (200, 80, 160)  # a pink "cell" on a dark background
    image = viewer.add_image(rgb, name="stain", rgb=True)
    paint = dock("Annotate").create_paint_layer()
    assert paint.data.shape == (64, 64)
    data = paint.data
    data[24:32, 24:32] = 2
    data[2:8, 2:60] = 1
    paint.data = data
    w = dock("Train")
    w.base_channels.setValue(8)
    w.depth.setValue(2)
    w.set_limit(5, "steps")
    w.preview_every = 0.01
    viewer.layers.selection.active = paint
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert w.finished_reason == "steps", w.status.text()
    model = model_state(viewer).model
    assert model.meta["in_channels"] == 3
    preview = viewer.layers["stain preview"]
    assert preview.data.shape == (64, 64)
    qtbot.waitUntil(lambda: preview.data.any(), timeout=HANG_MS)
    assert viewer.layers[-1].name == "stain paint" and "stain" in viewer.layers


def test_predict_and_batch_take_an_rgb_layer_for_an_rgb_model(viewer, dock, qtbot, notes, tiny_model):
    """An RGB layer given to a model of three input channels is read channels-last by itself
    (as Train trains on it); a one-channel model says how many channels it takes."""
    from napari_unet import build_model

    from conftest import errors

    rgb = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype(np.uint8)
    viewer.add_image(rgb, name="stain", rgb=True)
    model_state(viewer).set(build_model(2, in_channels=3, base_channels=4, depth=2), "rgb model")
    p = dock("Predict")
    p.image_combo.set_layer("stain")
    viewer.layers.selection.clear()
    p.run()
    assert p.worker is not None, errors(notes)
    qtbot.waitUntil(lambda: p.worker is None, timeout=HANG_MS)
    assert not errors(notes)
    assert viewer.layers["stain labels"].data.shape == (48, 64)
    b = dock("Batch")
    b.run()
    qtbot.waitUntil(lambda: b.worker is None, timeout=HANG_MS)
    assert not errors(notes) and b.done == ["stain"], b.status.text()

    model_state(viewer).set(tiny_model, "grey model")
    p.run()
    assert p.worker is None
    assert "'stain' is an RGB image (3 channels)" in errors(notes)[-1]
    assert "takes 1 channel" in errors(notes)[-1]
