"""napari writer contribution: image + labels layers saved as one OME-Zarr, read back with
scale (through napari's save_layers, the path File > Save Layers takes; no viewer needed)."""
import numpy as np
import pytest

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")


def test_save_layers_as_ome_zarr(tmp_path):
    import napari
    from napari.layers import Image, Labels
    from napari.plugins import _initialize_plugins
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    from napari_unet.core.readers import open_image

    _initialize_plugins()  # what opening a viewer does
    rng = np.random.default_rng(0)
    img = rng.random((4, 30, 40)).astype(np.float32)
    lab = rng.integers(1, 4, (4, 30, 40)).astype(np.uint8)
    layers = [Image(img, name="raw", scale=(2.0, 0.5, 0.5)), Labels(lab, name="my labels", scale=(2.0, 0.5, 0.5))]
    out = tmp_path / "saved.ome.zarr"
    written = napari.save_layers(str(out), layers, plugin="napari-unet")
    assert [str(p) for p in written] == [str(out)]
    src = open_image(out)
    assert src.shape == img.shape and src.pixel_size.sizes == {"z": 2.0, "y": 0.5, "x": 0.5}
    np.testing.assert_array_equal(src[:], img)
    label = next(n for n in Reader(parse_url(str(out / "labels" / "my_labels")))() if n.load(Label))
    np.testing.assert_array_equal(np.asarray(label.data[0]), lab)
    assert label.metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 0.5, 0.5]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind

    # labels alone: they are the image too; saving again replaces our store
    written = napari.save_layers(str(out), [layers[1]], plugin="napari-unet")
    assert open_image(out).dtype == np.uint8
