"""napari-unet predict --instances --format ome-zarr: the instance labels go into the store as a
second NGFF label image (labels/instances/0) that ome-zarr's reader opens; with a zarr input and
TIFF outputs they go to <stem>_instances.tif as on the in-memory path."""
import numpy as np
import pytest
import tifffile

pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

import zarr  # noqa: E402

from napari_unet.cli import main  # noqa: E402
from napari_unet.core.instances import instance_labels  # noqa: E402


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_instances_into_the_ome_zarr_store(tmp_path, model_file, capsys, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    img = np.random.default_rng(0).integers(0, 1000, (3, 40, 48)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", img)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), "--quiet", "--format", "ome-zarr",
                 "--ngff-version", version, "--instances", "--min-size", "3", "--seed-distance", "2",
                 "--spacing", "2,0.5,0.5", str(tmp_path / "stack.tif")]) == 0
    stdout = capsys.readouterr().out
    store = out / "stack.ome.zarr"
    assert "labels/instances/0" in stdout and "objects)" in stdout
    g = zarr.open_group(str(store), mode="r")
    inst = g["labels/instances/0"][:]
    expected = instance_labels(g["0"][1], min_size=3, seed_distance=2, spacing=(2, 0.5, 0.5))
    assert inst.shape == img.shape and inst.dtype in (np.uint16, np.uint32)
    np.testing.assert_array_equal(inst, expected)
    assert not list((store / "labels").glob("*.partial"))               # no partial left behind

    # ome-zarr's reader: the image lists both label images, and opens the instances as a Label
    labels_meta = dict(g["labels"].attrs)
    listed = labels_meta.get("ome", labels_meta)["labels"]
    assert listed == ["prediction", "instances"]
    node = next(n for n in Reader(parse_url(str(store / "labels" / "instances")))() if n.load(Label))
    assert [a["name"] for a in node.metadata["axes"]] == ["z", "y", "x"]
    np.testing.assert_array_equal(np.asarray(node.data[0]), expected)
    pred = next(n for n in Reader(parse_url(str(store / "labels" / "prediction")))() if n.load(Label))
    assert set(np.unique(np.asarray(pred.data[0]))) <= {1, 2}             # the classes are still there

    # napari (napari-ome-zarr's reader) opens both label images as Labels layers with the scale
    reader = pytest.importorskip("napari_ome_zarr._reader").napari_get_reader(str(store))
    layers = {kw.get("name"): (kind, kw.get("scale")) for _, kw, kind in reader(str(store))}
    assert [(k, s) for name, (k, s) in layers.items() if name and name.endswith("instances")] == [("labels", [1.0] * 3)]


def test_instances_from_a_zarr_input_to_tiff(tmp_path, model_file, capsys):
    img = np.random.default_rng(1).integers(0, 1000, (2, 32, 32)).astype(np.uint16)
    zarr.save_array(str(tmp_path / "vol.zarr"), img)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), "--quiet", "--instances",
                 "--min-size", "3", str(tmp_path / "vol.zarr")]) == 0
    probs = tifffile.imread(out / "vol_probs.tif")
    np.testing.assert_array_equal(tifffile.imread(out / "vol_instances.tif"),
                                  instance_labels(probs[1], min_size=3))
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), "--quiet", "--instances",
                 "--measure", str(tmp_path / "vol.zarr")]) == 2
    assert "--measure is not available" in capsys.readouterr().err
