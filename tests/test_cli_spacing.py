"""``napari-unet train --dims 3`` with anisotropic voxels: the voxel size read from the image's
metadata (or ``--spacing``) picks the pooling per axis, recorded in the model."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.io import load_model

TINY3D = ["--dims", "3", "--base-channels", "4", "--depth", "2", "--batch-size", "1", "--steps", "2",
          "--val-fraction", "0", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli_spacing")
    rng = np.random.default_rng(0)
    img = rng.normal(100, 10, (10, 32, 32)).astype(np.float32)
    img[:, 16:] += 50
    lab = np.zeros(img.shape, np.uint8)
    lab[:, 2:10, 2:12] = 1
    lab[:, 20:30, 20:30] = 2
    # ImageJ hyperstack: 0.5 um pixels, 2 um between planes (Z 4x coarser)
    tifffile.imwrite(d / "img.tif", img, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 2.0, "unit": "um", "axes": "ZYX"})
    tifffile.imwrite(d / "plain.tif", img)
    tifffile.imwrite(d / "lab.tif", lab)
    return d


def test_voxel_size_from_the_image_and_from_spacing(stack, tmp_path, capsys):
    out = tmp_path / "m.pt"
    rc = main(["train", "--image", str(stack / "img.tif"), "--labels", str(stack / "lab.tif"),
               "--out", str(out), *TINY3D])
    assert rc == 0
    err = capsys.readouterr().err
    assert "voxel size 2,0.5,0.5 (Z,Y,X) from" in err
    assert "pooled Z x1, Y x4, X x4 (voxel 2x0.5x0.5)" in err
    m = load_model(out)
    assert m.meta["pooling"] == [[1, 2, 2], [1, 2, 2]] and m.meta["spacing"] == [2.0, 0.5, 0.5]
    assert m.meta["training"]["spacing"] == [2.0, 0.5, 0.5]

    # --spacing overrides the metadata (here: isotropic)
    out2 = tmp_path / "m2.pt"
    rc = main(["train", "--image", str(stack / "img.tif"), "--labels", str(stack / "lab.tif"),
               "--out", str(out2), "--spacing", "1,1,1", *TINY3D])
    assert rc == 0
    assert "voxel size" not in capsys.readouterr().err
    assert load_model(out2).meta["pooling"] == [[2, 2, 2]] * 2

    # an image without a voxel size trains isotropic, as before
    out3 = tmp_path / "m3.pt"
    assert main(["train", "--image", str(stack / "plain.tif"), "--labels", str(stack / "lab.tif"),
                 "--out", str(out3), *TINY3D]) == 0
    assert load_model(out3).meta["spacing"] is None


@pytest.mark.parametrize("extra,msg", [
    (["--spacing", "1,1"], "--spacing must have 3 values"),
    (["--spacing", "2,1,1", "--dims", "2"], "--spacing applies to 3D training"),
])
def test_spacing_mistakes_are_one_line(stack, tmp_path, capsys, extra, msg):
    args = ["train", "--image", str(stack / "img.tif"), "--labels", str(stack / "lab.tif"),
            "--out", str(tmp_path / "m.pt"), *TINY3D, *extra]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-unet: error: ") and msg in err[0], err
    assert not (tmp_path / "m.pt").exists()


def test_a_stack_trained_without_dims_is_2d_and_the_note_names_dims_3(stack, tmp_path, capsys):
    """The API's default stays 2D; the command says that ``--dims 3`` would learn from the
    planes nobody painted too (the Train widget picks 3D for such a stack itself)."""
    tiny2d = [a for a in TINY3D if a not in ("--dims", "3")]
    out = tmp_path / "m.pt"
    assert main(["train", "--image", str(stack / "plain.tif"), "--labels", str(stack / "lab.tif"),
                 "--out", str(out), *tiny2d]) == 0
    assert "is a stack of 10 planes, trained slice by slice" in capsys.readouterr().err
    assert load_model(out).meta["dims"] == 2
    assert main(["train", "--image", str(stack / "plain.tif"), "--labels", str(stack / "lab.tif"),
                 "--out", str(tmp_path / "m3.pt"), *TINY3D]) == 0
    assert "slice by slice" not in capsys.readouterr().err
    # a time series (frames unlike one another, smooth within each) is right in 2D: no note
    from scipy import ndimage as ndi

    frames = ndi.gaussian_filter(np.random.default_rng(1).normal(size=(10, 32, 32)), (0, 2, 2))
    tifffile.imwrite(tmp_path / "movie.tif", frames.astype(np.float32))
    assert main(["train", "--image", str(tmp_path / "movie.tif"), "--labels", str(stack / "lab.tif"),
                 "--out", str(tmp_path / "m4.pt"), *tiny2d]) == 0
    assert "slice by slice" not in capsys.readouterr().err
