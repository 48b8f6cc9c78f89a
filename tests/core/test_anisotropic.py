"""Anisotropic voxels: per-axis pooling in the U-Net, per-axis tiling, training with a voxel size."""
import numpy as np
import pytest
import torch

from napari_unet import build_model, load_model, predict, save_model
from napari_unet.core.model import measure_receptive_field
from napari_unet.core.pooling import anisotropic_patch, describe_pooling, pooling_schedule
from napari_unet.core.predict import choose_tile
from napari_unet.core.train import iter_train, train


def test_schedule_pools_z_only_once_it_is_no_longer_coarse():
    assert pooling_schedule(None, 3, 3) == [[2, 2, 2]] * 3
    assert pooling_schedule((1.0, 1.0, 1.0), 2) == [[2, 2, 2]] * 2
    assert pooling_schedule((1.5, 1.0, 1.0), 2) == [[2, 2, 2]] * 2      # less than twice: pooled
    assert pooling_schedule((3.0, 1.0, 1.0), 3) == [[1, 2, 2], [2, 2, 2], [2, 2, 2]]
    assert pooling_schedule((2.0, 1.0, 1.0), 2) == [[1, 2, 2], [2, 2, 2]]  # twice: not yet
    assert pooling_schedule((10.0, 0.5, 0.5), 4) == [[1, 2, 2]] * 4    # Z stays coarser than 2x
    assert pooling_schedule((1.0, 1.0, 4.0), 3) == [[2, 2, 1], [2, 2, 1], [2, 2, 2]]


def test_build_model_keeps_its_isotropic_default_and_records_the_schedule():
    iso = build_model(3, 1, 2, 4, 2)
    assert iso.meta["grid"] == 4 and iso.meta["grid_axes"] == [4, 4, 4]
    assert iso.meta["halo_axes"] == [iso.meta["halo"]] * 3 and iso.meta["spacing"] is None
    assert describe_pooling(iso.meta) == ""
    m = build_model(3, 1, 2, 4, 3, spacing=(4, 1, 1))
    meta = m.meta
    assert meta["pooling"] == [[1, 2, 2], [1, 2, 2], [2, 2, 2]] and meta["spacing"] == [4.0, 1.0, 1.0]
    assert meta["grid_axes"] == [2, 8, 8] and meta["grid"] == 8
    assert meta["halo_axes"][0] < meta["halo_axes"][1] == meta["halo"]
    assert all(h % g == 0 for h, g in zip(meta["halo_axes"], meta["grid_axes"]))
    assert describe_pooling(meta) == "pooled Z x2, Y x8, X x8 (voxel 4x1x1)"
    # a Z size on the Z grid (not on 2**depth) goes through
    y = m(torch.randn(1, 1, 6, 16, 24))
    assert y.shape == (1, 2, 6, 16, 24)


@pytest.mark.parametrize("spacing,err", [((1, 1), ValueError), ((0, 1, 1), ValueError),
                                         ("1,1,1", TypeError), ((1, None, 1), TypeError)])
def test_bad_spacing(spacing, err):
    with pytest.raises(err, match="spacing"):
        build_model(3, spacing=spacing)


def test_per_axis_halo_bounds_the_real_anisotropic_network():
    """The Z receptive field measured for Z's schedule bounds a real 3D network's response."""
    torch.manual_seed(0)
    m = build_model(3, 1, 2, 4, 2, spacing=(3, 1, 1)).double().eval()
    zf = tuple(level[0] for level in m.meta["pooling"])
    left, right = measure_receptive_field(2, zf)
    assert m.meta["halo_axes"][0] >= max(left, right)
    x = torch.randn(1, 1, 40, 12, 12, dtype=torch.float64, requires_grad=True)
    for z in (18, 19, 20, 21):
        (g,) = torch.autograd.grad(m(x)[0, :, z, 6, 6].sum(), x)
        nz = torch.nonzero(g[0, 0].abs().sum((1, 2))).flatten()
        assert len(nz), "no response (dead ReLUs): choose another seed"
        assert z - int(nz.min()) <= left and int(nz.max()) - z <= right


def test_save_load_round_trip_and_older_files(tmp_path, rng):
    torch.manual_seed(0)
    m = build_model(3, 1, 3, 4, 2, spacing=(5.0, 1.0, 1.0))
    path = save_model(m, tmp_path / "aniso.pt")
    back = load_model(path)
    assert back.meta["pooling"] == m.meta["pooling"] and back.meta["halo_axes"] == m.meta["halo_axes"]
    img = rng.normal(size=(6, 20, 20)).astype(np.float32)
    np.testing.assert_allclose(predict(back, img, tile=None, device="cpu"),
                               predict(m, img, tile=None, device="cpu"), atol=1e-6)
    # a file saved before pooling schedules existed (no such keys) loads isotropic
    old = build_model(3, 1, 2, 4, 2)
    for k in ("spacing", "pooling", "grid_axes", "halo_axes", "receptive_field_axes"):
        del old.meta[k]
    back_old = load_model(save_model(old, tmp_path / "old.pt"))
    assert "pooling" not in back_old.meta
    np.testing.assert_allclose(predict(back_old, img[:4], tile=None, device="cpu"),
                               predict(old, img[:4], tile=None, device="cpu"), atol=1e-6)


