import os
import pickle

import numpy as np
import pytest
import tifffile
import torch

from napari_unet import build_model, load_model, predict, save_model
from napari_unet.core.io import atomic_path, read_image, read_model_meta, write_tiff


def test_round_trip_keeps_prediction_and_meta(tmp_path, rng):
    torch.manual_seed(0)
    m = build_model(dims=2, classes=3, base_channels=4, depth=2, class_names=["bg", "a", "b"])
    m.meta["training"] = {"steps": 5}
    img = rng.normal(0, 1, (40, 30)).astype(np.float32)
    p = predict(m, img, device="cpu")
    f = tmp_path / "m.pt"
    save_model(m, f)
    m2 = load_model(f)
    assert m2.meta["class_names"] == ["bg", "a", "b"] and m2.meta["training"] == {"steps": 5}
    assert "torch" in m2.meta["saved"] and "napari_unet" in m2.meta["saved"]
    assert read_model_meta(f)["classes"] == 3
    assert np.abs(predict(m2, img, device="cpu") - p).max() <= 1e-6
    assert not list(tmp_path.glob("*.part"))


def test_load_refuses_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="not"):
        load_model(bad)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ValueError, match="napari-unet"):
        load_model(foreign)
    truncated = tmp_path / "trunc.pt"
    m = build_model(base_channels=4, depth=2)
    save_model(m, tmp_path / "ok.pt")
    truncated.write_bytes((tmp_path / "ok.pt").read_bytes()[:2000])
    with pytest.raises(ValueError):
        load_model(truncated)
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")


class Evil:
    def __reduce__(self):
        return (os.system, ("touch should_not_exist",))


def test_load_never_unpickles_objects(tmp_path):
    f = tmp_path / "evil.pt"
    with open(f, "wb") as fh:
        pickle.dump({"format": "napari-unet-model", "x": Evil()}, fh)
    with pytest.raises(ValueError):
        load_model(f)
    assert not os.path.exists("should_not_exist")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.tif"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_tiff_round_trip_with_axes(tmp_path):
    probs = np.random.default_rng(0).random((2, 3, 8, 9)).astype(np.float32)
    write_tiff(tmp_path / "p.tif", probs, axes="CZYX")
    back = read_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(back, probs)
    with tifffile.TiffFile(tmp_path / "p.tif") as t:
        assert t.series[0].axes.upper().endswith("ZYX")
    lab = np.arange(12, dtype=np.uint16).reshape(3, 4)
    write_tiff(tmp_path / "l.tif", lab, compress=True)
    np.testing.assert_array_equal(read_image(tmp_path / "l.tif"), lab)


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(ValueError, match="not a readable TIFF"):
        read_image(tmp_path / "broken.tif")


def test_guess_channel_axis_only_where_the_shapes_leave_no_doubt():
    from napari_unet.core.checks import guess_channel_axis

    # training: the axis whose removal leaves the labels' shape
    assert guess_channel_axis((64, 80, 3), spatial_shape=(64, 80)) == -1      # RGB
    assert guess_channel_axis((2, 64, 80), spatial_shape=(64, 80)) == 0       # channels first
    assert guess_channel_axis((5, 2, 64, 80), spatial_shape=(5, 64, 80)) == 1  # (Z, C, Y, X)
    assert guess_channel_axis((3, 64, 3), spatial_shape=(3, 64)) == -1        # last wins
    assert guess_channel_axis((3, 3, 3), spatial_shape=(3, 3)) == -1
    assert guess_channel_axis((12, 64, 80), spatial_shape=(64, 80)) is None   # a stack, not channels
    assert guess_channel_axis((64, 80), spatial_shape=(64, 80)) is None
    assert guess_channel_axis((64, 80, 3), spatial_shape=(60, 80)) is None
    # prediction: an axis of the model's channel count
    assert guess_channel_axis((64, 80, 3), in_channels=3) == -1
    assert guess_channel_axis((3, 64, 80), in_channels=3) == 0
    assert guess_channel_axis((2, 2, 64, 80), in_channels=2) is None          # two candidates
    assert guess_channel_axis((64, 80), in_channels=1) is None
    assert guess_channel_axis((64, 80, 3), in_channels=4) is None
