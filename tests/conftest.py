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