@pytest.fixture(scope="module")
def aniso3d():
    torch.manual_seed(5)
    m = build_model(3, 1, 2, 4, 3, spacing=(4.0, 1.0, 1.0))   # Z grid 2, YX grid 8
    m.train()
    with torch.no_grad():  # running statistics away from (0, 1)
        for _ in range(2):
            m(torch.randn(2, 1, 8, 32, 32) * 2 + 1)
    return m.eval()


@pytest.mark.parametrize("shape,tile", [((13, 37, 29), (2, 16, 16)), ((13, 37, 29), (6, 8, 24)),
                                        ((9, 20, 21), 4)])
def test_anisotropic_tiling_is_seamless(aniso3d, rng, shape, tile):
    img = rng.gamma(2.0, 50.0, shape).astype(np.float32)
    whole = predict(aniso3d, img, tile=None, device="cpu")
    tiled = predict(aniso3d, img, tile=tile, device="cpu")
    assert np.abs(whole - tiled).max() <= 1e-4  # the contract says 1e-3; an undersized Z halo gives ~1e-3 here


def test_tiles_use_the_per_axis_grid(aniso3d):
    meta = aniso3d.meta
    cores = choose_tile((40, 512, 512), meta, budget=4 << 20, itemsize=4)
    assert all(c % g == 0 for c, g in zip(cores, meta["grid_axes"]))
    from napari_unet.core.tiling import _normalise_tile_arg

    assert _normalise_tile_arg((3, 9, 9), 3, tuple(meta["grid_axes"])) == (4, 16, 16)


def _volume(rng):
    img = rng.normal(0, 1, (12, 40, 40)).astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    img[:, 20:] += 3
    lab[:, 5:12, 4:14] = 1
    lab[:, 25:35, 26:36] = 2
    return img, lab


def test_training_with_a_voxel_size_pools_and_patches_per_axis(rng):
    img, lab = _volume(rng)
    events = list(iter_train(img, lab, dims=3, steps=2, base_channels=4, depth=2, device="cpu",
                             val_fraction=0, spacing=(3.0, 1.0, 1.0), batch_size=1))
    started, finished = events[0], events[-1]
    assert started.pooling == "pooled Z x2, Y x4, X x4 (voxel 3x1x1)"
    assert started.patch[0] < started.patch[1]  # thinner in Z than the isotropic default
    assert started.patch[0] % 2 == 0 and started.patch[1] % 4 == 0
    model = finished.model
    assert model.meta["pooling"] == [[1, 2, 2], [2, 2, 2]]
    rec = model.meta["training"]
    assert rec["spacing"] == [3.0, 1.0, 1.0] and rec["pooling"] == model.meta["pooling"]
    assert predict(model, img, device="cpu").shape == (2,) + img.shape
    # continuing keeps the model's pooling whatever the spacing says
    again = train(img, lab, model=model, steps=1, device="cpu", val_fraction=0, batch_size=1,
                  spacing=(1.0, 1.0, 1.0))
    assert again.meta["pooling"] == [[1, 2, 2], [2, 2, 2]]
    with pytest.raises(ValueError, match="spacing must have 3 values"):
        iter_train(img, lab, dims=3, steps=1, spacing=(1.0, 1.0))


def test_anisotropic_patch_keeps_the_voxel_count():
    p = anisotropic_patch((16, 64, 64), (3.0, 1.0, 1.0), (2, 8, 8))
    assert p == (8, 96, 96)
    assert anisotropic_patch((16, 64, 64), None, (8, 8, 8)) == (16, 64, 64)
    assert anisotropic_patch((16, 64, 64), (1.0, 1.0, 1.0), (8, 8, 8)) == (16, 64, 64)


def test_blocks_of_an_anisotropic_model_equal_predict(tmp_path):
    """The block engine (core.distributed, one number for grid and halo) stays exact."""
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("distributed")
    from napari_unet.core import distributed as dist
    from napari_unet.core.readers import open_image

    torch.manual_seed(2)
    m = build_model(3, 1, 2, 4, 2, spacing=(4.0, 1.0, 1.0))  # Z not pooled at all
    path = save_model(m, tmp_path / "m.pt")
    vol = (np.random.default_rng(1).random((10, 36, 28)) * 3000).astype(np.uint16)
    z = zarr.create_array(tmp_path / "vol.zarr", shape=vol.shape, chunks=(4, 16, 16), dtype=vol.dtype)
    z[:] = vol
    job = dist.make_job(m.meta, open_image(tmp_path / "vol.zarr"), tmp_path, fmt="ome-zarr",
                        chunks=(4, 16, 16), device="cpu")
    (out,), = dist.run_jobs(dist.model_ref(path), [job], m.meta)
    got = zarr.open_group(out, mode="r")["0"][:]
    assert np.abs(got - predict(m, vol, tile=None, device="cpu")).max() <= 1e-5
