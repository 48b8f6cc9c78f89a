"""Annotate: painting layer creation, class list, autosave and reload."""
from __future__ import annotations

import numpy as np

from conftest import errors

HANG_MS = 120_000  # waits end on state; this only catches a hang


def test_create_paint_layer_autosave_and_reload(viewer, dock, qtbot, tmp_path, notes):
    image = viewer.add_image(np.random.default_rng(0).random((5, 40, 50)).astype(np.float32), name="cells")
    w = dock("Annotate")
    assert w.image_combo.currentText() == "cells"
    paint = w.create_paint_layer()
    assert paint.name == "cells paint" and paint.data.shape == image.data.shape
    assert paint.data.dtype == np.uint8 and not paint.data.any()
    assert paint.mode == "paint" and paint.selected_label == 2 and paint.brush_size >= 2
    assert viewer.layers.selection.active.name == paint.name
    assert [w.class_list.item(i).text() for i in range(w.class_list.count())] == ["background", "foreground"]

    # classes: add, rename, select, remove (class 1 is protected)
    w.add_class("debris")
    w.rename_class(2, "nucleus")
    assert w.class_names() == ["background", "nucleus", "debris"]
    w.class_list.setCurrentRow(2)
    assert paint.selected_label == 3
    w.remove_class(1)
    assert errors(notes) and "background" in errors(notes)[-1]

    # paint on one slice (as the brush would) and wait for the debounced autosave
    data = paint.data
    data[2, 10:20, 10:20] = 2
    data[2, 30:35, 5:15] = 1
    paint.data = data
    path = w.autosaver.path_of(paint)
    assert path.parent.parent == tmp_path / "userdata"
    qtbot.waitUntil(lambda: path.exists() and w.autosaver.last_saved == path and not w.autosaver.busy(),
                    timeout=HANG_MS)
    import tifffile

    assert np.array_equal(tifffile.imread(path), paint.data)

    # the painting layer is gone; creating it again reloads the strokes and the class names
    viewer.layers.remove(paint)
    again = w.create_paint_layer()
    assert again is not paint
    assert np.array_equal(again.data, data)
    assert w.class_names() == ["background", "nucleus", "debris"]
    assert any("Reloaded" in m for k, m in notes if k == "info")


def _answer(monkeypatch, button):
    """Answers the confirmation dialog with ``button`` (and records what it asked)."""
    from qtpy.QtWidgets import QMessageBox

    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or button)
    return asked


def test_remove_class_asks_renumbers_strokes_and_can_be_undone(viewer, dock, monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    viewer.add_image(np.zeros((30, 30), np.float32), name="img")
    w = dock("Annotate")
    paint = w.create_paint_layer()
    w.add_class("c3")
    data = paint.data
    data[0, :3] = [1, 2, 3]
    data[5, :4] = 2
    paint.data = data
    before = paint.data.copy()

    asked = _answer(monkeypatch, QMessageBox.No)  # the user says no: nothing happens
    assert w.remove_class(2) is False
    assert "5 painted pixels" in asked[-1] and np.array_equal(paint.data, before)
    assert w.class_names() == ["background", "foreground", "c3"] and not w.undo_remove_btn.isEnabled()

    asked = _answer(monkeypatch, QMessageBox.Yes)
    assert w.remove_class(2) is True
    assert paint.data[0, :3].tolist() == [1, 0, 2] and not (paint.data[5, :4]).any()
    assert w.class_names() == ["background", "c3"]
    assert w.undo_remove_btn.isEnabled() and "foreground" in w.undo_remove_btn.text()

    data = paint.data  # painted after the removal: c3 (now 2) strokes keep their class
    data[9, :2] = 2
    paint.data = data
    w.undo_remove_btn.click()
    assert w.class_names() == ["background", "foreground", "c3"]
    assert np.array_equal(paint.data[:9], before[:9]) and paint.data[9, :2].tolist() == [3, 3]
    assert not w.undo_remove_btn.isEnabled()


def test_removing_a_class_without_strokes_does_not_ask(viewer, dock, monkeypatch):
    viewer.add_image(np.zeros((30, 30), np.float32), name="img")
    w = dock("Annotate")
    w.create_paint_layer()
    w.add_class("unused")
    asked = _answer(monkeypatch, None)
    assert w.remove_class(3) is True and asked == []
    assert w.class_names() == ["background", "foreground"]


def test_undo_is_autosaved(viewer, dock, qtbot):
    import tifffile
    from napari.layers.labels._labels_key_bindings import redo, undo

    viewer.add_image(np.zeros((40, 40), np.float32), name="img")
    w = dock("Annotate")
    paint = w.create_paint_layer()
    path = w.autosaver.path_of(paint)

    def saved_is(expected):
        try:
            return np.array_equal(tifffile.imread(path), expected) and not w.autosaver.busy()
        except (OSError, ValueError):
            return False

    paint.selected_label = 2
    paint.brush_size = 5
    paint.paint((20, 20), 2)  # a brush stroke, as napari records it (undoable)
    stroke = paint.data.copy()
    assert stroke.any()
    qtbot.waitUntil(lambda: saved_is(stroke), timeout=HANG_MS)
    undo(paint)  # what Ctrl+Z runs on the selected labels layer
    assert not paint.data.any()
    qtbot.waitUntil(lambda: saved_is(np.zeros_like(stroke)), timeout=HANG_MS)
    redo(paint)
    qtbot.waitUntil(lambda: saved_is(stroke), timeout=HANG_MS)


def test_autosave_next_to_source_file(viewer, dock, tmp_path, qtbot):
    import tifffile

    src = tmp_path / "stack.tif"
    tifffile.imwrite(src, np.zeros((20, 24), np.uint16))
    viewer.open(src, plugin="napari")
    w = dock("Annotate")
    paint = w.create_paint_layer()
    assert w.autosaver.path_of(paint) == tmp_path / "stack_paint.tif"
    w.autosaver.save_now(paint, wait=True)
    assert (tmp_path / "stack_paint.tif").exists()
