"""Trust, second audit (fifty-first session): what a careless user found still overwritten,
half-written or named wrong. Through the command (``cli.main``) and the Python API."""
import errno
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet import build_model, load_model, save_model, train
from napari_unet.cli import main
from napari_unet.core.errors import UserError

from test_cli_trust import _fails, pair  # noqa: F401  (pair: a fixture, an image and its strokes as files)

TINY = dict(base_channels=4, depth=2)


def _train(argv) -> None:
    assert main([str(a) for a in argv] + ["--steps", "2", "--base-channels", "4", "--depth", "2", "--quiet"]) == 0


def test_train_out_replaces_only_an_earlier_model_never_an_image_we_wrote_nor_the_init_model(pair, tmp_path, capsys):
    img, lab = pair
    _train(["train", "--image", img, "--labels", lab, "--out", tmp_path / "m.pt"])
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--out-dir", str(tmp_path / "pred"), str(img),
                 "--quiet"]) == 0
    result = tmp_path / "pred" / "img_labels.tif"
    before = result.read_bytes()
    # a result (or an autosaved painting) carries our TIFF tag: still not a model to replace
    _fails(capsys, ["train", "--image", img, "--labels", lab, "--out", result, "--steps", "1"],
           "img_labels.tif", "not a model", "--overwrite")
    assert result.read_bytes() == before
    # the model fine-tuned from is an input: never replaced, even with --overwrite
    base = tmp_path / "m.pt"
    model_bytes = base.read_bytes()
    _fails(capsys, ["train", "--image", img, "--labels", lab, "--init", base, "--out", base, "--steps", "1",
                    "--overwrite"], "m.pt", "one of the inputs")
    assert base.read_bytes() == model_bytes
    # an earlier model of ours is replaced whatever its file name
    other = tmp_path / "m.model"
    other.write_bytes(model_bytes)
    _train(["train", "--image", img, "--labels", lab, "--init", base, "--out", other])
    assert other.read_bytes() != model_bytes and load_model(other).meta["classes"] == 2


def test_save_model_refuses_folders_missing_folders_and_files_that_are_not_our_models(tmp_path):
    model = build_model(dims=2, **TINY)
    image = tmp_path / "cells.tif"
    tifffile.imwrite(image, np.zeros((8, 8), np.uint8))
    before = image.read_bytes()
    for path, needle in ((tmp_path, "is a folder"), (tmp_path / "nowhere" / "m.pt", "does not exist"),
                         (image, "not written by napari-unet")):
        with pytest.raises(ValueError, match=needle):
            save_model(model, path)
    assert image.read_bytes() == before
    assert "overwrite=True" in str(pytest.raises(ValueError, save_model, model, image).value)
    save_model(model, tmp_path / "m.pt")
    save_model(model, tmp_path / "m.pt")                  # an earlier model of ours: replaced
    save_model(model, image, overwrite=True)               # the caller says so
    assert load_model(image).meta["classes"] == 2
    with pytest.raises(TypeError, match="path of a model file"):
        load_model(None)


def test_a_failed_model_write_is_a_value_error_and_an_os_error_naming_the_file(tmp_path, monkeypatch):
    import contextlib

    from napari_unet.core import io as nio

    @contextlib.contextmanager
    def full(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(Path(path).parent / ".tmp.part"))
        yield  # pragma: no cover

    monkeypatch.setattr(nio, "atomic_path", full)
    with pytest.raises(ValueError) as info:
        save_model(build_model(dims=2, **TINY), tmp_path / "m.pt")
    e = info.value
    assert isinstance(e, OSError) and e.errno == errno.ENOSPC
    assert str(e).startswith(f"{tmp_path / 'm.pt'}:") and "disk is full" in str(e), str(e)


def test_a_training_checkpoint_never_replaces_the_init_model_or_another_file(pair, tmp_path):
    img, lab = pair
    image, labels = tifffile.imread(img), tifffile.imread(lab)
    base = tmp_path / "base.pt"
    save_model(build_model(dims=2, **TINY), base)
    model_bytes = base.read_bytes()
    with pytest.raises(UserError, match="one of the inputs"):
        train(image, labels, steps=1, init=str(base), checkpoint=base)
    assert base.read_bytes() == model_bytes
    with pytest.raises(UserError, match="not written by napari-unet") as info:
        train(image, labels, steps=1, init=str(base), checkpoint=img)
    assert "overwrite" not in str(info.value)    # train() has no such option: not offered
    assert tifffile.imread(img).shape == (48, 48)


@pytest.mark.parametrize("fmt", ["tiff", "ome-zarr"])
def test_instance_options_are_checked_before_anything_is_written(pair, tmp_path, capsys, fmt):
    img, lab = pair
    model = tmp_path / "m.pt"
    _train(["train", "--image", img, "--labels", lab, "--out", model])
    out = tmp_path / "out"
    for extra, needle in ((["--min-size", "-1"], "--min-size must not be negative, got -1"),
                          (["--seed-distance", "-3"], "--seed-distance"),
                          (["--spacing", "1,1,1"], "--spacing has 3 values but img")):
        _fails(capsys, ["predict", "--model", model, "--out-dir", out, img, "--instances", "--format", fmt,
                        *extra], needle)
        assert not out.exists() or not os.listdir(out), os.listdir(out)


def test_a_nan_image_is_named_by_its_file_before_anything_is_written(pair, tmp_path, capsys):
    img, lab = pair
    bad = tmp_path / "bad.tif"
    data = tifffile.imread(img)
    data[3, 3] = np.nan
    tifffile.imwrite(bad, data)
    model = tmp_path / "m.pt"
    _train(["train", "--image", img, "--labels", lab, "--out", model])
    out = tmp_path / "out"
    _fails(capsys, ["predict", "--model", model, "--out-dir", out, img, bad], "bad.tif contains NaN",
           "before predicting")
    assert not out.exists() or not os.listdir(out)      # the good image was not predicted either
    _fails(capsys, ["train", "--image", img, "--labels", lab, "--image", bad, "--labels", lab,
                    "--out", tmp_path / "n.pt", "--steps", "1"], "bad.tif contains NaN", "before training")
    assert not (tmp_path / "n.pt").exists()
