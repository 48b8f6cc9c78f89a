"""Intensity normalisation, computed once per image and applied per tile.

Percentiles are taken on a deterministic strided subsample so that huge (or memory-mapped)
stacks are never copied whole; the same statistics serve every tile, so tiling cannot change
the result.
"""
from __future__ import annotations

import math

import numpy as np

from .checks import check_finite

__all__ = ["percentile_stats", "apply_stats", "normalize"]

MAX_SAMPLES = 2_000_000


def _subsample(channel: np.ndarray, max_samples: int = MAX_SAMPLES) -> np.ndarray:
    """A strided view/copy of at most ~max_samples values, spread over every axis."""
    n = channel.size
    if n <= max_samples:
        return np.asarray(channel).reshape(-1)
    # per-axis stride so the product of kept sizes is about max_samples
    factor = (n / max_samples) ** (1.0 / channel.ndim)
    slices = tuple(slice(None, None, max(1, int(math.ceil(factor)))) for _ in channel.shape)
    return np.asarray(channel[slices]).reshape(-1)


def percentile_stats(image: np.ndarray, low: float = 1.0, high: float = 99.8,
                     channel_axis: int | None = None) -> np.ndarray:
    """Return an array ``(channels, 2)`` of (low, high) percentiles; channels first if given."""
    chans = [image] if channel_axis is None else [np.take(image, i, axis=channel_axis)
                                                  for i in range(image.shape[channel_axis])]
    out = np.empty((len(chans), 2), np.float64)
    for i, ch in enumerate(chans):
        raw = _subsample(ch)
        check_finite(raw, doing="predicting or training")  # (a subsample: the cheap guard)
        sample = raw.astype(np.float32, copy=False)
        lo, hi = np.percentile(sample, [low, high])
        if not hi > lo:  # flat image or heavy saturation: fall back to min/max
            lo, hi = float(sample.min()), float(sample.max())
        out[i] = lo, hi
    return out


def apply_stats(tile: np.ndarray, stats: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Normalise ``tile`` (channels first) to float32 with ``stats`` from :func:`percentile_stats`."""
    if out is None:
        out = np.empty(tile.shape, np.float32)
    for c in range(tile.shape[0]):
        lo, hi = stats[c]
        scale = 1.0 / (hi - lo) if hi > lo else 1.0
        np.subtract(tile[c], np.float32(lo), out=out[c], casting="unsafe")
        np.multiply(out[c], np.float32(scale), out=out[c])
    return out


def normalize(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Whole-array convenience (channels first if ``image.ndim`` says so is up to the caller)."""
    stats = percentile_stats(image, low, high)
    return apply_stats(image[None], stats)[0]
