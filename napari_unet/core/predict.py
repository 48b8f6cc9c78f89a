"""Seamless tiled prediction for 2D images, 2D models on stacks, and 3D models on volumes.

Tiling is crop-based: every tile's input is its core plus a halo of at least the model's
receptive field, clipped to the image; tile origins sit on the pooling grid; inputs are padded
at the far end exactly as the whole image would be; intensity statistics are computed once for
the whole image. The result therefore equals the whole-image prediction (to float rounding)
whatever the tile size. Cores are written straight into one preallocated output.
"""
from __future__ import annotations

import copy
import itertools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .errors import UserError, UserTypeError, option, say
from . import device as _device  # available_memory looked up at call time (tests patch it)
from .device import autocast_dtype, resolve_device
from .model import model_meta
from .normalize import apply_stats, percentile_stats

# Largest share of the free memory that "auto" lets one batch of tiles use, and a cap on CPU
# (bigger tiles stop paying off there, and the rest of the machine needs memory too).
# 3D gets more: with a halo of 112 voxels (depth 4) a 3D tile's input is (core + 224)^3-ish, so
# a 1.5 GiB cap left 32x512x512 with 16-voxel in-plane cores and 175x more voxels computed than
# output (benchmarks/bench.py, "overlap redundancy"). A 3D pass is compute-bound (~0.1-0.2
# Mvoxel/s on 2 cores), so memory spent on larger tiles buys time almost linearly.
GPU_BUDGET_SHARE = 0.5
CPU_BUDGET_SHARE = 0.25
CPU_BUDGET_CAP = 1536 << 20
CPU_BUDGET_SHARE_3D = 0.35
CPU_BUDGET_CAP_3D = 8 << 30
CPU_MIN_BATCH_VOXELS = 1 << 18
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5
# Cost of one forward call in the tile search, in voxels of work (weights reorder, Python and
# dispatch overhead, small-tensor inefficiency); ties between equal-work tilings go to fewer tiles.
TILE_OVERHEAD_VOXELS = {2: 1 << 15, 3: 1 << 16}


@dataclass(frozen=True)
class PredictProgress:
    """One batch of tiles is done: ``done`` of ``total`` tiles."""

    done: int
    total: int
    tile_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class PredictRetry:
    """The device ran out of memory; starting again with a smaller tile (or batch)."""

    tile: tuple[int, ...]
    reason: str


@dataclass(frozen=True)
class PredictDone:
    """Last event: the probabilities ``(classes, *spatial)``."""

    probabilities: np.ndarray


# ----------------------------------------------------------------------------- input checks

def as_channels_first(image: Any, name: str, dims: int, channel_axis: int | None,
                      in_channels: int | None = None) -> np.ndarray:
    """Check an image for a ``dims``-D model and return a channels-first view (no copy).

    Shared by prediction and training so that both accept and refuse the same images with the
    same messages. ``in_channels``: the model's channel count, when there is a model.
    """
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        if isinstance(image, (list, tuple)):
            image = np.asarray(image)
        else:
            raise UserTypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if image.dtype.kind not in "buif":
        raise UserTypeError(f"{name} dtype {image.dtype} is not supported; use an integer or float image")
    if image.size == 0:
        raise UserError(f"{name} is empty (shape {image.shape})")
    if channel_axis is not None:
        if not isinstance(channel_axis, (int, np.integer)) or not -image.ndim <= channel_axis < image.ndim:
            raise UserError(f"{option('channel_axis', repr(channel_axis))} is out of range for {name} of shape {image.shape}")
        if in_channels is not None and image.shape[channel_axis] != in_channels:
            raise UserError(f"{name} has {image.shape[channel_axis]} channels on axis {channel_axis} "
                             f"but the model expects {in_channels}")
        image = np.moveaxis(image, channel_axis, 0)
    else:
        if in_channels not in (None, 1):
            raise UserError(f"the model expects {in_channels} channels: pass {option('channel_axis', 'N')} to say which "
                             f"axis of {name} holds them")
        if image.ndim == 3 and image.shape[-1] in (3, 4) and min(image.shape[:2]) > 4:
            raise UserError(f"{name} of shape {image.shape} looks like RGB(A) but takes 1 channel "
                             f"here: convert it to grayscale, or pass {option('channel_axis', -1)} to use its "
                             "channels (with a model trained on them)")
        image = image[None]
    spatial = image.ndim - 1
    if dims == 2 and spatial not in (2, 3):
        raise UserError(f"a 2D model{say(' (dims=2)', '')} takes (Y, X) or (Z, Y, X) images; {name} has "
                         f"{spatial} spatial dims (shape {image.shape[1:]})")
    if dims == 3 and spatial != 3:
        hint = say("; use a 2D model (dims=2)", "; use a 2D model (train with --dims 2)") if spatial == 2 else ""
        raise UserError(f"a 3D model{say(' (dims=3)', '')} takes (Z, Y, X) volumes; {name} has {spatial} "
                         f"spatial dims (shape {image.shape[1:]}){hint}")
    return image


