import numpy as np
import pytest
import torch

from napari_unet import build_model
from napari_unet.core.model import measure_receptive_field, replace_head


@pytest.mark.parametrize("dims,shape", [(2, (2, 1, 64, 48)), (3, (1, 1, 16, 32, 24))])
def test_shapes_and_backward(dims, shape):
    m = build_model(dims=dims, classes=3, base_channels=4, depth=3 if dims == 2 else 2)
    x = torch.randn(*shape, requires_grad=True)
    y = m(x)
    assert y.shape == (shape[0], 3) + shape[2:]
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_meta_is_complete():
    m = build_model(dims=2, in_channels=2, classes=4, base_channels=8, depth=3)
    meta = m.meta
    assert meta["dims"] == 2 and meta["in_channels"] == 2 and meta["classes"] == 4
    assert meta["class_values"] == [1, 2, 3, 4]
    assert meta["class_names"][0] == "background" and len(meta["class_names"]) == 4
    assert meta["grid"] == 8
    assert meta["halo"] % meta["grid"] == 0
    assert meta["receptive_field"] > 2 * 8
    assert meta["normalization"]["method"] == "percentile"


@pytest.mark.parametrize("kwargs,err", [
    (dict(dims=4), ValueError), (dict(classes=1), ValueError), (dict(depth=0), ValueError),
    (dict(base_channels=2.5), TypeError), (dict(in_channels=0), ValueError),
    (dict(classes=3, class_names=["a"]), ValueError),
])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        build_model(**kwargs)


def test_no_statistics_over_the_tile():
    """Only BatchNorm (running statistics in eval) -- no GroupNorm/InstanceNorm/LayerNorm."""
    m = build_model(dims=3, base_channels=4, depth=2)
    bad = (torch.nn.GroupNorm, torch.nn.InstanceNorm1d, torch.nn.InstanceNorm2d,
           torch.nn.InstanceNorm3d, torch.nn.LayerNorm)
    assert not any(isinstance(mod, bad) for mod in m.modules())


def test_receptive_field_bounds_the_real_2d_network():
    """The measured 1D extent bounds the impulse response of a real 2D network."""
    depth = 2
    left, right = measure_receptive_field(depth)
    torch.manual_seed(0)  # a random 4-channel net can have a dead (all-zero) response
    m = build_model(dims=2, classes=2, base_channels=4, depth=depth).double().eval()
    n = 96
    x = torch.randn(1, 1, n, n, dtype=torch.float64, requires_grad=True)
    for pos in (44, 45, 47):
        (g,) = torch.autograd.grad(m(x)[0, 1, pos, pos], x)
        nz = torch.nonzero(g[0, 0].abs().sum(0)).flatten()
        assert pos - int(nz.min()) <= left and int(nz.max()) - pos <= right
    # and the halo covers it
    assert m.meta["halo"] >= max(left, right)


def test_replace_head_keeps_encoder():
    m = build_model(dims=2, classes=2, base_channels=4, depth=2)
    m2 = replace_head(m, 4, ["bg", "a", "b", "c"])
    assert m2.meta["classes"] == 4 and m2.meta["class_names"][1] == "a"
    assert m.meta["classes"] == 2
    for (k, a), b in zip(m.encoders.state_dict().items(), m2.encoders.state_dict().values()):
        assert torch.equal(a, b), k
    assert m2(torch.zeros(1, 1, 16, 16)).shape[1] == 4
