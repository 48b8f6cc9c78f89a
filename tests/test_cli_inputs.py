"""``train`` and ``evaluate`` read what ``predict`` reads (zarr, HDF5), and bad inputs get a
message that names the problem: a truncated HDF5 file, a mismatched second pair, a grayscale
image for a multi-channel model, a bad option before the disk-space estimate, a 0/255 mask."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet import build_model, predict, save_model, train
from napari_unet.cli import main

TINY = ["--base-channels", "4", "--depth", "2", "--patch", "32", "--batch-size", "2", "--device", "cpu",
        "--steps", "1", "--quiet"]


def _fails(capsys, argv, *needles) -> str:
    assert main([str(a) for a in argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("napari-unet: error:"), err
    assert not any("Traceback" in e for e in err)
    for n in needles:
        assert n in err[-1], (n, err[-1])
    return err[-1]


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    img = (rng.random((48, 48)) * 100).astype(np.uint16)
    img[10:20, 10:20] += 500
    lab = np.zeros((48, 48), np.uint8)
    lab[12:18, 12:18] = 2
    lab[30:45, 30:45] = 1
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    return tmp_path, img, lab


def test_train_and_evaluate_read_hdf5_and_zarr(files, capsys):
    h5py = pytest.importorskip("h5py")
    zarr = pytest.importorskip("zarr")
    d, img, lab = files
    with h5py.File(d / "img.h5", "w") as f:
        f["raw"] = img
        f["lab"] = lab
    zarr.save_array(str(d / "lab.zarr"), lab)
    assert main(["train", "--image", f"{d / 'img.h5'}:raw", "--labels", str(d / "lab.zarr"),
                 "--out", str(d / "m.pt"), *TINY]) == 0
    assert (d / "m.pt").is_file()
    assert main(["evaluate", "--pred", f"{d / 'img.h5'}:lab", "--truth", str(d / "lab.zarr"), "--json"]) == 0
    assert '"mean_iou": 1.0' in capsys.readouterr().out
    # the output check sees the file behind file.h5:dataset, even with --overwrite
    _fails(capsys, ["train", "--image", f"{d / 'img.h5'}:raw", "--labels", d / "lab.tif", "--out", d / "img.h5",
                    "--overwrite", *TINY], "is one of the inputs")
    _fails(capsys, ["train", "--image", f"{d / 'img.h5'}:nope", "--labels", d / "lab.tif", "--out", d / "x.pt",
                    *TINY], "no dataset 'nope'")
    _fails(capsys, ["evaluate", "--pred", f"{d / 'no.h5'}:raw", "--truth", d / "lab.tif"], "--pred", "does not exist")


def test_inputs_too_large_for_memory_are_refused_before_reading(files, capsys, monkeypatch):
    h5py = pytest.importorskip("h5py")
    import napari_unet.core.device as device

    d, img, _ = files
    with h5py.File(d / "img.h5", "w") as f:
        f["raw"] = img
    monkeypatch.setattr(device, "available_memory", lambda dev: 1000)
    _fails(capsys, ["train", "--image", f"{d / 'img.h5'}:raw", "--labels", d / "lab.tif", "--out", d / "x.pt",
                    *TINY], "reads its inputs into memory", "48x48 uint16", "use a crop")
    assert not (d / "x.pt").exists()


def test_a_truncated_hdf5_file_is_named(files, capsys):
    h5py = pytest.importorskip("h5py")
    d, img, _ = files
    with h5py.File(d / "img.h5", "w") as f:
        f["raw"] = img
    data = (d / "img.h5").read_bytes()
    (d / "trunc.h5").write_bytes(data[:len(data) // 2])
    save_model(build_model(dims=2, classes=2, base_channels=4, depth=2), d / "m.pt")
    _fails(capsys, ["predict", "--model", d / "m.pt", "--out-dir", d / "o", f"{d / 'trunc.h5'}:raw"],
           "trunc.h5 is truncated or damaged", "not written or copied completely")
    (d / "text.h5").write_text("not hdf5")
    _fails(capsys, ["train", "--image", f"{d / 'text.h5'}:raw", "--labels", d / "lab.tif", "--out", d / "x.pt",
                    *TINY], "text.h5 is not a readable HDF5 file")


def test_a_bad_second_pair_is_the_one_named(files, capsys):
    d, img, lab = files
    tifffile.imwrite(d / "bad.tif", np.ones((40, 48), np.uint8))
    tifffile.imwrite(d / "rgb.tif", np.stack([img.astype(np.uint8)] * 3, -1), photometric="rgb")
    line = _fails(capsys, ["train", "--image", d / "img.tif", "--labels", d / "lab.tif", "--image", d / "img.tif",
                           "--labels", d / "bad.tif", "--out", d / "x.pt", *TINY], "(40, 48)", "(48, 48)")
    assert "bad.tif" in line and "lab.tif" not in line
    for order in (("img.tif", "rgb.tif"), ("rgb.tif", "img.tif")):
        _fails(capsys, ["train", "--image", d / order[0], "--labels", d / "lab.tif", "--image", d / order[1],
                        "--labels", d / "lab.tif", "--out", d / "x.pt", *TINY],
               "different channel counts", "img.tif has 1", "rgb.tif has 3")


def test_a_grayscale_image_for_a_multichannel_model(files, capsys):
    d, img, _ = files
    model = build_model(dims=2, in_channels=3, classes=2, base_channels=4, depth=2)
    save_model(model, d / "rgb.pt")
    line = _fails(capsys, ["predict", "--model", d / "rgb.pt", "--out-dir", d / "o", d / "img.tif"],
                  "the model takes 3 channels, img.tif has 1")
    assert "--channel-axis" not in line
    with pytest.raises(ValueError, match="the model takes 3 channels, image has 1"):
        predict(model, img, device="cpu")


def test_options_are_checked_before_the_disk_space(files, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    d, _, _ = files
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, (1 << 40) - (1 << 30), 1 << 30))
    _fails(capsys, ["train", "--image", d / "img.tif", "--labels", d / "lab.tif", "--out", d / "x.pt",
                    "--steps", "1", "--depth", "10"], "depth must be at most 6")
    _fails(capsys, ["train", "--image", d / "img.tif", "--labels", d / "lab.tif", "--out", d / "x.pt",
                    "--steps", "0", "--depth", "10"], "--steps must be at least 1")


@pytest.mark.parametrize("flag", [False, True])
def test_a_0_255_mask_is_called_a_binary_mask(files, capsys, flag):
    d, img, lab = files
    mask = (lab == 2).astype(np.uint8) * 255
    tifffile.imwrite(d / "m255.tif", mask)
    line = _fails(capsys, ["train", "--image", d / "img.tif", "--labels", d / "m255.tif", "--out", d / "x.pt",
                           *TINY] + (["--unpainted-is-background"] if flag else []),
                  "the labels hold only 0 and 255: a binary mask?", "1/2", "0/2 with --unpainted-is-background")
    assert "instance mask" not in line
    with pytest.raises(ValueError, match=r"only 0 and 255: a binary mask\?.*unpainted_is_background=True"):
        train(img, mask, steps=1, unpainted_is_background=flag, base_channels=4, depth=2)
