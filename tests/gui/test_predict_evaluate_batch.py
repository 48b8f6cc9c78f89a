"""Predict, Evaluate and Batch with a tiny (untrained) model: layers, shapes, values, numbers."""
from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets._state import model_state


def test_predict_adds_probability_labels_and_uncertainty_layers(viewer, dock, qtbot, tiny_model):
    img = np.random.default_rng(1).random((64, 80)).astype(np.float32)
    viewer.add_image(img, name="cells")
    model_state(viewer).set(tiny_model, "test")
    w = dock("Predict")
    w.run()
    assert not w.run_btn.isEnabled()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()
    names = [layer.name for layer in viewer.layers]
    for n in ("cells p(background)", "cells p(nucleus)", "cells labels", "cells uncertainty"):
        assert n in names
    p_bg, p_fg = viewer.layers["cells p(background)"].data, viewer.layers["cells p(nucleus)"].data
    assert p_bg.shape == p_fg.shape == img.shape and p_fg.dtype == np.float32
    np.testing.assert_allclose(p_bg + p_fg, 1.0, atol=1e-4)
    labels = viewer.layers["cells labels"].data
    assert labels.shape == img.shape and set(np.unique(labels)) <= {1, 2}
    assert np.array_equal(labels, np.where(p_fg > p_bg, 2, 1))
    assert tuple(viewer.layers["cells p(nucleus)"].contrast_limits) == (0.0, 1.0)
    unc = viewer.layers["cells uncertainty"].data
    assert unc.shape == img.shape and 0 <= unc.min() and unc.max() <= 1.0001

    # threshold mode updates the same layers in place
    n_layers = len(viewer.layers)
    w.mode.setCurrentIndex(1)
    w.threshold.setValue(0.3)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert len(viewer.layers) == n_layers
    p_fg = viewer.layers["cells p(nucleus)"].data
    assert np.array_equal(viewer.layers["cells labels"].data, np.where(p_fg >= 0.3, 2, 1))



def test_predict_one_class_per_object(viewer, dock, qtbot, notes, tmp_path):
    """The "one class per object" labels mode: an object the pixel classifier splits between two
    kinds takes one, the one with the most probability over it; refused for a two-class model."""
    import torch

    from napari_unet import build_model
    from conftest import errors

    torch.manual_seed(0)
    model = build_model(dims=2, classes=3, base_channels=4, depth=2)
    with torch.no_grad():   # a model that calls every pixel an object, of either kind
        model.head.bias.copy_(torch.tensor([-20.0, 0.0, 0.0]))
        model.head.weight[0] = 0
        model.head.weight[2] = -model.head.weight[1]
    img = np.random.default_rng(1).random((48, 64)).astype(np.float32)
    viewer.add_image(img, name="cells")
    model_state(viewer).set(model, "test")
    w = dock("Predict")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert set(np.unique(viewer.layers["cells labels"].data)) == {2, 3}   # argmax mixes the kinds
    w.mode.setCurrentIndex(2)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    probs = np.stack([viewer.layers[f"cells p({n})"].data for n in model.meta["class_names"]])
    winner = 2 + int(probs[2].sum() > probs[1].sum())
    assert np.all(viewer.layers["cells labels"].data == winner)
    # Batch, the same option
    viewer.add_image(img[::-1].copy(), name="more cells")
    b = dock("Batch")
    b.per_object.setChecked(True)
    b.run()
    qtbot.waitUntil(lambda: b.worker is None, timeout=120_000)  # only catches a hang
    assert b.done == ["cells", "more cells"]
    for name in b.done:
        assert len(np.unique(viewer.layers[f"{name} labels"].data)) == 1
    b.workers.setValue(2)
    b.write.setChecked(True)
    b.out_dir.setText(str(tmp_path))
    b.run()
    assert "dask workers" in errors(notes)[-1] and b.worker is None
    model_state(viewer).set(build_model(dims=2, classes=2, base_channels=4, depth=2), "two")
    for widget in (w, b):
        widget.run()
        assert "more than two classes" in errors(notes)[-1] and widget.worker is None


