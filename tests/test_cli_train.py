"""``napari-unet train`` end to end, train-then-predict, and one-line errors (exit 2)."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.io import load_model
from napari_unet.core.synthetic import make_nuclei, make_strokes

TINY = ["--base-channels", "8", "--depth", "2", "--patch", "64", "--batch-size", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_train")
    img, sem, inst = make_nuclei((128, 128), seed=5)
    strokes = make_strokes(sem, inst, seed=5)
    tifffile.imwrite(d / "img.tif", img)
    tifffile.imwrite(d / "strokes.tif", strokes)
    tifffile.imwrite(d / "bad_shape.tif", strokes[:-2])
    tifffile.imwrite(d / "float_labels.tif", strokes.astype(np.float32) + 0.5)
    tifffile.imwrite(d / "empty.tif", np.zeros_like(strokes))
    return d


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("napari-unet: error: ")
    assert "Traceback" not in err[0]
    return err[0]


def test_train_then_predict(files, tmp_path, capsys):
    out = tmp_path / "model.pt"
    rc = main(["train", "--image", str(files / "img.tif"), "--labels", str(files / "strokes.tif"),
               "--out", str(out), "--steps", "6", *TINY])
    assert rc == 0
    cap = capsys.readouterr()
    assert "training 2D, 2 classes on cpu" in cap.err
    assert "step 6" in cap.err and "steps/s" in cap.err
    assert f"wrote {out}" in cap.out
    model = load_model(out)
    assert model.meta["training"]["steps"] == 6
    assert not list(tmp_path.glob("*.part"))

    rc = main(["predict", "--model", str(out), "--out-dir", str(tmp_path / "pred"), "--quiet",
               "--device", "cpu", str(files / "img.tif")])
    assert rc == 0
    labels = tifffile.imread(tmp_path / "pred" / "img_labels.tif")
    assert labels.shape == (128, 128) and set(np.unique(labels)) <= {1, 2}

    # fine-tune from the model, with a third class and class names
    lab3 = tifffile.imread(files / "strokes.tif")
    lab3[:6, :30] = 3
    tifffile.imwrite(tmp_path / "lab3.tif", lab3)
    out2 = tmp_path / "model3.pt"
    rc = main(["train", "--image", str(files / "img.tif"), "--labels", str(tmp_path / "lab3.tif"),
               "--out", str(out2), "--steps", "2", "--init", str(out), "--class-names", "bg,nuc,edge",
               "--device", "cpu", "--patch", "64", "--quiet"])
    assert rc == 0
    m3 = load_model(out2)
    assert m3.meta["classes"] == 3 and m3.meta["class_names"] == ["bg", "nuc", "edge"]


def test_train_two_pairs_and_time_limit(files, tmp_path):
    out = tmp_path / "m.pt"
    rc = main(["train", "--image", str(files / "img.tif"), "--labels", str(files / "strokes.tif"),
               "--image", str(files / "img.tif"), "--labels", str(files / "strokes.tif"),
               "--out", str(out), "--time-limit", "1", "--quiet", *TINY])
    assert rc == 0
    assert load_model(out).meta["training"]["stop_reason"] == "time"


@pytest.mark.parametrize("labels, extra, match", [
    ("bad_shape.tif", [], "shape"),
    ("float_labels.tif", [], "integer"),
    ("empty.tif", [], "no painted pixels"),
    ("missing.tif", [], "does not exist"),
    ("strokes.tif", ["--dims", "3"], "a 3D model takes (Z, Y, X) volumes"),
    ("strokes.tif", ["--classes", "1"], "classes"),
    ("strokes.tif", ["--init", "nowhere.pt"], "does not exist"),
    ("strokes.tif", ["--image", "x.tif"], "--labels"),
])
def test_user_mistakes_are_one_line_exit_2(files, tmp_path, capsys, labels, extra, match):
    argv = ["train", "--image", str(files / "img.tif"), "--labels", str(files / labels),
            "--out", str(tmp_path / "m.pt"), "--steps", "1", *TINY, *extra]
    rc = main(argv)
    assert rc == 2
    line = one_error_line(capsys)
    assert match in line
    assert not (tmp_path / "m.pt").exists()


def test_out_folder_missing(files, tmp_path, capsys):
    rc = main(["train", "--image", str(files / "img.tif"), "--labels", str(files / "strokes.tif"),
               "--out", str(tmp_path / "no" / "m.pt"), "--steps", "1", *TINY])
    assert rc == 2
    assert "does not exist" in one_error_line(capsys)


@pytest.mark.parametrize("layout", ["rgb_tif", "rgb_png", "channels_first"])
def test_rgb_and_multichannel_files_train_and_predict_without_channel_axis(files, tmp_path, capsys, layout):
    """An RGB TIFF/PNG (Y, X, 3) or a (C, Y, X) file with (Y, X) labels: the channel axis is the
    one the shapes leave no doubt about, said on stderr; predict reads the same axis."""
    import imageio.v3 as iio

    g = tifffile.imread(files / "img.tif").astype(np.float32)
    g = (g - g.min()) / (g.max() - g.min())
    rgb = (255 * np.stack([1 - 0.4 * g, 1 - 0.8 * g, 1 - 0.2 * g], -1)).astype(np.uint8)  # dark purple on pink
    strokes = tifffile.imread(files / "strokes.tif")
    if layout == "rgb_png":
        img_path, lab_path = tmp_path / "he.png", tmp_path / "he_strokes.png"
        iio.imwrite(img_path, rgb)
        iio.imwrite(lab_path, strokes)
    else:
        img_path, lab_path = tmp_path / "he.tif", files / "strokes.tif"
        tifffile.imwrite(img_path, rgb if layout == "rgb_tif" else np.moveaxis(rgb, -1, 0))
    axis = -1 if layout != "channels_first" else -3
    out = tmp_path / "m.pt"
    assert main(["train", "--image", str(img_path), "--labels", str(lab_path), "--out", str(out),
                 "--steps", "2", *TINY]) == 0
    err = capsys.readouterr().err
    assert f"reading channels from axis {axis} of --image" in err and "3 channels" in err
    assert load_model(out).meta["in_channels"] == 3
    assert main(["predict", "--model", str(out), "--out-dir", str(tmp_path / "pred"), "--quiet",
                 "--device", "cpu", str(img_path)]) == 0
    assert f"reading them from axis {axis}" in capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "pred" / "he_labels.tif")
    assert labels.shape == strokes.shape and set(np.unique(labels)) <= {1, 2}
    if layout == "rgb_tif":  # the block engine (zarr input) reads the same axis
        import zarr

        z = zarr.create_array(str(tmp_path / "he.zarr"), shape=rgb.shape, chunks=(64, 64, 3), dtype=rgb.dtype)
        z[:] = rgb
        assert main(["predict", "--model", str(out), "--out-dir", str(tmp_path / "zpred"), "--quiet",
                     "--device", "cpu", str(tmp_path / "he.zarr")]) == 0
        assert "reading them from axis -1" in capsys.readouterr().err
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "zpred" / "he_labels.tif"), labels)
        # an RGB stack (Z, Y, X, 3) with --instances: the channels from the last axis (not taken
        # for a time-lapse), each plane segmented as the single image was, and objects made in 3D
        # from the 2D model's stacked planes (identical planes: each object goes through all three)
        tifffile.imwrite(tmp_path / "he_stack.tif", np.stack([rgb] * 3))
        assert main(["predict", "--model", str(out), "--out-dir", str(tmp_path / "spred"), "--quiet",
                     "--device", "cpu", "--instances", str(tmp_path / "he_stack.tif")]) == 0
        assert "reading them from axis -1" in capsys.readouterr().err
        stack_labels = tifffile.imread(tmp_path / "spred" / "he_stack_labels.tif")
        np.testing.assert_array_equal(stack_labels, np.stack([labels] * 3))
        inst = tifffile.imread(tmp_path / "spred" / "he_stack_instances.tif")
        assert inst.shape == stack_labels.shape and inst.max() > 0
        np.testing.assert_array_equal(inst[0], inst[1])
        np.testing.assert_array_equal(inst[0], inst[2])


def test_a_shape_that_leaves_the_channels_in_doubt_is_one_line_asking_for_channel_axis(files, tmp_path, capsys):
    strokes = tifffile.imread(files / "strokes.tif")
    tifffile.imwrite(tmp_path / "stack.tif", np.stack([tifffile.imread(files / "img.tif")] * 12))
    rc = main(["train", "--image", str(tmp_path / "stack.tif"), "--labels", str(files / "strokes.tif"),
               "--out", str(tmp_path / "m.pt"), "--steps", "1", *TINY])
    assert rc == 2 and strokes.shape == (128, 128)
    line = one_error_line(capsys)
    assert "(12, 128, 128)" in line and "--channel-axis" in line
    assert not (tmp_path / "m.pt").exists()


def test_a_class_painted_in_a_few_spots_gets_a_note_before_training(files, tmp_path, capsys):
    """31 background pixels against thousands of object pixels: training runs, and the start
    says which class is short and by how much; balanced paint gets no note."""
    lab = np.zeros((128, 128), np.uint8)
    lab[20:100, 20:100] = 2          # 6,400 object pixels
    lab[2:5, 2:12] = 1               # 30 background pixels
    lab[125, 125] = 1                # 31
    tifffile.imwrite(tmp_path / "scarce.tif", lab)
    rc = main(["train", "--image", str(files / "img.tif"), "--labels", str(tmp_path / "scarce.tif"),
               "--out", str(tmp_path / "m.pt"), "--steps", "2", "--val-fraction", "0", *TINY])
    assert rc == 0
    err = capsys.readouterr().err
    assert "note: background (class 1) holds 31 of the 6,431 painted pixels (0.5%)" in err
    assert "paint it in more places" in err

    rc = main(["train", "--image", str(files / "img.tif"), "--labels", str(files / "strokes.tif"),
               "--out", str(tmp_path / "m2.pt"), "--steps", "2", *TINY])
    assert rc == 0
    assert "note:" not in capsys.readouterr().err
