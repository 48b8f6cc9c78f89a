"""Predict on a layer whose results do not fit in RAM: predicted straight into a zarr store and
shown as dask layers over it (read chunk by chunk), equal to in-memory predict; a dask-backed
input layer goes to the job as it is (read block by block there: tests/core/test_predict_zarr.py)."""
from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets._state import model_state

pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")


def test_predict_results_larger_than_ram_go_to_a_zarr_store(viewer, dock, qtbot, tiny_model,
                                                            monkeypatch, tmp_path, notes):
    from napari_unet import predict
    from napari_unet.core import predict as core_predict

    stack = np.random.default_rng(4).random((4, 48, 56)).astype(np.float32)
    expected = predict(tiny_model, stack, device="cpu", tile=None)
    viewer.add_image(da.from_array(stack, chunks=(1, 48, 56)), name="huge")  # a dask layer
    model_state(viewer).set(tiny_model, "test")
    monkeypatch.setenv("NAPARI_UNET_SCRATCH", str(tmp_path))
    monkeypatch.setattr(core_predict, "fits_in_ram", lambda nbytes: False)  # results "exceed RAM"
    w = dock("Predict")
    texts, set_text = [], w.status.setText
    w.status.setText = lambda t: (texts.append(t), set_text(t))
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    assert not [m for k, m in notes if k == "error"]
    assert any(": block " in t for t in texts)              # progress counts blocks on this path
    layers = [viewer.layers[f"huge {s}"] for s in ("p(nucleus)", "labels", "uncertainty")]
    for layer in layers:
        assert isinstance(layer.data, da.Array)              # over the store, chunk by chunk
    [store] = tmp_path.iterdir()                             # a temporary store in the scratch folder
    assert (store / "huge.ome.zarr" / "labels" / "prediction").is_dir()
    np.testing.assert_allclose(np.asarray(layers[0].data), expected[1], atol=1e-5)
    assert np.array_equal(np.asarray(layers[1].data), np.where(expected[1] > expected[0], 2, 1))
    assert float(np.asarray(layers[2].data).max()) <= 1.0
