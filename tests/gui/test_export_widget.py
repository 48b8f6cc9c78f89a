"""Train widget: "Export for bioimage.io…" writes a package in the background; Load takes it back."""
from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets._state import model_state

from conftest import errors

HANG_MS = 120_000  # only catches a hang


def test_export_button_writes_a_package_that_load_takes_back(viewer, dock, qtbot, notes, tmp_path,
                                                               tiny_model):
    pytest.importorskip("bioimageio.spec")
    viewer.open_sample("napari-unet", "nuclei_2d")
    w = dock("Train")
    state = model_state(viewer)
    state.set(tiny_model, "test model")
    assert w.bioimageio.button.text() == "Export for bioimage.io…"

    out = tmp_path / "shared"  # ".zip" is added
    w.bioimageio.export(str(out), run_test=False)  # test_model runs in tests/test_bioimageio.py
    assert not w.bioimageio.button.isEnabled()
    qtbot.waitUntil(lambda: w.bioimageio.worker is None, timeout=HANG_MS)
    assert w.bioimageio.button.isEnabled() and not errors(notes), notes
    pkg = tmp_path / "shared.zip"
    assert pkg.is_file() and any("Exported the model to" in m for _k, m in notes)

    # the test image came from the training data (the sample image), not a synthetic one
    import zipfile

    with zipfile.ZipFile(pkg) as zf, zf.open("test_input.npy") as f:
        test_input = np.load(f)
    sample = np.asarray(w.chosen_pairs()[0][0].data)
    assert test_input.shape[:2] == (1, 1)
    h, wd = test_input.shape[2:]
    y0, x0 = (sample.shape[0] - h) // 2, (sample.shape[1] - wd) // 2
    assert np.array_equal(test_input[0, 0], sample[y0:y0 + h, x0:x0 + wd].astype(np.float32))

    state.set(None, "")
    model = w.load_model(str(pkg))
    assert model is not None and state.model is model
    assert model.meta["class_names"] == ["background", "nucleus"]
    for k, v in tiny_model.state_dict().items():
        assert np.array_equal(model.state_dict()[k].numpy(), v.numpy())


def test_export_without_a_model_is_a_notification(viewer, dock, notes):
    w = dock("Train")
    assert w.bioimageio.export(str("unused.zip")) is None
    assert any("No model yet" in m for m in errors(notes))