def test_predict_and_batch_follow_a_model_whose_paint_held_one_class_per_object(viewer, dock, qtbot):
    """A model whose training found each painted object of one class (meta) sets Predict's labels
    to "one class per object" and ticks Batch's box; the next model that does not undoes only
    what the model set, and a user's own choice stays."""
    import torch

    from napari_unet import build_model

    torch.manual_seed(0)
    kinds = build_model(dims=2, classes=3, base_channels=4, depth=2)
    with torch.no_grad():   # every pixel an object, of either kind
        kinds.head.bias.copy_(torch.tensor([-20.0, 0.0, 0.0]))
        kinds.head.weight[0] = 0
        kinds.head.weight[2] = -kinds.head.weight[1]
    kinds.meta["one_class_per_object"] = True
    parts = build_model(dims=2, classes=3, base_channels=4, depth=2)
    parts.meta["one_class_per_object"] = False
    state = model_state(viewer)
    state.set(kinds, "trained")
    w, b = dock("Predict"), dock("Batch")     # opened after the model: they read it too
    assert w.mode.currentIndex() == 2 and b.per_object.isChecked()
    viewer.add_image(np.random.default_rng(1).random((48, 64)).astype(np.float32), name="cells")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert len(np.unique(viewer.layers["cells labels"].data)) == 1
    state.saved("/tmp/kinds.pt")              # a new source, the same model: nothing changes
    assert w.mode.currentIndex() == 2
    state.set(parts, "trained")
    assert w.mode.currentIndex() == 0 and not b.per_object.isChecked()
    w.mode.setCurrentIndex(2)                  # the user's choice
    b.per_object.setChecked(True)
    state.set(build_model(dims=2, classes=3, base_channels=4, depth=2), "loaded")
    assert w.mode.currentIndex() == 2 and b.per_object.isChecked()


def test_predict_a_stack_larger_than_ram_allows_goes_to_disk(viewer, dock, qtbot, tiny_model,
                                                             monkeypatch, tmp_path):
    import os

    from napari_unet import predict
    from napari_unet.core import device

    stack = np.random.default_rng(4).random((6, 48, 56)).astype(np.float32)
    expected = predict(tiny_model, stack, device="cpu")
    viewer.add_image(stack, name="huge")
    model_state(viewer).set(tiny_model, "test")
    monkeypatch.setenv("NAPARI_UNET_SCRATCH", str(tmp_path))
    monkeypatch.setattr(device, "available_memory", lambda dev: 1 << 16)  # results "exceed RAM"
    from napari_unet.core import predict_zarr

    monkeypatch.setattr(predict_zarr, "zarr_available", lambda: False)  # without zarr: memory maps
    w = dock("Predict")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    probs = viewer.layers["huge p(nucleus)"].data
    labels = viewer.layers["huge labels"].data
    unc = viewer.layers["huge uncertainty"].data
    for arr in (probs, labels, unc):
        assert isinstance(arr, np.memmap) or isinstance(arr.base, np.memmap)
    np.testing.assert_allclose(probs, expected[1], atol=1e-6)
    assert np.array_equal(labels, np.where(expected[1] > expected[0], 2, 1))
    assert os.listdir(tmp_path) == []  # unlinked at once: the space returns with the layers



def test_predict_a_multiscale_image_uses_full_resolution(viewer, dock, qtbot, tiny_model):
    import dask.array as da

    full = np.random.default_rng(5).random((96, 128)).astype(np.float32)
    viewer.add_image([da.from_array(full, chunks=32), full[::2, ::2]], multiscale=True, name="pyramid")
    model_state(viewer).set(tiny_model, "test")
    w = dock("Predict")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    labels = viewer.layers["pyramid labels"].data
    assert labels.shape == full.shape  # not the 48x64 level that np.asarray(layer.data) gives
    from napari_unet import predict
    np.testing.assert_allclose(viewer.layers["pyramid p(nucleus)"].data,
                               predict(tiny_model, full, device="cpu")[1], atol=1e-6)


def test_predict_cancel_reenables_buttons(viewer, dock, qtbot, tiny_model):
    viewer.add_image(np.random.default_rng(2).random((40, 256, 256)).astype(np.float32), name="big")
    model_state(viewer).set(tiny_model, "test")
    w = dock("Predict")
    w.tile.setValue(64)
    w.run()
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()


