"""The correction loop: continuing keeps the previous model (Revert swaps back), the chart keeps
the whole history, and previews never hide or deselect the painting."""
from __future__ import annotations

import numpy as np

from napari_unet._widgets._state import model_state

HANG_MS = 180_000  # only catches hangs


def _train(viewer, dock, qtbot, steps: int, mode: str | None = None):
    w = dock("Train")
    w.preview_every = 0.01  # a preview after every step: a short run still previews
    w.base_channels.setValue(8)
    w.depth.setValue(2)
    w.set_limit(steps, "steps")
    if mode is not None:
        w.start_from.setCurrentText(mode)
    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert w.finished_reason == "steps", w.status.text()
    return w


def test_continue_keeps_the_previous_model_and_the_history(viewer, dock, qtbot):
    viewer.open_sample("napari-unet", "nuclei_2d")
    w = _train(viewer, dock, qtbot, steps=6)
    state = model_state(viewer)
    sd_first = {k: v.clone() for k, v in state.model.state_dict().items()}
    assert state.previous is None and not w.revert_btn.isEnabled()
    n_first = len(w.plot.train)
    last_step = w.plot.train[-1][0]

    from napari_unet._widgets.train import START_CURRENT

    _train(viewer, dock, qtbot, steps=6, mode=START_CURRENT)
    second = state.model
    assert state.previous is not None and w.revert_btn.isEnabled()
    # the chart goes on from the last run's steps instead of starting again at 0
    assert len(w.plot.train) > n_first and w.plot.train[-1][0] > last_step
    assert "steps in all" in w.model_label.text()

    # nothing new was painted: keep-better may keep the first run's weights (then Revert offers
    # the second run's own) or take the new ones (then Revert goes back to the first run's)
    kept = "kept the previous model" in state.source
    same = [bool((v == sd_first[k]).all()) for k, v in second.state_dict().items()]
    assert all(same) if kept else not all(same)
    # the preview shows the model the run handed back, and after Revert the one reverted to
    preview = next(la for la in viewer.layers if la.name == "nuclei 2d preview")
    assert _shows(preview, second, viewer)
    w.revert()
    assert state.model is not second and state.previous[0] is second
    reverted = [bool((v == sd_first[k]).all()) for k, v in state.model.state_dict().items()]
    assert not all(reverted) if kept else all(reverted)
    if not kept:   # the two models differ: the preview must change to the first one's
        assert not _shows(preview, state.model, viewer)
        qtbot.waitUntil(lambda: _shows(preview, state.model, viewer), timeout=HANG_MS)
    w.revert()  # and forward again
    assert state.model is second
    qtbot.waitUntil(lambda: _shows(preview, second, viewer), timeout=HANG_MS)


def _shows(preview, model, viewer) -> bool:
    """The preview layer holds ``model``'s foreground probability of the sample image."""
    from napari_unet.core.predict import predict

    image = next(la for la in viewer.layers if la.name == "nuclei 2d").data
    return float(np.abs(preview.data - (1.0 - predict(model, image, device="cpu")[0])).max()) < 1e-3


def test_preview_and_results_stay_under_the_painting(viewer, dock, qtbot):
    viewer.open_sample("napari-unet", "nuclei_2d")
    paint = next(la for la in viewer.layers if la.name.endswith("paint"))
    viewer.layers.selection.active = paint
    w = _train(viewer, dock, qtbot, steps=6)
    assert "nuclei 2d preview" in [la.name for la in viewer.layers]
    assert viewer.layers[-1] is paint and viewer.layers.selection.active is paint
    p = dock("Predict")
    p.run()
    qtbot.waitUntil(lambda: any(la.name == "nuclei 2d labels" for la in viewer.layers), timeout=HANG_MS)
    qtbot.waitUntil(lambda: p.worker is None, timeout=HANG_MS)
    assert viewer.layers[-1] is paint
    assert viewer.layers.selection.active is paint and set(viewer.layers.selection) == {paint}

    # the error overlay and the object errors show under the painting, and the brush stays
    e = dock("Evaluate")
    e.pred_combo.set_layer("nuclei 2d labels")
    e.truth_combo.set_layer("nuclei 2d truth")
    e.run()
    qtbot.waitUntil(lambda: e.worker is None, timeout=HANG_MS)
    assert "nuclei 2d labels errors" in [la.name for la in viewer.layers]
    assert viewer.layers[-1] is paint and viewer.layers.selection.active is paint
    assert set(viewer.layers.selection) == {paint}
