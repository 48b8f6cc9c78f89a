"""Results larger than RAM go straight into a zarr store (core.predict_zarr) and come back as dask
arrays over it: equal to in-memory predict, nothing loaded whole, the temporary store removed
when the arrays are gone; the prediction job takes that path when the results do not fit."""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest

pytest.importorskip("zarr")
pytest.importorskip("dask")

from napari_unet.core.jobs import Result, iter_predict_job  # noqa: E402
from napari_unet.core.model import build_model  # noqa: E402
from napari_unet.core.predict import entropy, predict, probabilities_to_labels  # noqa: E402
from napari_unet.core.predict_zarr import iter_predict_into_zarr  # noqa: E402


def _model(**kw):
    return build_model(dims=2, classes=2, base_channels=4, depth=2, class_names=["background", "nucleus"], **kw)


def _run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setenv("NAPARI_UNET_SCRATCH", str(folder))
    return folder


def test_store_result_equals_in_memory_predict_and_the_temporary_store_goes(scratch):
    model = _model()
    image = np.random.default_rng(0).random((3, 44, 52)).astype(np.float32)  # a 2D model on a stack
    res, events = _run(iter_predict_into_zarr(model, image, chunks=(1, 16, 16), tile=16,
                                              progress=lambda d, n: (d, n)))
    assert events[-1] == (3 * 3 * 4, 3 * 3 * 4)            # one event per block (chunk)
    import dask.array as da

    assert isinstance(res.probabilities, da.Array) and isinstance(res.labels, da.Array)
    assert res.temporary and res.path.startswith(str(scratch))
    assert res.probabilities.chunksize[1:] == (1, 16, 16)  # shown chunk by chunk
    probs = predict(model, image, tile=None)
    np.testing.assert_allclose(res.probabilities.compute(), probs, atol=1e-5)
    np.testing.assert_array_equal(res.labels.compute(), probabilities_to_labels(probs))
    np.testing.assert_allclose(res.uncertainty[1].compute(), entropy(probs)[1], atol=1e-5)
    assert list(scratch.iterdir())
    del res
    gc.collect()
    assert not list(scratch.iterdir())                    # removed with the last array over it


def test_lazy_input_and_user_folder_keeps_the_ome_zarr(tmp_path):
    import dask.array as da
    import zarr

    model = _model()
    image = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    lazy = da.from_array(image, chunks=(20, 20))
    res, _ = _run(iter_predict_into_zarr(model, lazy, store_dir=tmp_path, stem="cells", chunks=16, threshold=0.4))
    assert res.path == str(tmp_path / "cells.ome.zarr") and not res.temporary
    probs = predict(model, image, tile=None)
    np.testing.assert_allclose(res.probabilities.compute(), probs, atol=1e-5)
    np.testing.assert_array_equal(res.labels.compute(), probabilities_to_labels(probs, threshold=0.4))
    root = zarr.open_group(res.path, mode="r")
    np.testing.assert_array_equal(root["labels/prediction/0"][:], res.labels.compute())


def test_time_lapse_into_the_store(scratch):
    model = _model()
    movie = np.random.default_rng(2).random((2, 2, 32, 32)).astype(np.float32)  # (T, Z, Y, X)
    res, _ = _run(iter_predict_into_zarr(model, movie, frames=True, chunks=(1, 1, 16, 16)))
    assert res.probabilities.shape == (2, 2, 2, 32, 32)   # classes first, as in RAM
    for t in range(2):
        np.testing.assert_allclose(res.probabilities[:, t].compute(), predict(model, movie[t], tile=None),
                                   atol=1e-3)


def test_cancel_removes_the_temporary_store(scratch):
    cancel = threading.Event()
    gen = iter_predict_into_zarr(_model(), np.zeros((64, 64), np.float32), chunks=16, cancel=cancel,
                                 progress=lambda d, n: cancel.set())
    res, _ = _run(gen)
    assert res is None and not list(scratch.iterdir())



def test_job_sends_results_larger_than_the_ram_budget_to_a_store(scratch):
    model = _model()
    image = np.random.default_rng(3).random((48, 40)).astype(np.float32)
    small, = [e for e in iter_predict_job(model, [("im", image)], tile=None) if isinstance(e, Result)]
    assert isinstance(small.probabilities, np.ndarray)     # fits: in RAM, as before
    big, = [e for e in iter_predict_job(model, [("im", image)], tile=None, ram_budget=1000)
            if isinstance(e, Result)]
    import dask.array as da

    assert isinstance(big.probabilities, da.Array) and isinstance(big.labels, da.Array)
    np.testing.assert_allclose(big.probabilities.compute(), small.probabilities, atol=1e-5)
    np.testing.assert_array_equal(big.labels.compute(), small.labels)
    np.testing.assert_allclose(big.uncertainty.compute(), small.uncertainty, atol=1e-5)


def test_job_with_a_lazy_input_into_the_users_ome_zarr(tmp_path):
    import dask.array as da

    model = _model()
    image = np.random.default_rng(4).random((2, 32, 40)).astype(np.float32)
    lazy = da.from_array(image, chunks=(1, 16, 40))
    big, = [e for e in iter_predict_job(model, [("my image", lazy)], tile=None, ram_budget=1000,
                                        out_dir=tmp_path, out_format="ome-zarr") if isinstance(e, Result)]
    assert big.files == (str(tmp_path / "my_image.ome.zarr"),)
    probs = predict(model, image, tile=None)
    np.testing.assert_allclose(big.probabilities.compute(), probs, atol=1e-5)
    small, = [e for e in iter_predict_job(model, [("im", lazy)], tile=None) if isinstance(e, Result)]
    np.testing.assert_allclose(small.probabilities, probs, atol=1e-5)  # a lazy input that fits: read in the job


def test_no_room_on_disk_is_a_clear_memory_error(scratch, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 20, 1 << 20, 1000))
    with pytest.raises(MemoryError, match="NAPARI_UNET_SCRATCH"):
        _run(iter_predict_into_zarr(_model(), np.zeros((64, 64), np.float32)))
    assert not list(scratch.iterdir())