def prepare_image(image: Any, meta: dict, channel_axis: int | None) -> np.ndarray:
    """Check ``image`` against the model and return a channels-first view (no copy)."""
    return as_channels_first(image, "image", meta["dims"], channel_axis, meta["in_channels"])


F32_MAX = float(np.finfo(np.float32).max)


def check_finite(image: np.ndarray, chunk_bytes: int = 64 << 20, *, name: str = "image",
                 doing: str = "predicting") -> None:
    """Raise UserError if a float image holds NaN/inf, or (float64) finite values beyond the
    float32 range the model computes in (checked in chunks, no full-size temp)."""
    if image.dtype.kind != "f":
        return
    flat_axis = int(np.argmax(image.shape))
    n = image.shape[flat_axis]
    per = max(1, int(chunk_bytes // max(1, image.nbytes // n)))
    wide = image.dtype.itemsize > 4
    for s in range(0, n, per):
        part = np.take(image, range(s, min(n, s + per)), axis=flat_axis) if flat_axis else image[s:s + per]
        if not np.isfinite(part).all():
            raise UserError(f"{name} contains NaN or infinite values; replace them "
                            f"(e.g. numpy.nan_to_num) before {doing}")
        if wide and part.size:
            big = float(np.abs(part).max())
            if big > F32_MAX:
                raise UserError(f"{name} holds values up to {big:.3g}, beyond the float32 range "
                                f"(about {F32_MAX:.3g}) the model computes in; rescale it before {doing}")


# ----------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class AxisTile:
    core_start: int
    core_stop: int
    in_start: int
    in_stop: int
    padded: int  # input length after padding the far end to the grid


def plan_axis(size: int, core: int, halo: int, grid: int) -> list[AxisTile]:
    padded_whole = -(-size // grid) * grid
    if core >= size:
        return [AxisTile(0, size, 0, size, padded_whole)]
    n = -(-size // core)
    core = -(-(-(-size // n)) // grid) * grid  # balanced cores on the grid
    tiles = []
    for cs in range(0, size, core):
        ce = min(size, cs + core)
        a, b = max(0, cs - halo), min(size, ce + halo)
        tiles.append(AxisTile(cs, ce, a, b, -(-(b - a) // grid) * grid))
    return tiles


def bytes_per_voxel(meta: dict, itemsize: int = 4) -> float:
    """Estimated peak activation memory per input voxel of one forward pass (inference).

    Counts the channels alive at the peak (skips of every level, the full-resolution decoder:
    upsampled + concatenated + conv outputs, then logits and softmax) for the BatchNorm-folded
    runner that :func:`inference_copy` makes. Calibrated on CPU against peak RSS growth of one
    pass (``benchmarks/predict_speed.py``): 2D base 32 depth 4 channels-last measures ~0.8-1.0x
    of this estimate, 3D base 32 depth 4 channels-last-3d ~0.9-1.0x at 32x128^2 to 32x368^2.
    """
    dims, base, depth = meta["dims"], meta["base_channels"], meta["depth"]
    skips = sum(base * 2 ** lvl / 2 ** (lvl * dims) for lvl in range(depth + 1))
    chans = skips + 4 * base + 3 * meta["classes"] + meta["in_channels"]
    return chans * itemsize * (1.2 if dims == 2 else 1.1)


def _axis_options(size: int, g: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(core, largest padded input, sum of padded inputs, tiles) for each balanced split.

    Distinct cores only: about 2 * sqrt(size / g) of them, so the search stays small."""
    opts: dict[int, tuple[int, int, int, int]] = {}
    cells = -(-size // g)
    for n in range(1, cells + 1):
        core = -(-(-(-size // n)) // g) * g
        if core not in opts:
            t = plan_axis(size, core, halo, g)
            opts[core] = (core, max(a.padded for a in t), sum(a.padded for a in t), len(t))
        if core <= g:
            break
    return list(opts.values())


def choose_tile(spatial: Sequence[int], meta: dict, budget: float, itemsize: int) -> tuple[int, ...]:
    """Cores (on the grid) that need the least work while one tile's input fits ``budget`` bytes.

    Every balanced split of every axis is considered; the work of a tiling is the voxels it
    computes (cores + halos + grid padding, summed over tiles: a product of per-axis sums) plus
    a fixed per-tile cost. Among tilings whose largest input fits the budget the cheapest wins;
    if none fits, the cheapest with the smallest tiles. With a small budget and a large halo (3D)
    this keeps whole axes (e.g. a thin Z) and splits the others as little as possible, instead
    of shrinking every axis.
    """
    g, halo = meta["grid"], meta["halo"]
    bpv = bytes_per_voxel(meta, itemsize)
    overhead = TILE_OVERHEAD_VOXELS.get(len(spatial), 1 << 16)
    per_axis = [_axis_options(int(s), g, halo) for s in spatial]
    max_in = np.ones((1,), np.float64)
    work = np.ones((1,), np.float64)
    count = np.ones((1,), np.float64)
    for opts in per_axis:  # outer products over axes, flattened (C order = itertools.product)
        a = np.array(opts, np.float64)
        max_in = (max_in[:, None] * a[None, :, 1]).ravel()
        work = (work[:, None] * a[None, :, 2]).ravel()
        count = (count[:, None] * a[None, :, 3]).ravel()
    cost = work + overhead * count
    fits = max_in * bpv <= budget
    if not fits.any():  # nothing fits: the smallest tiles, and of those the least work
        fits = max_in <= max_in.min()
    idx = int(np.argmin(np.where(fits, cost, np.inf)))
    choice = []
    for opts in reversed(per_axis):
        idx, k = divmod(idx, len(opts))
        choice.append(opts[k][0])
    return tuple(reversed(choice))


def _normalise_tile_arg(tile: Any, nd: int, grid: int) -> tuple[int, ...] | None:
    if tile is None:
        return None
    if isinstance(tile, (int, np.integer)) and not isinstance(tile, bool):
        tile = (int(tile),) * nd
    elif isinstance(tile, (tuple, list)):
        if len(tile) != nd:
            raise UserError(f"tile {tuple(tile)} must have {nd} entries for this model and image")
        tile = tuple(int(t) for t in tile)
    else:
        raise UserTypeError(f"tile must be 'auto', None, an int or a tuple, got {tile!r}")
    if any(t < 1 for t in tile):
        raise UserError(f"tile sizes must be positive, got {tile}")
    return tuple(max(grid, -(-t // grid) * grid) for t in tile)


# ----------------------------------------------------------------------------- execution

def _use_channels_last(dev: torch.device, dims: int) -> bool:
    # Measured (benchmarks/predict_speed.py, 2 CPU cores, BatchNorm folded): channels-last is
    # faster with oneDNN for 2D (1.13 vs ~0.6 Mpx/s at 256^2) and channels-last-3d for 3D
    # (1.4-1.45x interleaved at 32x256^2 and 32x368^2, ~10-20% less peak memory). CUDA: 2D
    # channels-last suits cuDNN's tensor-core kernels; 3D stays contiguous there because
    # channels-last-3d has not been measured on a GPU (none on the tuning machine).
    return dims == 2 or dev.type == "cpu"


def _memory_format(dims: int) -> torch.memory_format:
    return torch.channels_last_3d if dims == 3 else torch.channels_last


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold eval-mode BatchNorm into the preceding convolution, in place (inference only).

    A conv followed by an eval BatchNorm is one affine map, so the folded network computes the
    same function (to float rounding, ~1e-6) with one full-resolution pass less per conv:
    ~10-20% faster on CPU and less peak memory.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for mod in model.modules():
        if not isinstance(mod, nn.Sequential):
            continue
        for i in range(len(mod) - 1):
            conv, bn = mod[i], mod[i + 1]
            if (isinstance(conv, nn.modules.conv._ConvNd) and not conv.transposed
                    and isinstance(bn, nn.modules.batchnorm._BatchNorm)
                    and bn.track_running_stats and bn.running_mean is not None
                    and bn.num_features == conv.out_channels):
                mod[i] = fuse_conv_bn_eval(conv, bn)
                mod[i + 1] = nn.Identity()
    return model


def inference_copy(model: torch.nn.Module, dev: torch.device, channels_last: bool) -> torch.nn.Module:
    """An eval-mode copy of ``model`` on ``dev`` (BatchNorm folded; channels-last or
    channels-last-3d if asked), weights copied once."""
    runner = copy.deepcopy(model).eval()
    fold_batchnorm(runner)
    for p in runner.parameters():
        p.requires_grad_(False)
    runner.to(dev)
    runner.inference_device = dev  # frozen for this device: iter_predict uses it without copying
    if channels_last:
        dims = getattr(runner, "dims", None) or model_meta(model)["dims"]
        runner.to(memory_format=_memory_format(dims))
    return runner


# Results larger than this share of free RAM are written to disk (memory-mapped) by the
# napari-unet command and the plugin, rather than held in memory.
OUTPUT_RAM_SHARE = 0.4


def fits_in_ram(nbytes: int) -> bool:
    """Whether ``nbytes`` of results may be held in RAM (see ``OUTPUT_RAM_SHARE``)."""
    return nbytes <= OUTPUT_RAM_SHARE * _device.available_memory(torch.device("cpu"))


def memory_budget(dev: torch.device, dims: int) -> float:
    """Bytes that one batch of tiles may use for activations when ``tile="auto"``."""
    if dev.type == "cuda":
        share, cap = GPU_BUDGET_SHARE, float("inf")
    elif dims == 3:
        share, cap = CPU_BUDGET_SHARE_3D, CPU_BUDGET_CAP_3D
    else:
        share, cap = CPU_BUDGET_SHARE, CPU_BUDGET_CAP
    return min(_device.available_memory(dev) * share, cap)


def iter_predict(model: torch.nn.Module, image: Any, *, tile: Any = "auto", batch_size: Any = "auto",
                 device: Any = "auto", channel_axis: int | None = None,
                 out: np.ndarray | None = None,
                 stats: np.ndarray | None = None) -> Iterator[PredictProgress | PredictRetry | PredictDone]:
    """Generator form of :func:`predict`: yields progress events, last a :class:`PredictDone`.

    ``stats``: normalisation statistics ``(channels, 2)`` from ``percentile_stats`` of a larger
    image this one is a part of (distributed blocks); by default computed from ``image``.

    Closing the generator stops the work after the current batch of tiles.
    """
    meta = model_meta(model)
    img = prepare_image(image, meta, channel_axis)
    dev = resolve_device(device)
    dims, classes, g, halo = meta["dims"], meta["classes"], meta["grid"], meta["halo"]
    if dims == 2 and img.ndim == 4:
        n_slices, spatial = img.shape[1], img.shape[2:]
    else:
        n_slices, spatial = 0, img.shape[1:]
    out_shape = (classes,) + img.shape[1:]
    if out is None:
        need = math.prod(out_shape) * 4
        free = _device.available_memory(torch.device("cpu"))
        if need > 0.8 * free:
            raise MemoryError(
                f"the probabilities of this image ({classes} classes x {'x'.join(map(str, img.shape[1:]))}, "
                f"float32) need {need / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB of RAM is free: "
                "pass out= a float32 numpy.memmap of that shape to write them to disk (the "
                "napari-unet predict command does this by itself), or predict a part of the image.")
        out = np.empty(out_shape, np.float32)
    else:
        if tuple(out.shape) != out_shape or out.dtype != np.float32:
            raise UserError(f"out must be float32 of shape {out_shape}, got {out.dtype} {tuple(out.shape)}")
    check_finite(img)
    norm = meta.get("normalization", {})
    if stats is None:
        stats = percentile_stats(img, norm.get("low", 1.0), norm.get("high", 99.8), channel_axis=0)

    amp = autocast_dtype(dev)
    itemsize = 2 if amp is not None else 4
    if isinstance(batch_size, str) and batch_size != "auto":
        raise UserError(f"batch_size must be 'auto' or a positive int, got {batch_size!r}")
    if not isinstance(batch_size, str) and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise UserError(f"batch_size must be 'auto' or a positive int, got {batch_size!r}")

    budget = memory_budget(dev, dims)
    if isinstance(tile, str):
        if tile != "auto":
            raise UserError(f"tile must be 'auto', None, an int or a tuple, got {tile!r}")
        cores = choose_tile(spatial, meta, budget, itemsize)
    else:
        cores = _normalise_tile_arg(tile, len(spatial), g)
        if cores is None:
            cores = tuple(-(-s // g) * g for s in spatial)

    # Work on a private eval-mode copy: the caller's model keeps its device, mode and memory
    # format (a training thread may be using it), and the copy can be channels-last. A copy made
    # by inference_copy for this device already (a dask worker's cached model) is used as is.
    if getattr(model, "inference_device", None) == dev:
        runner = model
    else:
        runner = inference_copy(model, dev, _use_channels_last(dev, dims))
    while True:
        try:
            yield from _run(runner, img, stats, out, dev, amp, cores, halo, g, n_slices,
                            spatial, batch_size, budget, itemsize, meta)
            break
        except _OOM as e:  # (CUDA) out of memory: halve the tile and try again
            first = str(e).splitlines()[0] if str(e) else "out of memory"
            smallest = all(c <= g for c in cores)
            if smallest and batch_size == 1:
                raise MemoryError(
                    f"out of memory on {dev} even with the smallest tile ({'x'.join(map(str, cores))}, "
                    f"one at a time): {first}. Free memory on the device (close other programs "
                    "using it), use a smaller model, or predict on the CPU (device='cpu').") from e
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            if smallest:
                batch_size = 1
            else:
                cores = tuple(max(g, c // 2 // g * g) for c in cores)
                batch_size = "auto" if isinstance(batch_size, str) else max(1, int(batch_size) // 2)
            warnings.warn(f"out of memory on {dev}; retrying with tile {'x'.join(map(str, cores))}")
            yield PredictRetry(cores, first)
    del runner
    yield PredictDone(out)


def _run(model, img, stats, out, dev, amp, cores, halo, g, n_slices, spatial, batch_size,
         budget, itemsize, meta):
    plans = [plan_axis(s, c, halo, g) for s, c in zip(spatial, cores)]
    slices = range(n_slices) if n_slices else [None]
    tiles = [(z, combo) for z in slices for combo in itertools.product(*plans)]
    # group tiles of equal padded input shape so they can share a batch
    groups: dict[tuple[int, ...], list] = {}
    for t in tiles:
        groups.setdefault(tuple(a.padded for a in t[1]), []).append(t)
    total = len(tiles)
    chans_last = _use_channels_last(dev, meta["dims"])
    bpv = bytes_per_voxel(meta, itemsize)
    cuda = dev.type == "cuda"

    batches = []
    for shape, members in groups.items():
        vox = math.prod(shape)
        if isinstance(batch_size, str):
            b = max(1, int(budget // (vox * bpv)))
            if not cuda:
                b = min(b, max(1, -(-CPU_MIN_BATCH_VOXELS // vox)))
            b = min(b, 64)
        else:
            b = int(batch_size)
        for i in range(0, len(members), b):
            batches.append((shape, members[i:i + b]))

    pinned: dict[tuple, list[torch.Tensor]] = {}

    def host_batch(k: int, shape, members) -> np.ndarray:
        full = (len(members), img.shape[0]) + shape
        if cuda:  # two rotating pinned buffers per shape: one may still be in flight
            bufs = pinned.setdefault(full, [])
            if len(bufs) < 2:
                bufs.append(torch.empty(full, dtype=torch.float32, pin_memory=True))
            arr = bufs[k % 2 if len(bufs) == 2 else 0].numpy()
        else:
            arr = np.empty(full, np.float32)
        for j, (z, combo) in enumerate(members):
            src = img[(slice(None),) + ((z,) if z is not None else ()) +
                      tuple(slice(a.in_start, a.in_stop) for a in combo)]
            pad = [(0, 0)] + [(0, a.padded - (a.in_stop - a.in_start)) for a in combo]
            if any(p[1] for p in pad):
                src = np.pad(np.asarray(src, dtype=np.float32), pad,
                             mode="reflect" if min(src.shape[1:]) > 1 else "edge")
            apply_stats(src, stats, out=arr[j])
        return arr

    def write(members, probs: np.ndarray) -> None:
        for j, (z, combo) in enumerate(members):
            src = probs[(j, slice(None)) + tuple(slice(a.core_start - a.in_start, a.core_stop - a.in_start)
                                                 for a in combo)]
            dst = (slice(None),) + ((z,) if z is not None else ()) + tuple(
                slice(a.core_start, a.core_stop) for a in combo)
            out[dst] = src

    done = 0
    pending = None
    # inference mode is entered per batch, never held across a yield: a consumer that stops
    # iterating (a cancelled worker) must not leave its thread in inference mode
    for k, (shape, members) in enumerate(batches):
        with torch.inference_mode():
            x = torch.from_numpy(host_batch(k, shape, members))
            x = x.to(dev, non_blocking=True)
            if chans_last:
                x = x.contiguous(memory_format=_memory_format(meta["dims"]))
            with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
                logits = model(x)
            probs = torch.softmax(logits.float(), dim=1)
            if cuda:
                host = probs.contiguous().to("cpu", non_blocking=True)
                ev = torch.cuda.Event()
                ev.record()
            else:
                host, ev = probs, None
            if pending is not None:
                done += _finish(pending, write)
        if pending is not None:
            yield PredictProgress(done, total, shape)
        pending = (members, host, ev)
    if pending is not None:
        with torch.inference_mode():
            done += _finish(pending, write)
        yield PredictProgress(done, total, tuple(pending[1].shape[2:]))


def _finish(pending, write) -> int:
    members, host, ev = pending
    if ev is not None:
        ev.synchronize()
    write(members, host.numpy())
    return len(members)


def predict(model: torch.nn.Module, image: Any, *, tile: Any = "auto", batch_size: Any = "auto",
            device: Any = "auto", channel_axis: int | None = None,
            progress: Callable[[int, int], Any] | None = None,
            out: np.ndarray | None = None, stats: np.ndarray | None = None) -> np.ndarray:
    """Per-class probabilities, float32 ``(classes, *spatial)``, for a 2D image or a stack.

    ``tile``: ``"auto"`` (from free memory), ``None`` (whole image), an int or a tuple (core
    size, rounded up to the pooling grid). Any tile size gives the whole-image result within
    1e-3. ``out``: an optional preallocated float32 array (e.g. a ``numpy.memmap``) to fill.
    ``progress(done, total)`` is called after each batch of tiles.
    """
    result = None
    for ev in iter_predict(model, image, tile=tile, batch_size=batch_size, device=device,
                           channel_axis=channel_axis, out=out, stats=stats):
        if isinstance(ev, PredictProgress) and progress is not None:
            progress(ev.done, ev.total)
        elif isinstance(ev, PredictDone):
            result = ev.probabilities
    return result


def check_threshold(threshold: float | None, classes: int) -> None:
    """A threshold is a probability (0..1) and needs a two-class model; checked before predicting."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)):
        raise UserTypeError(f"threshold must be a number between 0 and 1, got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise UserError(f"{option('threshold', threshold)}: a threshold is a probability between 0 and 1")
    if classes != 2:
        raise UserError(f"{option('threshold', threshold)} needs a two-class model, this one has "
                        f"{classes} classes (its labels are the most probable class)")


def probabilities_to_labels(probs: np.ndarray, class_values: Sequence[int] | None = None,
                            threshold: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Label image from probabilities: argmax, or (two classes) foreground where p >= threshold.

    Values are the class label values (1..K by default), as in paintings. Done slice by slice
    along the first spatial axis to keep memory low.
    """
    k = probs.shape[0]
    values = np.asarray(class_values if class_values is not None else range(1, k + 1))
    dtype = np.uint8 if values.max() < 256 else np.uint16
    if out is None:
        out = np.empty(probs.shape[1:], dtype)
    check_threshold(threshold, k)
    for i in range(probs.shape[1]):
        p = probs[:, i]
        if threshold is not None:
            out[i] = np.where(p[1] >= threshold, values[1], values[0])
        else:
            out[i] = values[np.argmax(p, axis=0)]
    return out


def entropy(probs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Normalised per-pixel entropy (0 = certain, 1 = uniform), slice by slice."""
    k = probs.shape[0]
    if out is None:
        out = np.empty(probs.shape[1:], np.float32)
    for i in range(probs.shape[1]):
        p = np.clip(probs[:, i], 1e-7, 1.0)
        out[i] = -(p * np.log(p)).sum(0) / np.log(k)
    return out
