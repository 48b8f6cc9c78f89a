"""Renaming an image keeps its painting: Annotate, Train and the autosave follow the new name."""
from __future__ import annotations

import numpy as np

from conftest import errors

HANG_MS = 120_000  # waits end on state; this only catches a hang


def _pair_names(train):
    return [train.pairs.item(i).text() for i in range(train.pairs.count())]


def _painted(viewer, dock, name="img"):
    image = viewer.add_image(np.random.default_rng(0).random((40, 50)).astype(np.float32), name=name)
    annotate = dock("Annotate")
    paint = annotate.create_paint_layer()
    data = paint.data
    data[5:15, 5:15] = 2
    data[25:35, 30:40] = 1
    paint.data = data
    return image, paint, annotate


def test_renamed_image_keeps_its_painting(viewer, dock, notes):
    image, paint, annotate = _painted(viewer, dock)
    train = dock("Train")
    assert _pair_names(train) == ["img"]

    image.name = "cells_01"
    # the Train list follows the rename by itself (no refresh_pairs call)
    assert _pair_names(train) == ["cells_01"]
    assert train.chosen_pairs() == [(image, paint)]
    assert "paint" in train.pairs.item(0).toolTip()

    # Annotate finds the same painting: no new empty one
    annotate.image_combo.set_layer("cells_01")
    assert annotate.create_btn.text() == "Select painting layer"
    n_layers = len(viewer.layers)
    assert annotate.create_paint_layer() == paint
    assert len(viewer.layers) == n_layers and not errors(notes)
    assert paint.metadata["napari_unet"]["image"] == "cells_01"
    assert paint.name == "cells_01 paint"  # it had the default name: it follows the image

    # an unticked image stays unticked when renamed
    from qtpy.QtCore import Qt

    train.pairs.item(0).setCheckState(Qt.Unchecked)
    image.name = "cells_02"
    assert _pair_names(train) == ["cells_02"] and train.chosen_pairs() == []
    train.pairs.item(0).setCheckState(Qt.Checked)

    # a new image that takes the old name is a new image: it has no painting yet
    viewer.add_image(np.zeros((40, 50), np.float32), name="img")
    assert annotate.image_combo.currentText() == "cells_02"
    train.refresh_pairs()
    assert _pair_names(train) == ["cells_02"] and train.chosen_pairs() == [(image, paint)]


def test_renaming_the_painting_then_the_image(viewer, dock):
    image, paint, annotate = _painted(viewer, dock)
    train = dock("Train")
    paint.name = "strokes"
    assert train.pairs.item(0).toolTip() == "img + strokes"
    image.name = "cells_01"
    assert _pair_names(train) == ["cells_01"] and train.chosen_pairs() == [(image, paint)]
    assert annotate.paint_layer() == paint and paint.name == "strokes"  # the user's name stays


def test_autosave_follows_the_image_rename(viewer, dock, qtbot, tmp_path):
    import tifffile

    from napari_unet._widgets._autosave import autosave_path

    image, paint, annotate = _painted(viewer, dock)
    old = annotate.autosaver.path_of(paint)
    annotate.autosaver.flush()
    qtbot.waitUntil(lambda: old.is_file() and not annotate.autosaver.busy(), timeout=HANG_MS)

    image.name = "cells_01"
    new = annotate.autosaver.path_of(paint)
    assert new == autosave_path(image) and new != old
    assert np.array_equal(tifffile.imread(new), paint.data)  # the strokes moved with the image
    assert not old.exists()  # the old name's file would hand them to the next image called "img"

    # a new image of the same shape called "img" starts empty and saves elsewhere
    other = viewer.add_image(np.zeros((40, 50), np.float32), name="img")
    annotate.image_combo.set_layer("img")
    fresh = annotate.create_paint_layer()
    assert fresh != paint and not fresh.data.any()
    assert annotate.autosaver.path_of(fresh) == autosave_path(other) != new

    # more strokes on the renamed image's painting go to its new file
    data = paint.data
    data[0:3, 0:3] = 2
    paint.data = data
    annotate.autosaver.flush()
    qtbot.waitUntil(lambda: not annotate.autosaver.busy(), timeout=HANG_MS)
    assert np.array_equal(tifffile.imread(new), paint.data)


def test_rename_never_overwrites_another_images_autosave(viewer, dock, qtbot):
    import tifffile

    from napari_unet._widgets._autosave import autosave_path

    # an earlier session's painting of an image called "cells_01" (same shape)
    earlier = viewer.add_image(np.zeros((40, 50), np.float32), name="cells_01")
    theirs = autosave_path(earlier)
    theirs.parent.mkdir(parents=True)
    kept = np.full((40, 50), 2, np.uint8)
    tifffile.imwrite(theirs, kept)
    viewer.layers.remove(earlier)

    image, paint, annotate = _painted(viewer, dock)
    mine = annotate.autosaver.path_of(paint)
    image.name = "cells_01"
    assert annotate.autosaver.path_of(paint) == mine  # keeps its own file
    annotate.autosaver.flush()
    qtbot.waitUntil(lambda: mine.is_file() and not annotate.autosaver.busy(), timeout=HANG_MS)
    assert np.array_equal(tifffile.imread(theirs), kept)
    assert np.array_equal(tifffile.imread(mine), paint.data)
