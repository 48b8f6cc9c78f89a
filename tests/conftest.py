import os

import numpy as np
import pytest

os.environ.setdefault("NAPARI_UNET_TEST", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny2d():
    """A tiny random 2D network (depth 3, 8 features): fast, same code paths as the default."""
    import torch

    from napari_unet import build_model

    torch.manual_seed(0)
    return build_model(dims=2, classes=3, base_channels=8, depth=3)


@pytest.fixture(scope="session")
def tiny3d():
    import torch

    from napari_unet import build_model

    torch.manual_seed(1)
    return build_model(dims=3, classes=2, base_channels=4, depth=2)


@pytest.fixture
def model_file(tmp_path):
    """A saved tiny untrained 2D model (2 classes, 4 features, depth 2): for CLI plumbing tests.
    (A test module may define its own ``model_file`` in place of this one.)"""
    import torch

    from napari_unet import build_model, save_model

    torch.manual_seed(0)
    f = tmp_path / "model.pt"
    save_model(build_model(dims=2, classes=2, base_channels=4, depth=2), f)
    return f
