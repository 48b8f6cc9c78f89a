"""One U-Net for 2D and 3D, with the metadata that travels with its weights.

No layer computes statistics over its input at inference (BatchNorm in eval mode uses its
running statistics), so a prediction does not depend on how the image is tiled.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from .errors import UserError, UserTypeError

__all__ = ["ConvBlock", "UNet", "measure_receptive_field", "receptive_field",
           "default_class_names", "build_model", "model_meta", "model_from_state", "replace_head"]

MODEL_FORMAT = "napari-unet-model"
MODEL_FORMAT_VERSION = 1

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


class ConvBlock(nn.Sequential):
    """Two (conv 3, BatchNorm, ReLU) layers."""

    def __init__(self, dims: int, cin: int, cout: int, norm: bool = True):
        conv, bn = _CONV[dims], _BN[dims]
        layers: list[nn.Module] = []
        for c in (cin, cout):
            layers.append(conv(c, cout, 3, padding=1, bias=not norm))
            if norm:
                layers.append(bn(cout))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class UNet(nn.Module):
    """U-Net with ``depth`` poolings; ``spatial_dims`` 2 or 3 (1 is used to measure the receptive field).

    ``pooling``: per level, the pooling factor (1 or 2) of each spatial axis (anisotropic
    voxels); default 2 everywhere. Input sizes must be multiples of the product of an axis's
    factors (``2**depth`` by default) along that axis (``predict`` pads).
    Output: ``classes`` logits per pixel. ``self.meta`` holds JSON-serialisable metadata.
    """

    def __init__(self, dims: int = 2, in_channels: int = 1, classes: int = 2,
                 base_channels: int = 32, depth: int = 4, *, norm: bool = True,
                 pool: str = "max", pooling: Any = None):
        super().__init__()
        if dims not in (1, 2, 3):
            raise UserError(f"dims must be 2 or 3, got {dims!r}")
        self.dims = dims
        self.depth = depth
        if pooling is None:
            factors: list[Any] = [2] * depth
        else:
            if len(pooling) != depth or any(len(f) != dims or any(k not in (1, 2) for k in f) for f in pooling):
                raise UserError(f"pooling must give {depth} levels of {dims} factors 1 or 2, got {pooling!r}")
            factors = [tuple(int(k) for k in f) for f in pooling]
        self.factors = factors
        chans = [base_channels * 2 ** i for i in range(depth + 1)]
        self.encoders = nn.ModuleList()
        cin = in_channels
        for c in chans[:-1]:
            self.encoders.append(ConvBlock(dims, cin, c, norm))
            cin = c
        pool_cls = (_MAXPOOL if pool == "max" else _AVGPOOL)[dims]
        self.pools = nn.ModuleList(pool_cls(f, stride=f) for f in factors)
        self.bottleneck = ConvBlock(dims, chans[-2], chans[-1], norm)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for c_low, c, f in zip(chans[:0:-1], chans[-2::-1], factors[::-1]):
            self.ups.append(_TCONV[dims](c_low, c, f, stride=f))
            self.decoders.append(ConvBlock(dims, 2 * c, c, norm))
        self.head = _CONV[dims](chans[0], classes, 1)
        self.meta: dict[str, Any] = {}

    @property
    def grid(self) -> int:
        """Input sizes and tile origins must be multiples of this (along every axis)."""
        return 2 ** self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc, pool in zip(self.encoders, self.pools):
            x = enc(x)
            skips.append(x)
            x = pool(x)
        x = self.bottleneck(x)
        for up, dec in zip(self.ups, self.decoders):
            x = up(x)
            x = dec(torch.cat((skips.pop(), x), dim=1))
        return self.head(x)


def measure_receptive_field(depth: int, factors: tuple[int, ...] | None = None) -> tuple[int, int]:
    """Measure how far (left, right) an output pixel looks into the input, by impulse response.

    ``factors``: this axis's pooling factor at each level (default 2 at every level).

    The extent depends only on the layer geometry (kernel sizes, strides), not on the channel
    count or the number of spatial dims, so it is measured on a 1D, 1-channel twin with
    positive weights and average pooling (max pooling's gradient would hide inputs that
    matter for other images). Every output phase of the pooling grid is probed.
    """
    pooling = None if factors is None else [(int(f),) for f in factors]
    twin = UNet(1, 1, 1, base_channels=1, depth=depth, norm=False, pool="avg", pooling=pooling).double()
    with torch.no_grad():
        for p in twin.parameters():
            p.fill_(0.5)
    g = 2 ** depth if factors is None else math.prod(factors)
    n = 32 * 2 ** depth  # long enough that no probe reaches the ends (checked below)
    x = torch.ones(1, 1, n, dtype=torch.float64, requires_grad=True)
    y = twin(x)
    left = right = 0
    centre = (n // 2) // g * g
    for phase in range(g):
        pos = centre + phase
        (grad,) = torch.autograd.grad(y[0, 0, pos], x, retain_graph=True)
        nz = torch.nonzero(grad[0, 0]).flatten()
        left = max(left, pos - int(nz.min()))
        right = max(right, int(nz.max()) - pos)
        if int(nz.min()) == 0 or int(nz.max()) == n - 1:
            raise RuntimeError("receptive-field probe too short")  # pragma: no cover
    return left, right


_RF_CACHE: dict[Any, tuple[int, int]] = {}


def receptive_field(depth: int, factors: tuple[int, ...] | None = None) -> tuple[int, int]:
    """(left, right) extent for ``depth`` poolings (``factors``: one axis's, per level)."""
    key = depth if factors is None or all(f == 2 for f in factors) else (depth, tuple(factors))
    if key not in _RF_CACHE:
        _RF_CACHE[key] = measure_receptive_field(depth, None if isinstance(key, int) else factors)
    return _RF_CACHE[key]


def default_class_names(classes: int) -> list[str]:
    if classes == 2:
        return ["background", "foreground"]
    return ["background"] + [f"class {i}" for i in range(2, classes + 1)]


def build_model(dims: int = 2, in_channels: int = 1, classes: int = 2, base_channels: int = 32,
                depth: int = 4, *, class_names: list[str] | None = None,
                spacing: Any = None) -> UNet:
    """Build a U-Net for ``dims`` 2 or 3 with metadata for prediction and training.

    Args:
        dims: 2 (images, or stacks slice by slice) or 3 (volumes).
        in_channels: image channels the network takes.
        classes: the number of label values 1..K (class 1 is background by convention), >= 2.
        base_channels: feature channels of the first level (doubled at each pooling).
        depth: the number of poolings, 1..6 (``2**depth`` is the tiling grid).
        class_names: one name per class (default: "background", "class 2", ...).
        spacing: the voxel size, ``dims`` numbers (Z, Y, X); anisotropic voxels get a per-axis
            pooling schedule (an axis is pooled only while its spacing is below twice the
            finest, see :mod:`napari_unet.core.pooling`). Default: isotropic pooling.

    Returns:
        A :class:`UNet` (a ``torch.nn.Module``) whose ``meta`` holds dims, channels, classes,
        class names, grid and halo (and per axis: pooling, grid_axes, halo_axes, spacing).

    Raises:
        TypeError: a count that is not an int.
        ValueError: a value out of range, or class names that do not match ``classes``.
    """
    for name, v, lo in (("in_channels", in_channels, 1), ("classes", classes, 2),
                        ("base_channels", base_channels, 1), ("depth", depth, 1)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise UserTypeError(f"{name} must be an int, got {type(v).__name__}")
        if v < lo:
            raise UserError(f"{name} must be at least {lo}, got {v}")
    if dims not in (2, 3) or isinstance(dims, bool):
        raise UserError(f"dims must be 2 or 3, got {dims!r}")
    if depth > 6:
        raise UserError(f"depth must be at most 6, got {depth}")
    if class_names is None:
        class_names = default_class_names(classes)
    if len(class_names) != classes:
        raise UserError(f"{len(class_names)} class names for {classes} classes")
    from .pooling import check_spacing, pooling_schedule

    spacing = check_spacing(spacing, dims)
    pooling = pooling_schedule(spacing, depth, dims)
    model = UNet(dims, in_channels, classes, base_channels, depth, pooling=pooling)
    left, right = receptive_field(depth)
    g = 2 ** depth
    grid_axes, halo_axes, rf_axes = [], [], []
    for axis_factors in zip(*pooling):
        ga = math.prod(axis_factors)
        la, ra = receptive_field(depth, axis_factors)
        grid_axes.append(ga)
        halo_axes.append(int(math.ceil(max(la, ra) / ga) * ga))
        rf_axes.append(la + ra + 1)
    model.meta = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "architecture": "unet",
        "dims": dims,
        "in_channels": in_channels,
        "classes": classes,
        "class_values": list(range(1, classes + 1)),
        "class_names": list(class_names),
        "base_channels": base_channels,
        "depth": depth,
        "grid": g,
        "receptive_field": left + right + 1,
        "halo": int(math.ceil(max(left, right) / g) * g),
        "spacing": None if spacing is None else list(spacing),
        "pooling": pooling,
        "grid_axes": grid_axes,
        "halo_axes": halo_axes,
        "receptive_field_axes": rf_axes,
        "normalization": {"method": "percentile", "low": 1.0, "high": 99.8, "per_channel": True},
        "training": None,
    }
    return model


def model_meta(model: nn.Module) -> dict[str, Any]:
    meta = getattr(model, "meta", None)
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise UserTypeError("expected a model made by napari_unet.build_model or load_model "
                        f"(got {type(model).__name__} without napari-unet metadata)")
    return meta


def model_from_state(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> UNet:
    """Rebuild a model from its metadata and state dict (as saved by ``save_model``)."""
    model = UNet(meta["dims"], meta["in_channels"], meta["classes"], meta["base_channels"],
                 meta["depth"], pooling=meta.get("pooling"))  # no "pooling": saved before schedules
    model.load_state_dict(state, strict=True)
    model.meta = dict(meta)
    return model.eval()


def replace_head(model: UNet, classes: int, class_names: list[str] | None = None) -> UNet:
    """Return a copy of ``model`` with a fresh head for ``classes`` classes (encoder kept)."""
    new = copy.deepcopy(model)
    cin = new.head.in_channels
    new.head = _CONV[new.dims](cin, classes, 1)
    new.meta = dict(model.meta)
    new.meta["classes"] = classes
    new.meta["class_values"] = list(range(1, classes + 1))
    new.meta["class_names"] = list(class_names or default_class_names(classes))
    return new
