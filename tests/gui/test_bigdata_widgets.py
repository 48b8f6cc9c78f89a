"""Predict and Batch (issue 11): the channel axis choice (a (2, Y, X) layer is two channels of one
plane for a 2-channel model, not two Z slices), Batch writing OME-Zarr with the layer scale, Batch
on a local dask cluster, and time-lapse layers predicted frame by frame."""
from __future__ import annotations

import numpy as np
import pytest

from napari_unet._widgets._state import model_state


def _two_channel_model():
    import torch

    from napari_unet.core.model import build_model

    torch.manual_seed(2)
    return build_model(dims=2, in_channels=2, classes=2, base_channels=4, depth=2,
                       class_names=["background", "nucleus"])


def test_predict_and_batch_with_a_channel_axis(viewer, dock, qtbot, notes):
    from napari_unet import predict

    model = _two_channel_model()
    img = np.random.default_rng(3).random((2, 40, 48)).astype(np.float32)
    viewer.add_image(img, name="two")
    model_state(viewer).set(model, "test")
    w = dock("Predict")
    w.run()  # 'none': the model wants 2 channels; the message says so and nothing runs
    assert w.worker is None and any("2 channels" in m for k, m in notes if k == "error")
    w.channel.setCurrentIndex(1)  # axis 0
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    expected = predict(model, img, channel_axis=0, device="cpu")
    labels = viewer.layers["two labels"].data
    assert labels.shape == (40, 48)
    np.testing.assert_allclose(viewer.layers["two p(nucleus)"].data, expected[1], atol=1e-5)

    b = dock("Batch")
    b.channel.setCurrentIndex(1)
    viewer.layers.remove("two labels")
    b.run()
    qtbot.waitUntil(lambda: b.worker is None, timeout=120_000)  # only catches a hang
    assert np.array_equal(viewer.layers["two labels"].data, np.where(expected[1] > expected[0], 2, 1))


def test_batch_writes_ome_zarr_with_the_layer_scale(viewer, dock, qtbot, tiny_model, tmp_path):
    import zarr

    from napari_unet.core.readers import open_image

    stack = np.random.default_rng(6).random((3, 32, 40)).astype(np.float32)
    viewer.add_image(stack, name="cells 3d", scale=(2.0, 0.5, 0.5))
    model_state(viewer).set(tiny_model, "test")
    b = dock("Batch")
    b.write.setChecked(True)
    b.out_dir.setText(str(tmp_path))
    b.format.setCurrentIndex(1)
    b.run()
    qtbot.waitUntil(lambda: b.worker is None, timeout=120_000)  # only catches a hang
    out = tmp_path / "cells_3d.ome.zarr"
    assert b.files == [str(out)]
    src = open_image(out)
    assert src.shape == (2, 3, 32, 40) and src.pixel_size.sizes == {"z": 2.0, "y": 0.5, "x": 0.5}
    g = zarr.open_group(out, mode="r")
    np.testing.assert_array_equal(g["labels/prediction/0"][:], viewer.layers["cells 3d labels"].data)


@pytest.mark.slow
def test_batch_on_a_two_worker_dask_cluster(viewer, dock, qtbot, tiny_model, tmp_path):
    pytest.importorskip("distributed")
    from napari_unet import predict

    rng = np.random.default_rng(8)
    imgs = {"a": rng.random((40, 48)).astype(np.float32), "b": rng.random((56, 40)).astype(np.float32)}
    for name, img in imgs.items():
        viewer.add_image(img, name=name)
    model_state(viewer).set(tiny_model, "test")
    b = dock("Batch")
    b.write.setChecked(True)
    b.out_dir.setText(str(tmp_path))
    b.workers.setValue(2)
    b.run()
    qtbot.waitUntil(lambda: b.worker is None, timeout=240_000)  # only catches a hang
    assert sorted(b.done) == ["a", "b"]
    for name, img in imgs.items():
        p = predict(tiny_model, img, device="cpu")
        np.testing.assert_array_equal(np.asarray(viewer.layers[f"{name} labels"].data), np.where(p[1] > p[0], 2, 1))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a_labels.tif", "a_probs.tif", "b_labels.tif", "b_probs.tif"]


def test_predict_a_time_lapse_frame_by_frame(viewer, dock, qtbot, tmp_path):
    import torch

    from napari_unet import predict
    from napari_unet.core.model import build_model
    from napari_unet.core.normalize import percentile_stats

    torch.manual_seed(9)
    model = build_model(dims=3, classes=2, base_channels=4, depth=2, class_names=["background", "nucleus"])
    movie = np.random.default_rng(10).random((2, 8, 24, 28)).astype(np.float32)  # t, z, y, x
    viewer.add_image(movie, name="movie")
    model_state(viewer).set(model, "test")
    w = dock("Predict")
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)  # only catches a hang
    stats = percentile_stats(movie[None], channel_axis=0)
    labels = viewer.layers["movie labels"].data
    assert labels.shape == movie.shape
    for t in range(2):
        ref = predict(model, movie[t], device="cpu", stats=stats)
        np.testing.assert_allclose(viewer.layers["movie p(nucleus)"].data[t], ref[1], atol=1e-5)
    b = dock("Batch")  # the same through Batch, written as TIFF (classes first: c, t, z, y, x)
    b.write.setChecked(True)
    b.out_dir.setText(str(tmp_path))
    b.run()
    qtbot.waitUntil(lambda: b.worker is None, timeout=120_000)  # only catches a hang
    import tifffile

    assert tifffile.imread(tmp_path / "movie_probs.tif").shape == (2, *movie.shape)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "movie_labels.tif"), labels)


def test_our_tiff_outputs_open_as_labels_and_per_class_images(viewer, tmp_path, tiny_model):
    import tifffile

    from napari_unet import save_model
    from napari_unet.cli import main

    save_model(tiny_model, tmp_path / "m.pt")
    tifffile.imwrite(tmp_path / "s.tif", np.random.default_rng(11).integers(0, 255, (3, 32, 36), np.uint8),
                     imagej=True, resolution=(4.0, 4.0), metadata={"unit": "um", "spacing": 2.0, "axes": "ZYX"})
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--out-dir", str(tmp_path / "o"), "--quiet",
                 str(tmp_path / "s.tif")]) == 0
    viewer.open(str(tmp_path / "o" / "s_labels.tif"), plugin="napari-unet")
    viewer.open(str(tmp_path / "o" / "s_probs.tif"), plugin="napari-unet")
    kinds = {layer.name: type(layer).__name__ for layer in viewer.layers}
    assert kinds == {"s labels": "Labels", "s p(class 1)": "Image", "s p(class 2)": "Image"}
    for layer in viewer.layers:
        assert layer.data.shape == (3, 32, 36)
        np.testing.assert_allclose(layer.scale, (2.0, 0.25, 0.25))
    # a TIFF that napari-unet did not write is left to napari's own reader
    from napari_unet._reader import get_reader

    tifffile.imwrite(tmp_path / "x_labels.tif", np.zeros((4, 4), np.uint8))
    assert get_reader(str(tmp_path / "x_labels.tif")) is None
