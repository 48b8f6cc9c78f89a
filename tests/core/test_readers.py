"""Lazy inputs (core.readers): zarr, OME-Zarr 0.4/0.5, HDF5, TIFF, with pixel sizes; and the
pixel size written back into TIFF outputs."""
import numpy as np
import pytest
import tifffile

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")

from napari_unet.core.readers import PixelSize, open_image  # noqa: E402


@pytest.fixture
def vol(rng):
    return rng.integers(0, 4000, (6, 20, 24)).astype(np.uint16)


def test_plain_zarr_array_reads_regions_lazily(tmp_path, vol):
    z = zarr.create_array(tmp_path / "v.zarr", shape=vol.shape, chunks=(2, 8, 8), dtype=vol.dtype)
    z[:] = vol
    src = open_image(tmp_path / "v.zarr")
    assert src.shape == vol.shape and src.dtype == vol.dtype and src.chunks == (2, 8, 8)
    assert src.name == "v"
    np.testing.assert_array_equal(src[1:3, 5:9], vol[1:3, 5:9])
    np.testing.assert_array_equal(np.asarray(src.to_dask()), vol)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_level0_scale_and_singleton_axes(tmp_path, vol, version):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_image

    fmt = FormatV04() if version == "0.4" else FormatV05()
    path = tmp_path / "img.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2 if version == "0.4" else 3)
    data = vol[None, None]  # t, c, z, y, x with t = c = 1
    write_image(data, root, axes="tczyx", fmt=fmt, scale_factors=[2],
                scale={"z": 2.0, "y": 0.5, "x": 0.5},
                axes_units={"z": "micrometer", "y": "micrometer", "x": "micrometer"})
    src = open_image(path)
    assert src.shape == vol.shape and src.axes == "ZYX"
    assert src.pixel_size.sizes == {"z": 2.0, "y": 0.5, "x": 0.5}
    assert src.pixel_size.unit == "micrometer"
    assert src.name == "img"
    np.testing.assert_array_equal(src[2:4, :, 3:7], vol[2:4, :, 3:7])


def test_hdf5_dataset(tmp_path, vol):
    h5py = pytest.importorskip("h5py")
    f = tmp_path / "v.h5"
    with h5py.File(f, "w") as h:
        d = h.create_dataset("raw/data", data=vol, chunks=(2, 10, 12))
        d.attrs["element_size_um"] = [1.5, 0.2, 0.2]
        h.create_dataset("other", data=np.zeros(3))
    src = open_image(f"{f}:raw/data")
    assert src.shape == vol.shape and src.chunks == (2, 10, 12)
    assert src.pixel_size.sizes == {"z": 1.5, "y": 0.2, "x": 0.2}
    np.testing.assert_array_equal(src[3:, 4:8], vol[3:, 4:8])
    with pytest.raises(ValueError, match="2 datasets"):
        open_image(f)
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        open_image(f"{f}:nope")


def test_tiff_imagej_spacing_and_resolution(tmp_path, vol):
    f = tmp_path / "s.tif"
    tifffile.imwrite(f, vol, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"unit": "um", "spacing": 3.0, "axes": "ZYX"})
    src = open_image(f)
    assert src.shape == vol.shape and src.axes == "ZYX"
    assert src.pixel_size.sizes == pytest.approx({"z": 3.0, "y": 0.25, "x": 0.25})
    assert src.pixel_size.unit == "micrometer"
    np.testing.assert_array_equal(src[1, 2:5], vol[1, 2:5])


def test_write_tiff_carries_pixel_size(tmp_path, vol):
    from napari_unet.core.io import write_tiff

    px = PixelSize({"z": 2.0, "y": 0.5, "x": 0.25}, "micrometer")
    write_tiff(tmp_path / "o.tif", vol, axes="ZYX", pixel=px)
    back = open_image(tmp_path / "o.tif").pixel_size
    assert back.sizes == pytest.approx(px.sizes) and back.unit == "micrometer"
    with tifffile.TiffFile(tmp_path / "o.tif") as t:  # standard tags: pixels per centimetre
        xr = t.pages[0].tags["XResolution"].value
        assert xr[0] / xr[1] == pytest.approx(1e4 / 0.25)
        assert t.shaped_metadata[0]["axes"] == "ZYX"


def test_missing_inputs_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_image(tmp_path / "nope.zarr")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_image(f"{tmp_path / 'nope.h5'}:x")
