"""Train in 3D on a layer with anisotropic scale: the model pools per axis and says so."""
from __future__ import annotations

import pytest

from napari_unet._widgets._state import model_state

HANG_MS = 120_000  # waits end on state; this only catches a hang


@pytest.mark.slow  # ~15 s on 2 shared cores (a 3D set-up and two steps)
def test_3d_training_follows_the_layer_scale(viewer, dock, qtbot):
    viewer.open_sample("napari-unet", "nuclei_3d")
    viewer.layers["nuclei 3d"].scale = (3.0, 1.0, 1.0)  # planes 3x further apart than pixels
    w = dock("Train")
    w.base_channels.setValue(4)
    w.depth.setValue(2)
    w.dims.setCurrentIndex(1)  # 3D
    w.set_limit(2, "steps")
    w.live_preview.setChecked(False)
    w.separate_process.setChecked(False)
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    model = model_state(viewer).model
    assert model is not None and model.meta["dims"] == 3
    assert model.meta["pooling"] == [[1, 2, 2], [2, 2, 2]] and model.meta["spacing"] == [3.0, 1.0, 1.0]
    assert "pooled Z x2, Y x4, X x4" in w.model_label.text()