def test_evaluate_hand_made_case(viewer, dock, qtbot, tmp_path, evaluated):
    truth = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 2, 2]], np.uint8)
    pred = np.array([[1, 2, 2, 2], [1, 1, 1, 2], [2, 2, 2, 2]], np.uint8)
    viewer.add_labels(pred, name="pred")
    viewer.add_labels(truth, name="truth")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("truth")
    result = evaluated(w)
    # class 2: TP 5 ((0,2),(0,3),(1,3),(2,2),(2,3)), FP 1 ((0,1)), FN 1 ((1,2));
    # (2,0),(2,1) are unlabeled truth: ignored
    c2 = result["classes"][2]
    assert (c2["tp"], c2["fp"], c2["fn"]) == (5, 1, 1)
    assert abs(c2["iou"] - 5 / 7) < 1e-9 and abs(c2["dice"] - 10 / 12) < 1e-9
    assert abs(result["classes"][1]["iou"] - 0.6) < 1e-9
    cells = [[w.table.item(r, c).text() for c in range(w.table.columnCount())] for r in range(w.table.rowCount())]
    assert ["class 2", "0.714", "0.833", "5", "1", "1"] in cells
    overlay = viewer.layers["pred errors"]
    counts = np.bincount(overlay.data.ravel(), minlength=5)
    assert counts[1:4].tolist() == [5, 1, 1] and counts[4] == 0
    assert counts[0] == 5  # 3 correct background + 2 unlabeled
    assert w.counts == {1: 5, 2: 1, 3: 1, 4: 0}
    assert "false positive 1" in w.legend.text()
    # CSV
    out = w.save_csv(str(tmp_path / "scores.csv"))
    text = (tmp_path / "scores.csv").read_text()
    assert out and text.splitlines()[0] == "scope,class,IoU,Dice,TP,FP,FN"
    assert "all,class 2,0.714286,0.833333,5,1,1" in text
    w.copy()
    from qtpy.QtWidgets import QApplication

    assert QApplication.clipboard().text().startswith("scope\tclass")


def test_evaluate_instance_mask_and_stack_rows(viewer, dock, evaluated):
    pred = np.array([[[1, 2, 2, 2], [1, 1, 1, 2]]] * 2, np.uint8)
    inst = np.array([[[0, 0, 5, 5], [0, 0, 7, 7]]] * 2, np.uint16)
    viewer.add_labels(pred, name="pred")
    viewer.add_labels(inst, name="instances")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("instances")
    w.truth_zero.setCurrentIndex(w.truth_zero.findData("background"))
    result = evaluated(w)
    c2 = result["classes"][2]
    assert (c2["tp"], c2["fp"], c2["fn"]) == (6, 2, 2)
    scopes = {w.table.item(r, 0).text().split(" · ")[0] for r in range(w.table.rowCount())}
    assert {"z 0", "z 1", "background", "mean"} <= scopes
    assert {row[0] for row in w.rows} == {"all", "z 0", "z 1"}


def test_batch_over_two_stacks_writes_files(viewer, dock, qtbot, tiny_model, tmp_path):
    rng = np.random.default_rng(3)
    viewer.add_image(rng.random((3, 48, 40)).astype(np.float32), name="stack a")
    viewer.add_image(rng.random((2, 40, 56)).astype(np.float32), name="stack b")
    model_state(viewer).set(tiny_model, "test")
    w = dock("Batch")
    w.write.setChecked(True)
    w.out_dir.setText(str(tmp_path / "out"))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert w.done == ["stack a", "stack b"]
    assert w.progress.value() == 1000
    for name, shape in (("stack a", (3, 48, 40)), ("stack b", (2, 40, 56))):
        assert viewer.layers[f"{name} labels"].data.shape == shape
    import tifffile

    probs = tifffile.imread(tmp_path / "out" / "stack_a_probs.tif")
    labels = tifffile.imread(tmp_path / "out" / "stack_b_labels.tif")
    assert probs.shape == (2, 3, 48, 40) and labels.shape == (2, 40, 56)


def test_evaluate_binary_truth_counts_false_positives_and_says_so(viewer, dock, evaluated):
    truth = np.zeros((40, 40), np.uint8)
    truth[10:20, 10:20] = 255  # a 0/255 mask, e.g. from another tool
    viewer.add_labels(np.full((40, 40), 2, np.uint8), name="pred")  # all foreground
    viewer.add_labels(truth, name="mask")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("mask")
    assert w.truth_zero.currentData() == "auto"
    result = evaluated(w)
    assert result["truth_zero"] == "background"
    assert result["foreground_iou"] == pytest.approx(100 / 1600) and result["classes"][2]["fp"] == 1500
    assert "read as background" in w.summary.text()
    assert w.counts[2] == 1500  # the overlay shows the false positives
    w.truth_zero.setCurrentIndex(w.truth_zero.findData("unlabeled"))
    result = evaluated(w)
    assert result["truth_zero"] == "unlabeled" and "read as unlabeled" in w.summary.text()
