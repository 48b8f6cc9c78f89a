import numpy as np
import pytest
import torch

from napari_unet import build_model, iter_predict, predict, probabilities_to_labels
from napari_unet.core.predict import PredictDone, PredictProgress, choose_tile, plan_axis


def test_2d_shapes_and_probabilities(tiny2d, rng):
    img = rng.normal(100, 20, (97, 131)).astype(np.float32)
    p = predict(tiny2d, img, tile=None, device="cpu")
    assert p.shape == (3, 97, 131) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(0), 1, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float64, bool])
def test_dtypes(tiny2d, rng, dtype):
    img = (rng.random((40, 50)) * 200).astype(dtype)
    p = predict(tiny2d, img, device="cpu")
    assert p.shape == (3, 40, 50) and np.isfinite(p).all()


@pytest.mark.parametrize("shape,tile", [
    ((173, 211), 16), ((173, 211), 40), ((173, 211), (48, 96)), ((5, 61, 77), 24), ((7, 9), 8),
])
def test_2d_tiling_is_seamless(tiny2d, rng, shape, tile):
    img = rng.gamma(2.0, 50.0, shape).astype(np.float32)
    whole = predict(tiny2d, img, tile=None, device="cpu")
    tiled = predict(tiny2d, img, tile=tile, device="cpu")
    assert np.abs(whole - tiled).max() <= 1e-4


@pytest.mark.parametrize("shape,tile", [((19, 45, 37), 8), ((23, 30, 41), (8, 16, 24))])
def test_3d_tiling_is_seamless(tiny3d, rng, shape, tile):
    img = rng.gamma(2.0, 50.0, shape).astype(np.float32)
    whole = predict(tiny3d, img, tile=None, device="cpu")
    tiled = predict(tiny3d, img, tile=tile, device="cpu")
    assert whole.shape == (2,) + shape
    assert np.abs(whole - tiled).max() <= 1e-4


def test_seamless_with_trained_batchnorm_statistics(rng):
    """Running statistics far from (0, 1) still give seamless tiles (eval-mode BatchNorm)."""
    torch.manual_seed(3)
    m = build_model(dims=2, classes=2, base_channels=4, depth=3)
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(2, 1, 64, 64) * 3 + 1)
    img = rng.normal(0, 1, (150, 130)).astype(np.float32)
    whole = predict(m, img, tile=None, device="cpu")
    tiled = predict(m, img, tile=32, device="cpu")
    assert np.abs(whole - tiled).max() <= 1e-4
    assert m.training, "predict must not change the caller's model mode"


def test_2d_model_on_stack_matches_slices(tiny2d, rng):
    stack = rng.normal(100, 20, (3, 40, 56)).astype(np.float32)
    ps = predict(tiny2d, stack, device="cpu")
    assert ps.shape == (3, 3, 40, 56)
    # the stack is normalised as a whole, so compare with the same statistics: scale the slice
    single = predict(tiny2d, stack[1:2], device="cpu")
    assert single.shape == (3, 1, 40, 56)


def test_generator_progress_and_out_memmap(tiny2d, rng, tmp_path):
    img = rng.normal(0, 1, (100, 90)).astype(np.float32)
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(3, 100, 90))
    events = list(iter_predict(tiny2d, img, tile=32, device="cpu", out=out))
    prog = [e for e in events if isinstance(e, PredictProgress)]
    assert prog and prog[-1].done == prog[-1].total and isinstance(events[-1], PredictDone)
    assert events[-1].probabilities is out
    np.testing.assert_allclose(np.asarray(out).sum(0), 1, atol=1e-5)
    calls = []
    predict(tiny2d, img, tile=32, device="cpu", progress=lambda d, n: calls.append((d, n)))
    assert calls[-1][0] == calls[-1][1] and len(calls) >= 2


def test_generator_can_be_closed_early(tiny2d, rng):
    img = rng.normal(0, 1, (120, 120)).astype(np.float32)
    gen = iter_predict(tiny2d, img, tile=16, batch_size=1, device="cpu")
    first = next(gen)
    assert isinstance(first, PredictProgress) and first.done < first.total
    gen.close()


def test_predict_does_not_touch_the_model(tiny2d, rng):
    before = {k: v.clone() for k, v in tiny2d.state_dict().items()}
    predict(tiny2d, rng.normal(0, 1, (30, 30)).astype(np.float32), device="cpu")
    for k, v in tiny2d.state_dict().items():
        assert torch.equal(before[k], v)
    assert next(tiny2d.parameters()).device.type == "cpu"


def test_channel_axis(rng):
    m = build_model(dims=2, in_channels=2, classes=2, base_channels=4, depth=2)
    img = rng.normal(0, 1, (33, 2, 41)).astype(np.float32)
    p = predict(m, img, channel_axis=1, device="cpu")
    assert p.shape == (2, 33, 41)
    with pytest.raises(ValueError, match="channels"):
        predict(m, img[:, 0], device="cpu")


@pytest.mark.parametrize("image,err,match", [
    (np.zeros((0, 10), np.float32), ValueError, "empty"),
    (np.zeros((10,), np.float32), ValueError, "spatial dims"),
    (np.zeros((2, 3, 10, 10), np.float32), ValueError, "spatial dims"),
    (np.zeros((64, 64, 3), np.uint8), ValueError, "RGB"),
    (np.full((20, 20), np.nan, np.float32), ValueError, "NaN"),
    (np.array([[1 + 2j]]), TypeError, "dtype"),
    ("not an image", TypeError, "numpy"),
])
def test_bad_images(tiny2d, image, err, match):
    with pytest.raises(err, match=match):
        predict(tiny2d, image, device="cpu")


def test_inf_in_one_place(tiny2d):
    img = np.zeros((50, 50), np.float32)
    img[40, 3] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        predict(tiny2d, img, device="cpu")


