"""Annotate: painting layer creation, class list, autosave and reload."""
from __future__ import annotations

import numpy as np

from conftest import errors


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
                    timeout=10000)
    import tifffile

    assert np.array_equal(tifffile.imread(path), paint.data)

    # the painting layer is gone; creating it again reloads the strokes and the class names
    viewer.layers.remove(paint)
    again = w.create_paint_layer()
    assert again is not paint
    assert np.array_equal(again.data, data)
    assert w.class_names() == ["background", "nucleus", "debris"]
    assert any("Reloaded" in m for k, m in notes if k == "info")


def test_remove_class_renumbers_strokes(viewer, dock):
    viewer.add_image(np.zeros((30, 30), np.float32), name="img")
    w = dock("Annotate")
    paint = w.create_paint_layer()
    w.add_class("c3")
    data = paint.data
    data[0, :3] = [1, 2, 3]
    paint.data = data
    w.remove_class(2)
    assert paint.data[0, :3].tolist() == [1, 0, 2]
    assert w.class_names() == ["background", "c3"]


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
