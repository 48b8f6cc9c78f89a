"""User mistakes end in one notification naming the problem, never a traceback."""
from __future__ import annotations

import numpy as np

from napari_unet._widgets._state import model_state

from conftest import errors


def test_predict_mistakes(viewer, dock, notes, tiny_model):
    w = dock("Predict")
    w.run()
    assert "No model yet" in errors(notes)[-1]
    model_state(viewer).set(tiny_model, "test")
    w.run()
    assert "No image selected" in errors(notes)[-1]
    viewer.add_image(np.zeros((4, 32, 32), np.float32), name="img")
    w.mode.setCurrentIndex(1)
    model_state(viewer).set(__import__("napari_unet").build_model(2, classes=3, base_channels=4, depth=2), "t")
    w.run()
    assert "two-class" in errors(notes)[-1]
    assert w.worker is None and w.run_btn.isEnabled()



def test_predict_larger_than_ram_and_disk_says_so(viewer, dock, notes, tiny_model, qtbot, monkeypatch, tmp_path):
    import collections
    import shutil

    from napari_unet.core import device

    w = dock("Predict")
    model_state(viewer).set(tiny_model, "test")
    viewer.add_image(np.zeros((8, 64, 64), np.float32), name="stack")
    monkeypatch.setattr(device, "available_memory", lambda dev: 1 << 16)  # 64 KiB of RAM free
    monkeypatch.setenv("NAPARI_UNET_SCRATCH", str(tmp_path))
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 20, 1 << 20, 1 << 16))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert "GiB free" in errors(notes)[-1] and "NAPARI_UNET_SCRATCH" in errors(notes)[-1]
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()
    assert [la.name for la in viewer.layers] == ["stack"]  # nothing half-made was added


def test_evaluate_mistakes(viewer, dock, notes):
    w = dock("Evaluate")
    w.run()
    assert "Choose a prediction" in errors(notes)[-1]
    viewer.add_labels(np.ones((5, 5), np.uint8), name="a")
    viewer.add_labels(np.ones((6, 5), np.uint8), name="b")
    w.pred_combo.set_layer("a")
    w.truth_combo.set_layer("b")
    w.run()
    assert "Shapes do not match" in errors(notes)[-1] and "(6, 5)" in errors(notes)[-1]
    w.copy()
    assert "Nothing to copy" in errors(notes)[-1]


def test_batch_and_annotate_mistakes(viewer, dock, notes, tiny_model, tmp_path):
    b = dock("Batch")
    b.run()
    assert "No model yet" in errors(notes)[-1]
    model_state(viewer).set(tiny_model, "test")
    b.run()
    assert "No images to segment" in errors(notes)[-1]
    viewer.add_image(np.zeros((32, 32), np.float32), name="img")
    b.write.setChecked(True)
    b.run()
    assert "output folder" in errors(notes)[-1]
    (tmp_path / "file").write_text("x")
    b.out_dir.setText(str(tmp_path / "file"))
    b.run()
    assert "is a file" in errors(notes)[-1]
    assert b.worker is None
    viewer.layers.clear()
    a = dock("Annotate")
    a.create_paint_layer()
    assert "No image to paint on" in errors(notes)[-1]
    a.add_class("x")
    assert "Start painting first" in errors(notes)[-1]