def test_3d_model_needs_a_volume(tiny3d):
    with pytest.raises(ValueError, match="3D model"):
        predict(tiny3d, np.zeros((20, 20), np.float32), device="cpu")


@pytest.mark.parametrize("kw,err", [(dict(tile=0), ValueError), (dict(tile="big"), ValueError),
                                    (dict(tile=(8, 8, 8)), ValueError), (dict(batch_size=0), ValueError),
                                    (dict(device="tpu"), ValueError), (dict(tile=1.5), TypeError)])
def test_bad_options(tiny2d, kw, err):
    with pytest.raises(err):
        predict(tiny2d, np.zeros((20, 20), np.float32), **kw)


def test_not_our_model():
    with pytest.raises(TypeError, match="build_model"):
        predict(torch.nn.Conv2d(1, 2, 3), np.zeros((8, 8), np.float32))


def test_plan_axis_covers_every_pixel_once():
    for size in (1, 7, 16, 100, 257):
        for core in (8, 16, 48, 300):
            tiles = plan_axis(size, core, halo=24, grid=8)
            cover = np.zeros(size, int)
            for t in tiles:
                cover[t.core_start:t.core_stop] += 1
                assert t.in_start % 8 == 0 and t.in_start <= t.core_start and t.in_stop >= t.core_stop
                assert t.padded % 8 == 0 and t.padded >= t.in_stop - t.in_start
            assert (cover == 1).all()


def test_auto_tile_respects_budget(tiny2d):
    meta = tiny2d.meta
    small = choose_tile((4096, 4096), meta, budget=64 << 20, itemsize=4)
    big = choose_tile((4096, 4096), meta, budget=4 << 30, itemsize=4)
    assert all(c % meta["grid"] == 0 for c in small + big)
    assert max(small) < max(big)
    assert choose_tile((100, 100), meta, budget=4 << 30, itemsize=4) == (104, 104)


def test_labels_from_probabilities():
    p = np.zeros((2, 2, 3), np.float32)
    p[0] = [[0.9, 0.4, 0.6], [0.2, 0.5, 0.1]]
    p[1] = 1 - p[0]
    np.testing.assert_array_equal(probabilities_to_labels(p), [[1, 2, 1], [2, 1, 2]])
    np.testing.assert_array_equal(probabilities_to_labels(p, threshold=0.7), [[1, 1, 1], [2, 1, 2]])
    with pytest.raises(ValueError):
        probabilities_to_labels(np.ones((3, 2, 2), np.float32) / 3, threshold=0.5)


def test_abandoned_generator_leaves_no_inference_mode(tiny2d, rng):
    """A consumer that stops iterating (a cancelled worker) must not leave its thread in
    inference mode, or later training in that thread breaks."""
    img = rng.normal(0, 1, (120, 120)).astype(np.float32)
    gen = iter_predict(tiny2d, img, tile=16, batch_size=1, device="cpu")
    next(gen)
    assert not torch.is_inference_mode_enabled()
    del gen


class _RunsOutOfMemory(torch.nn.Module):
    """Stands in for a GPU that has room for tiles of at most ``limit`` pixels (input side)."""

    def __init__(self, inner, limit):
        super().__init__()
        self.inner, self.limit, self.calls = inner, limit, []

    def forward(self, x):
        self.calls.append(tuple(x.shape))
        if x.shape[0] * max(x.shape[2:]) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner(x)


def test_out_of_memory_halves_the_tile_and_stays_seamless(tiny2d, rng, monkeypatch):
    from napari_unet.core import predict as P

    img = rng.gamma(2.0, 50.0, (173, 211)).astype(np.float32)
    whole = predict(tiny2d, img, tile=None, device="cpu")
    real_copy = P.inference_copy
    fakes = []

    def copy_that_runs_out(model, dev, channels_last):
        fakes.append(_RunsOutOfMemory(real_copy(model, dev, channels_last), limit=120))
        return fakes[-1]

    monkeypatch.setattr(P, "inference_copy", copy_that_runs_out)
    with pytest.warns(UserWarning, match="out of memory"):
        events = list(iter_predict(tiny2d, img, tile=None, batch_size=2, device="cpu"))
    retries = [e for e in events if isinstance(e, P.PredictRetry)]
    assert retries and "out of memory" in retries[0].reason
    assert all(t < 224 for t in retries[-1].tile)  # smaller than the whole (padded) image
    probs = events[-1].probabilities
    assert np.abs(probs - whole).max() <= 1e-4  # every pixel rewritten by the smaller tiles


def test_out_of_memory_with_the_smallest_tile_says_so(tiny2d, rng, monkeypatch):
    from napari_unet.core import predict as P

    real_copy = P.inference_copy
    monkeypatch.setattr(P, "inference_copy",
                        lambda m, d, c: _RunsOutOfMemory(real_copy(m, d, c), limit=1))
    img = rng.normal(100, 20, (64, 64)).astype(np.float32)
    with pytest.warns(UserWarning), pytest.raises(MemoryError, match="smallest tile.*device='cpu'"):
        predict(tiny2d, img, device="cpu")


def test_output_larger_than_ram_is_refused_with_the_fix(tiny2d, monkeypatch, tmp_path):
    from napari_unet.core import device

    img = np.zeros((64, 64), np.float32)
    need = 3 * 64 * 64 * 4
    monkeypatch.setattr(device, "available_memory", lambda dev: need)  # less than need / 0.8
    with pytest.raises(MemoryError, match=r"need .* GiB .*out= a float32 numpy.memmap"):
        predict(tiny2d, img, device="cpu")
    out = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float32, shape=(3, 64, 64))
    assert predict(tiny2d, img, device="cpu", out=out) is out
