"""Seamless tiled prediction for 2D images, 2D models on stacks, and 3D models on volumes.

Tiling is crop-based: every tile's input is its core plus a halo of at least the model's
receptive field, clipped to the image; tile origins sit on the pooling grid; inputs are padded
at the far end exactly as the whole image would be; intensity statistics are computed once for
the whole image. The result therefore equals the whole-image prediction (to float rounding)
whatever the tile size. Cores are written straight into one preallocated output.

This module is the entry point (:func:`predict`, :func:`iter_predict`); the parts live in
:mod:`.checks` (input validation), :mod:`.tiling` (planning, numpy only), :mod:`.inference`
(BatchNorm folding, device copies, memory policy, execution, out-of-memory retry) and
:mod:`.postprocess` (labels from probabilities). Their public names are re-exported here.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .errors import UserError
from . import device as _device  # available_memory looked up at call time (tests patch it)
from .device import autocast_dtype, resolve_device
from .model import model_meta
from .normalize import percentile_stats
from .pooling import axis_grid_halo
from .checks import F32_MAX, as_channels_first, check_finite, check_threshold, prepare_image  # noqa: F401
from .tiling import (TILE_OVERHEAD_VOXELS, CPU_MIN_BATCH_VOXELS, AxisTile, _normalise_tile_arg,  # noqa: F401
                     bytes_per_voxel, choose_tile, plan_axis)
from .inference import (CPU_BUDGET_CAP, CPU_BUDGET_CAP_3D, CPU_BUDGET_SHARE, CPU_BUDGET_SHARE_3D,  # noqa: F401
                        GPU_BUDGET_SHARE, OUTPUT_RAM_SHARE, PredictDone, PredictProgress, PredictRetry,
                        TileJob, _OOM, _memory_format, _use_channels_last, fits_in_ram, fold_batchnorm,
                        inference_copy, memory_budget, run_with_retry)
from .postprocess import entropy, labels_dtype, probabilities_to_labels  # noqa: F401

__all__ = ["predict", "iter_predict", "PredictProgress", "PredictRetry", "PredictDone",
           "as_channels_first", "prepare_image", "check_finite", "check_threshold",
           "plan_axis", "choose_tile", "bytes_per_voxel", "fold_batchnorm", "inference_copy",
           "fits_in_ram", "memory_budget", "probabilities_to_labels", "entropy", "labels_dtype"]


def iter_predict(model: torch.nn.Module, image: Any, *, tile: Any = "auto", batch_size: Any = "auto",
                 device: Any = "auto", channel_axis: int | None = None,
                 out: np.ndarray | None = None,
                 stats: np.ndarray | None = None) -> Iterator[PredictProgress | PredictRetry | PredictDone]:
    """Generator form of :func:`predict`: yields progress events, last a :class:`PredictDone`.

    Closing the generator stops the work after the current batch of tiles.

    Args:
        model: a network from :func:`napari_unet.build_model` / :func:`napari_unet.load_model`
            (left untouched: a private eval-mode copy does the work).
        image: ``(Y, X)`` or ``(Z, Y, X)`` (plus the channel axis named by ``channel_axis``).
        tile, batch_size, device, channel_axis, out: as for :func:`predict`.
        stats: normalisation statistics ``(channels, 2)`` from ``percentile_stats`` of a larger
            image this one is a part of (distributed blocks); by default computed from ``image``.

    Yields:
        :class:`PredictProgress` after each batch of tiles, :class:`PredictRetry` when the device
        ran out of memory and smaller tiles are tried, and last :class:`PredictDone` holding the
        float32 probabilities ``(classes, *spatial)``.

    Raises:
        ValueError / TypeError: a bad image (shape, dtype, NaN/inf, channels) or option.
        MemoryError: the probabilities do not fit in RAM (pass ``out=``), or the device is out
            of memory even with the smallest tile.
    """
    meta = model_meta(model)
    img = prepare_image(image, meta, channel_axis)
    dev = resolve_device(device)
    dims, classes = meta["dims"], meta["classes"]
    if dims == 2 and img.ndim == 4:
        n_slices, spatial = img.shape[1], img.shape[2:]
    else:
        n_slices, spatial = 0, img.shape[1:]
    g, halo = axis_grid_halo(meta, len(spatial))  # per axis (anisotropic pooling)
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
            cores = tuple(-(-s // ga) * ga for s, ga in zip(spatial, g))

    # Work on a private eval-mode copy: the caller's model keeps its device, mode and memory
    # format (a training thread may be using it), and the copy can be channels-last. A copy made
    # by inference_copy for this device already (a dask worker's cached model) is used as is.
    if getattr(model, "inference_device", None) == dev:
        runner = model
    else:
        runner = inference_copy(model, dev, _use_channels_last(dev, dims))
    job = TileJob(img, stats, out, dev, amp, tuple(cores), halo, g, n_slices, tuple(spatial),
                  batch_size, budget, itemsize, meta)
    yield from run_with_retry(runner, job)
    del runner
    yield PredictDone(out)


def predict(model: torch.nn.Module, image: Any, *, tile: Any = "auto", batch_size: Any = "auto",
            device: Any = "auto", channel_axis: int | None = None,
            progress: Callable[[int, int], Any] | None = None,
            out: np.ndarray | None = None, stats: np.ndarray | None = None) -> np.ndarray:
    """Per-class probabilities, float32 ``(classes, *spatial)``, for a 2D image or a stack.

    Args:
        model: a network from :func:`napari_unet.build_model` / :func:`napari_unet.load_model`.
        image: ``(Y, X)`` or ``(Z, Y, X)`` (a 2D model on a stack predicts slice by slice; a 3D
            model tiles the volume); a channel axis only where ``channel_axis`` says so.
        tile: ``"auto"`` (from free memory), ``None`` (whole image), an int or a tuple (core
            size, rounded up to the pooling grid). Any tile size gives the whole-image result
            within 1e-3.
        batch_size: ``"auto"`` or the number of tiles per forward pass.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
        channel_axis: the axis of ``image`` holding channels (multi-channel models).
        progress: ``progress(done, total)`` is called after each batch of tiles.
        out: an optional preallocated float32 array (e.g. a ``numpy.memmap``) to fill.
        stats: normalisation statistics of a larger image (see :func:`iter_predict`).

    Returns:
        float32 probabilities ``(classes, *spatial)`` (``out`` when given).

    Raises:
        ValueError / TypeError: a bad image or option (the message names it).
        MemoryError: see :func:`iter_predict`.
    """
    result = None
    for ev in iter_predict(model, image, tile=tile, batch_size=batch_size, device=device,
                           channel_axis=channel_axis, out=out, stats=stats):
        if isinstance(ev, PredictProgress) and progress is not None:
            progress(ev.done, ev.total)
        elif isinstance(ev, PredictDone):
            result = ev.probabilities
    return result
