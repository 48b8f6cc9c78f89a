"""Train: the model choice (2D or 3D) follows the ticked images until the user picks one."""
from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets._state import model_state

HANG_MS = 120_000  # waits end on state; this only catches a hang


def _painted(viewer, annotate, data, name, **kw):
    viewer.add_image(data, name=name, **kw)
    annotate.image_combo.set_layer(name)
    annotate.create_paint_layer()
    viewer.layers[f"{name} paint"].data[(0,) * data.ndim] = 1


def _pick(w, index: int) -> None:
    """What a click in the combo box does: the choice, and Qt's ``activated``."""
    w.dims.setCurrentIndex(index)
    w.dims.activated.emit(index)


def _tick(w, name: str, on: bool) -> None:
    from qtpy.QtCore import Qt

    item = next(w.pairs.item(i) for i in range(w.pairs.count()) if w.pairs.item(i).text() == name)
    item.setCheckState(Qt.Checked if on else Qt.Unchecked)


@pytest.mark.slow  # ~15 s on 2 shared cores (a 3D set-up and two steps)
def test_a_stack_gets_a_3d_model_until_the_user_chooses(viewer, dock, qtbot):
    viewer.open_sample("napari-unet", "nuclei_3d")
    w = dock("Train")
    planes = viewer.layers["nuclei 3d"].data.shape[0]
    assert w.dims.currentText() == "3D"
    assert not w.dims_hint.isHidden() and f"stack of {planes} planes" in w.dims_hint.text()
    w.base_channels.setValue(4)
    w.depth.setValue(2)
    w.set_limit(2, "steps")
    w.live_preview.setChecked(False)
    w.separate_process.setChecked(False)
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert model_state(viewer).model.meta["dims"] == 3

    # continuing the 3D model: the model's dims apply, whatever is ticked
    w.start_from.setCurrentText("continue current model")
    _painted(viewer, dock("Annotate"), np.zeros((40, 40), np.float32), "flat")
    assert w.dims.currentText() == "3D"
    # a new model with a 2D image ticked beside the stack: a 3D model cannot take it, so 2D, and
    # the hint says why
    w.start_from.setCurrentText("new model")
    assert w.dims.currentText().startswith("2D") and "'flat' is 2D" in w.dims_hint.text()
    _tick(w, "flat", False)
    assert w.dims.currentText() == "3D"

    # once the user has chosen, ticking images never changes the choice
    _pick(w, 0)
    assert w.dims_hint.isHidden()
    _tick(w, "flat", True)
    _tick(w, "flat", False)
    assert w.dims.currentText().startswith("2D")


def test_a_time_series_or_a_few_planes_keep_2d(viewer, dock):
    """Labelled or not, a time series keeps 2D, as does a short stack that may be channels."""
    w, a = dock("Train"), dock("Annotate")
    assert w.dims.currentText().startswith("2D") and w.dims_hint.isHidden()  # nothing painted yet
    _painted(viewer, a, np.zeros((12, 40, 40), np.float32), "movie", axis_labels=("t", "y", "x"))
    assert w.dims.currentText().startswith("2D") and "time series" in w.dims_hint.text()
    _tick(w, "movie", False)
    _painted(viewer, a, np.zeros((3, 40, 40), np.float32), "dyes")
    assert w.dims.currentText().startswith("2D") and "3 planes" in w.dims_hint.text()
    _tick(w, "dyes", False)

    # no axis labels: frames unlike one another (a time series) against planes blurred into
    # each other (a z-stack)
    from scipy import ndimage as ndi

    noise = np.random.default_rng(0).normal(size=(12, 64, 64)).astype(np.float32)
    _painted(viewer, a, ndi.gaussian_filter(noise, (0, 2, 2)), "frames")
    assert w.dims.currentText().startswith("2D") and "differ more than neighbouring pixels" in w.dims_hint.text()
    _tick(w, "frames", False)
    _painted(viewer, a, ndi.gaussian_filter(noise, (2, 2, 2)), "zstack")
    assert w.dims.currentText() == "3D" and "stack of 12 planes" in w.dims_hint.text()
