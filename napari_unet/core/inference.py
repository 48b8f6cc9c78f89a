"""Tiled inference on a device (torch): the inference copy of a model (BatchNorm folded,
channels-last, weights copied once), the memory policy, the execution of a tile plan from
:mod:`napari_unet.core.tiling`, and the out-of-memory retry with smaller tiles."""
from __future__ import annotations

import copy
import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch

from . import device as _device  # available_memory looked up at call time (tests patch it)
from .model import model_meta
from .normalize import apply_stats
from .tiling import bytes_per_voxel, plan_batches, plan_tiles

__all__ = ["PredictProgress", "PredictRetry", "PredictDone", "TileJob", "fold_batchnorm",
           "inference_copy", "fits_in_ram", "memory_budget", "run_tiles", "run_with_retry",
           "OUTPUT_RAM_SHARE"]

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
_OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)  # torch < 2.5


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


@dataclass(frozen=True)
class TileJob:
    """One tiled pass: the image (channels first, normalised by ``stats`` tile by tile), where
    the probabilities go, and how the work is cut (``cores`` on the pooling ``grid`` with a
    ``halo``, each one int per axis; ``n_slices`` > 0: a 2D model on a stack, slice by slice)."""

    img: np.ndarray
    stats: np.ndarray
    out: np.ndarray
    dev: torch.device
    amp: Any  # autocast dtype or None
    cores: tuple[int, ...]
    halo: tuple[int, ...]
    grid: tuple[int, ...]
    n_slices: int
    spatial: tuple[int, ...]
    batch_size: Any  # "auto" or a positive int
    budget: float
    itemsize: int
    meta: dict


def run_with_retry(runner: torch.nn.Module, job: TileJob) -> Iterator[PredictProgress | PredictRetry]:
    """Run ``job`` with ``runner``; on (CUDA) out of memory halve the tile (then the batch) and
    start again, yielding a :class:`PredictRetry`; raise MemoryError when nothing smaller is left."""
    dev = job.dev
    g = job.grid if isinstance(job.grid, tuple) else (int(job.grid),) * len(job.cores)
    while True:
        try:
            yield from run_tiles(runner, job)
            return
        except _OOM as e:  # (CUDA) out of memory: halve the tile and try again
            cores, batch_size = job.cores, job.batch_size
            first = str(e).splitlines()[0] if str(e) else "out of memory"
            smallest = all(c <= ga for c, ga in zip(cores, g))
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
                cores = tuple(max(ga, c // 2 // ga * ga) for c, ga in zip(cores, g))
                batch_size = "auto" if isinstance(batch_size, str) else max(1, int(batch_size) // 2)
            job = dataclasses.replace(job, cores=cores, batch_size=batch_size)
            warnings.warn(f"out of memory on {dev}; retrying with tile {'x'.join(map(str, cores))}")
            yield PredictRetry(cores, first)


def run_tiles(model: torch.nn.Module, job: TileJob) -> Iterator[PredictProgress]:
    """Predict every tile of ``job`` into ``job.out``, one batch at a time (a CUDA batch's copy
    back overlaps the next batch's compute), yielding progress after each."""
    img, stats, out, dev, amp, meta = job.img, job.stats, job.out, job.dev, job.amp, job.meta
    groups = plan_tiles(job.spatial, job.cores, job.halo, job.grid, job.n_slices)
    total = sum(len(m) for m in groups.values())
    chans_last = _use_channels_last(dev, meta["dims"])
    cuda = dev.type == "cuda"
    batches = plan_batches(groups, job.batch_size, job.budget, bytes_per_voxel(meta, job.itemsize), cuda)

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
