"""The fixed filter stem (model.FilterStem): right responses, inside the halo, saved, exported,
and on by default for fresh 3D models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet import build_model, load_model, predict, save_model, train
from napari_unet.core.model import FilterStem, model_from_state


def _stem(dims, sigmas=(1.0, 2.0)):
    return FilterStem(dims, [[s] * dims for s in sigmas])


@pytest.mark.parametrize("dims", [2, 3])
def test_closed_form_eigenvalues_match_lapack(dims):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, dims, dims, generator=g, dtype=torch.float64)
    a = a + a.transpose(1, 2)
    upper = [a[:, i, j] for i in range(dims) for j in range(i, dims)]
    got = torch.stack(_stem(dims)._eigvals(upper), -1)
    assert torch.allclose(got, torch.linalg.eigvalsh(a), atol=1e-9)
    # repeated eigenvalues (a multiple of the identity) do not give NaN
    eye = [torch.full((3,), 2.0, dtype=torch.float64) if i == j else torch.zeros(3, dtype=torch.float64)
           for i in range(dims) for j in range(i, dims)]
    assert torch.allclose(torch.stack(_stem(dims)._eigvals(eye), -1), torch.full((3, dims), 2.0, dtype=torch.float64))


def test_responses_name_ridges_sheets_and_blobs():
    """A bright line (2D), a bright sheet and a bright ball (3D): the Hessian's eigenvalues at
    their centre say which (one strongly negative for a ridge or sheet, all for a ball)."""
    stem = _stem(2, (2.0,))
    img = torch.zeros(1, 1, 41, 41)
    img[0, 0, :, 20] = 1.0                                      # a vertical line
    f = stem(img)[0]                                            # image, smooth, |grad|, l1, l2
    assert f.shape[0] == stem.channels(1) == 5
    l1, l2 = f[3, 20, 20], f[4, 20, 20]
    assert l1 < -0.05 and abs(l2) < 0.1 * abs(l1)
    assert abs(f[3, 20, 2]) < 0.01 * abs(l1)                    # far from the line: flat
    assert f[2, 20, 20] < 0.1 * f[2, 20, 18]                    # no gradient on the crest, some on its flank

    stem3 = _stem(3, (1.5,))
    sheet = torch.zeros(1, 1, 21, 21, 21)
    sheet[0, 0, 10] = 1.0
    e = stem3(sheet)[0, 3:6, 10, 10, 10]                        # ascending
    assert e[0] < -0.05 and abs(e[1]) < 0.1 * abs(e[0]) and abs(e[2]) < 0.1 * abs(e[0])
    zz, yy, xx = torch.meshgrid(*[torch.arange(21.0)] * 3, indexing="ij")
    ball = (((zz - 10) ** 2 + (yy - 10) ** 2 + (xx - 10) ** 2) <= 4).float()[None, None]
    e = stem3(ball)[0, 3:6, 10, 10, 10]
    assert (e < -0.05).all()


@pytest.fixture(scope="module")
def stem3d():
    torch.manual_seed(3)
    m = build_model(3, 1, 2, 4, 2, stem=(1, 2))
    m.train()
    with torch.no_grad():   # running statistics away from (0, 1)
        for _ in range(2):
            m(torch.randn(2, 1, 8, 24, 24) * 2 + 1)
    return m.eval()


def test_the_halo_covers_the_stem(stem3d):
    meta = stem3d.meta
    assert meta["stem"] == [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0]]
    plain = build_model(3, 1, 2, 4, 2)
    assert meta["receptive_field"] == plain.meta["receptive_field"] + 2 * stem3d.stem.radius()[0]
    m = stem3d.double()
    try:
        x = torch.randn(1, 1, 12, 12, 64, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(m(x)[0, :, 6, 6, 32].sum(), x)
        nz = torch.nonzero(g[0, 0].abs().sum((0, 1))).flatten()
        reach = max(32 - int(nz.min()), int(nz.max()) - 32)
        assert reach > plain.meta["receptive_field"] // 2    # the stem widens what a voxel sees...
        assert reach <= meta["halo"]                         # ...and the halo still covers it
    finally:
        stem3d.float()


@pytest.mark.parametrize("shape,tile", [((13, 37, 29), (8, 16, 16)), ((9, 40, 21), 8)])
def test_tiling_with_a_stem_is_seamless(stem3d, rng, shape, tile):
    img = rng.gamma(2.0, 50.0, shape).astype(np.float32)
    whole = predict(stem3d, img, tile=None, device="cpu")
    tiled = predict(stem3d, img, tile=tile, device="cpu")
    assert np.abs(whole - tiled).max() <= 1e-4


def test_a_2d_rgb_model_with_a_stem_tiles_seamlessly(rng):
    """A 2D stem (1, 2 px, per channel of an RGB image) predicts a tiled image as it predicts
    the whole one, the channels read from the last axis."""
    torch.manual_seed(5)
    m = build_model(2, 3, 2, 8, 2, stem=(1, 2))
    assert m.stem is not None and m.encoders[0][0].in_channels == m.stem.channels(3) == 3 * 9
    m.train()
    with torch.no_grad():   # running statistics away from (0, 1)
        for _ in range(2):
            m(torch.randn(2, 3, 32, 32) * 2 + 1)
    m.eval()
    img = rng.gamma(2.0, 50.0, (45, 61, 3)).astype(np.float32)
    whole = predict(m, img, tile=None, device="cpu", channel_axis=-1)
    tiled = predict(m, img, tile=16, device="cpu", channel_axis=-1)
    assert whole.shape == (2, 45, 61) and np.abs(whole - tiled).max() <= 1e-4


def test_anisotropic_voxels_get_one_physical_scale():
    m = build_model(3, 1, 2, 4, 2, spacing=(2.0, 0.5, 0.5), stem=(1, 2))
    assert m.meta["stem"] == [[0.25, 1.0, 1.0], [0.5, 2.0, 2.0]]
    assert m.meta["halo_axes"][0] < m.meta["halo_axes"][1]
    for bad, err in (((0, 1), ValueError), ((float("nan"),), ValueError), ("wide", TypeError), ((), ValueError)):
        with pytest.raises(err):
            build_model(3, 1, 2, 4, 2, stem=bad)


def test_saved_exported_and_older_models(tmp_path, stem3d, rng):
    from napari_unet.core.bioimageio_assets import architecture_text
    from napari_unet.core.bioimageio_export import _check_architecture, architecture_kwargs, architecture_source

    img = rng.normal(size=(8, 24, 24)).astype(np.float32)
    back = load_model(save_model(stem3d, tmp_path / "stem.pt"))
    assert back.meta["stem"] == stem3d.meta["stem"] and back.stem is not None
    np.testing.assert_array_equal(predict(back, img, tile=None, device="cpu"),
                                  predict(stem3d, img, tile=None, device="cpu"))
    assert architecture_kwargs(stem3d.meta)["stem"] == stem3d.meta["stem"]
    _check_architecture(architecture_source(), stem3d, stem3d.meta)   # raises if it differs
    assert "Hessian eigenvalues" in architecture_text(stem3d.meta)     # the package's description says so
    assert "U-Net, 3D, 2 poolings" in architecture_text(build_model(3, 1, 2, 4, 2).meta)
    traced = torch.jit.trace(stem3d, torch.randn(1, 1, 8, 16, 16), check_trace=False)
    x = torch.randn(1, 1, 8, 24, 24)
    assert torch.allclose(traced(x), stem3d(x), atol=1e-5)
    # a model saved before stems existed has no "stem" key and none is made
    old = build_model(3, 1, 2, 4, 2)
    del old.meta["stem"]
    again = model_from_state(old.meta, old.state_dict())
    assert again.stem is None


def test_training_builds_the_stem_it_is_told_to(rng, monkeypatch):
    import napari_unet.core.train as T

    img = rng.normal(size=(8, 32, 32)).astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    img[:, :, 16:] += 3
    lab[:, 4:28, 4:12] = 1
    lab[:, 4:28, 20:28] = 2
    opts = dict(steps=2, device="cpu", base_channels=4, depth=2)
    default = train(img, lab, dims=3, patch=(8, 16, 16), **opts)        # the default: 1, 2, 4 in 3D
    assert default.meta["stem"] == [[1.0] * 3, [2.0] * 3, [4.0] * 3] and default.stem is not None
    # ... and trains with the appearance prior and a weaker regulariser than a 3D model without
    # it (at full weight it widened thin walls; without either, a stack painted on one plane of
    # five scored under the forest and swung with the seed)
    assert default.meta["training"]["regulariser"] == {"edge_aware": T.REG_WEIGHT_3D_STEM, "halo_seen_at_step": None,
                                                       "edge_aware_off_at_step": None,
                                                       "appearance": T.APPEARANCE_WEIGHT}
    assert 0 < T.REG_WEIGHT_3D_STEM < T.REG_WEIGHT_3D
    monkeypatch.setattr(T, "STEM_3D", None)
    plain = train(img, lab, dims=3, patch=(8, 16, 16), **opts)
    assert plain.meta["stem"] is None and plain.stem is None
    assert plain.meta["training"]["regulariser"] == {"edge_aware": T.REG_WEIGHT_3D, "appearance": T.APPEARANCE_WEIGHT,
                                                     "halo_seen_at_step": None, "edge_aware_off_at_step": None}
    assert T.REG_WEIGHT_3D > 0 and T.APPEARANCE_WEIGHT > 0
    monkeypatch.setattr(T, "STEM_3D", (1.0, 2.0))
    m3 = train(img, lab, dims=3, patch=(8, 16, 16), **opts)
    assert m3.meta["stem"] == [[1.0] * 3, [2.0] * 3] and m3.stem is not None
    p2 = train(img[0], lab[0], dims=2, **opts)                           # STEM_2D is separate: off
    assert p2.meta["stem"] is None and p2.stem is None
    assert p2.meta["training"]["regulariser"]["edge_aware"] == T.REG_WEIGHT > 0
    monkeypatch.setattr(T, "STEM_2D", (1.0, 2.0))
    m2 = train(img[0], lab[0], dims=2, **opts)
    assert m2.meta["stem"] == [[1.0] * 2, [2.0] * 2] and m2.stem is not None
    # ... and a 2D model keeps the regulariser with it (without it BBBC039 and EM lines fell)
    assert m2.meta["training"]["regulariser"]["edge_aware"] == T.REG_WEIGHT
    # continuing keeps the model as it is, whatever the setting
    monkeypatch.setattr(T, "STEM_3D", None)
    again = train(img, lab, dims=3, steps=1, device="cpu", model=m3, patch=(8, 16, 16))
    assert again.meta["stem"] == m3.meta["stem"] and again.stem is not None
    assert again.meta["training"]["regulariser"]["edge_aware"] == T.REG_WEIGHT_3D_STEM   # the model's stem decides


@pytest.mark.parametrize("dims", [2, 3])
def test_the_prediction_memory_estimate_counts_every_channel_the_stem_adds(dims):
    """``tiling.bytes_per_voxel`` (torch-free) writes the stem's channel count again from the
    model's metadata: it must not fall behind :meth:`FilterStem.channels`."""
    from napari_unet.core.tiling import bytes_per_voxel

    stem = build_model(dims, 2, 2, 8, 2, stem=(1, 2, 4))
    as_wide = build_model(dims, stem.stem.channels(2), 2, 8, 2)   # its first layer's input, as an image
    assert bytes_per_voxel(stem.meta) >= bytes_per_voxel(as_wide.meta)
