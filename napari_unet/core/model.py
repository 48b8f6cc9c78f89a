"""One U-Net for 2D and 3D, with the metadata that travels with its weights.

No layer computes statistics over its input at inference (BatchNorm in eval mode uses its
running statistics), so a prediction does not depend on how the image is tiled.
"""
from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError, UserTypeError

__all__ = ["ConvBlock", "FilterStem", "UNet", "measure_receptive_field", "receptive_field",
           "default_class_names", "build_model", "model_meta", "model_from_meta", "model_from_state", "replace_head"]

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


class FilterStem(nn.Module):
    """Fixed (not trained) filters in front of the first layer: per input channel, the channel
    itself and, at each scale, its Gaussian smoothing, gradient magnitude and Hessian eigenvalues
    (ascending), derivatives scale-normalised: the responses a random forest classifies pixels
    with (ridges such as thin walls and membranes, blobs, edges), given to the network instead of
    learnt. ``build_model(stem=...)``; training builds it for a fresh 3D model by default
    (``train.STEM_3D``, and trains such a model without the regulariser: the real ovule stack
    0.601 -> 0.648 at 120 s) but not for a 2D one (``train.STEM_2D``; docs/quality.md,
    twenty-fifth to twenty-seventh sessions).

    ``sigmas``: one sequence per scale with one Gaussian sigma per spatial axis, in voxels (an
    anisotropic stack's coarse axis gets a smaller one, so that each scale has one physical size).
    Derivatives are central differences of the smoothed image; the borders are replicated, so a
    tile's responses equal the whole image's wherever the tile's halo covers :meth:`radius`.
    """

    def __init__(self, dims: int, sigmas: Any):
        super().__init__()
        self.dims = dims
        self.sigmas = [[float(v) for v in s] for s in sigmas]
        if not self.sigmas or any(len(s) != dims or min(s) <= 0 for s in self.sigmas):
            raise UserError(f"stem sigmas must give {dims} positive numbers per scale, got {sigmas!r}")
        self.kernels = [[self._gauss(v) for v in s] for s in self.sigmas]

    @staticmethod
    def _gauss(sigma: float) -> torch.Tensor:
        r = int(math.ceil(3 * sigma))
        t = torch.arange(-r, r + 1, dtype=torch.float64)
        g = torch.exp(-t * t / (2 * sigma * sigma))
        return (g / g.sum()).float()

    def channels(self, in_channels: int) -> int:
        return in_channels * (1 + len(self.sigmas) * (2 + self.dims))

    def radius(self) -> list[int]:
        """Per spatial axis, how far an output voxel looks into the input."""
        return [max(int(math.ceil(3 * s[a])) for s in self.sigmas) + 2 for a in range(self.dims)]

    def _pad(self, x: torch.Tensor, axis: int, r: int) -> torch.Tensor:
        pad = [0] * (2 * self.dims)
        pad[2 * (self.dims - 1 - axis)] = pad[2 * (self.dims - 1 - axis) + 1] = r
        return F.pad(x, pad, mode="replicate")

    def _d(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        n, a = x.shape[axis + 2], axis + 2
        xp = self._pad(x, axis, 1)
        return 0.5 * (xp.narrow(a, 2, n) - xp.narrow(a, 0, n))

    def _dd(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        n, a = x.shape[axis + 2], axis + 2
        xp = self._pad(x, axis, 1)
        return xp.narrow(a, 2, n) - 2 * x + xp.narrow(a, 0, n)

    def _eigvals(self, h: list) -> list:
        """Eigenvalues (ascending) of the symmetric Hessian given as its upper triangle, row by
        row: closed form (2x2; 3x3 by the trigonometric method), per voxel."""
        if self.dims == 1:
            return [h[0]]
        if self.dims == 2:
            a, b, c = h
            m, d = 0.5 * (a + c), torch.sqrt((0.5 * (a - c)) ** 2 + b * b)
            return [m - d, m + d]
        a11, a12, a13, a22, a23, a33 = h
        q = (a11 + a22 + a33) / 3
        b11, b22, b33 = a11 - q, a22 - q, a33 - q
        p = torch.sqrt((b11 * b11 + b22 * b22 + b33 * b33 + 2 * (a12 * a12 + a13 * a13 + a23 * a23)) / 6)
        p = p.clamp_min(1e-12)
        det = b11 * (b22 * b33 - a23 * a23) - a12 * (a12 * b33 - a23 * a13) + a13 * (a12 * a23 - b22 * a13)
        phi = torch.acos((det / (2 * p ** 3)).clamp(-1.0, 1.0)) / 3
        hi = q + 2 * p * torch.cos(phi)
        lo = q + 2 * p * torch.cos(phi + 2 * math.pi / 3)
        return [lo, 3 * q - hi - lo, hi]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[0], x.shape[1]
        spatial = x.shape[2:]
        dt = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast(x.device.type, enabled=False):
            v = x.reshape(n * c, 1, *spatial).to(dt)
            conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
            out = [v]
            for sig, ks in zip(self.sigmas, self.kernels):
                g = v
                for axis, k in enumerate(ks):
                    shape = [1] * self.dims
                    shape[axis] = k.numel()
                    g = conv(self._pad(g, axis, k.numel() // 2), k.to(g).reshape(1, 1, *shape))
                grad = [self._d(g, a) * sig[a] for a in range(self.dims)]
                hess = [self._dd(g, a) * sig[a] ** 2 if a == b else self._d(grad[b], a) * sig[a]
                        for a in range(self.dims) for b in range(a, self.dims)]
                mag = torch.sqrt(sum(q * q for q in grad) + 1e-12)
                out += [g, mag] + self._eigvals(hess)
            feats = torch.cat(out, 1).reshape(n, -1, *spatial).to(x.dtype)
        if self.dims == 3 and x.is_contiguous(memory_format=torch.channels_last_3d):
            feats = feats.contiguous(memory_format=torch.channels_last_3d)   # as the input came
        return feats


class UNet(nn.Module):
    """U-Net with ``depth`` poolings; ``spatial_dims`` 2 or 3 (1 is used to measure the receptive field).

    ``pooling``: per level, the pooling factor (1 or 2) of each spatial axis (anisotropic
    voxels); default 2 everywhere. Input sizes must be multiples of the product of an axis's
    factors (``2**depth`` by default) along that axis (``predict`` pads).
    ``stem``: the sigmas of a :class:`FilterStem` in front of the first layer (None: the image
    goes in as it is).
    Output: ``classes`` logits per pixel. ``self.meta`` holds JSON-serialisable metadata.
    """

    def __init__(self, dims: int = 2, in_channels: int = 1, classes: int = 2,
                 base_channels: int = 32, depth: int = 4, *, norm: bool = True,
                 pool: str = "max", pooling: Any = None, stem: Any = None):
        super().__init__()
        if dims not in (1, 2, 3):
            raise UserError(f"dims must be 2 or 3, got {dims!r}")
        self.stem = None if stem is None else FilterStem(dims, stem)
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
        cin = in_channels if self.stem is None else self.stem.channels(in_channels)
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
        if self.stem is not None:
            x = self.stem(x)
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
                spacing: Any = None, stem: Any = None) -> UNet:
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
        stem: the scales (Gaussian sigmas, in units of the finest voxel side) of a
            :class:`FilterStem` in front of the first layer, e.g. ``(1, 2, 4)``; None: none.

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
    stem_sigmas = None if stem is None else stem_axes(stem, spacing, dims)
    model = UNet(dims, in_channels, classes, base_channels, depth, pooling=pooling, stem=stem_sigmas)
    reach = [0] * dims if model.stem is None else model.stem.radius()
    left, right = receptive_field(depth)
    left, right = left + max(reach), right + max(reach)
    g = 2 ** depth
    grid_axes, halo_axes, rf_axes = [], [], []
    for axis_factors, extra in zip(zip(*pooling), reach):
        ga = math.prod(axis_factors)
        la, ra = receptive_field(depth, axis_factors)
        la, ra = la + extra, ra + extra
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
        "stem": stem_sigmas,
        "normalization": {"method": "percentile", "low": 1.0, "high": 99.8, "per_channel": True},
        "training": None,
    }
    return model


def stem_axes(scales: Any, spacing: Any, dims: int) -> list[list[float]]:
    """Per scale, one sigma per axis in voxels: ``scales`` in units of the finest voxel side,
    smaller along coarser axes (``spacing``: per-axis voxel size, None: isotropic)."""
    try:
        scales = [float(s) for s in scales]
    except (TypeError, ValueError):
        raise UserTypeError(f"stem must be a sequence of positive numbers (sigmas), got {scales!r}") from None
    if not scales or any(not (math.isfinite(s) and s > 0) for s in scales):
        raise UserError(f"stem must be a sequence of positive numbers (sigmas), got {scales!r}")
    ratio = [1.0] * dims if spacing is None else [min(spacing) / float(v) for v in spacing]
    return [[round(s * r, 4) for r in ratio] for s in scales]


def model_meta(model: nn.Module) -> dict[str, Any]:
    meta = getattr(model, "meta", None)
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise UserTypeError("expected a model made by napari_unet.build_model or load_model "
                        f"(got {type(model).__name__} without napari-unet metadata)")
    return meta


def model_from_meta(meta: dict[str, Any]) -> UNet:
    """A freshly initialised network of the architecture ``meta`` describes (a model's metadata)."""
    model = UNet(meta["dims"], meta["in_channels"], meta["classes"], meta["base_channels"],
                 meta["depth"], pooling=meta.get("pooling"),   # no "pooling": saved before schedules
                 stem=meta.get("stem"))                        # no "stem": saved before stems
    model.meta = dict(meta)
    return model


def model_from_state(meta: dict[str, Any], state: dict[str, torch.Tensor]) -> UNet:
    """Rebuild a model from its metadata and state dict (as saved by ``save_model``)."""
    model = model_from_meta(meta)
    model.load_state_dict(state, strict=True)
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
