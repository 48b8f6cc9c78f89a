"""Tile planning for seamless prediction (numpy only, no torch).

Tiling is crop-based: every tile's input is its core plus a halo of at least the model's
receptive field, clipped to the image; tile origins sit on the pooling grid; inputs are padded
at the far end exactly as the whole image would be. :func:`choose_tile` picks the cores for
``tile="auto"``; :func:`plan_tiles` and :func:`plan_batches` lay out the work that
:mod:`napari_unet.core.inference` executes.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import UserError, UserTypeError
from .pooling import axis_grid_halo

__all__ = ["AxisTile", "plan_axis", "bytes_per_voxel", "choose_tile", "plan_tiles", "plan_batches",
           "TILE_OVERHEAD_VOXELS", "CPU_MIN_BATCH_VOXELS"]

# Cost of one forward call in the tile search, in voxels of work (weights reorder, Python and
# dispatch overhead, small-tensor inefficiency); ties between equal-work tilings go to fewer tiles.
TILE_OVERHEAD_VOXELS = {2: 1 << 15, 3: 1 << 16}
# On CPU an "auto" batch holds at least this many voxels of tiles (when the budget allows).
CPU_MIN_BATCH_VOXELS = 1 << 18


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
    pooling = meta.get("pooling") or [[2] * dims] * depth  # anisotropic: less shrinking
    shrink, skips = 1.0, 0.0
    for lvl in range(depth + 1):
        skips += base * 2 ** lvl / shrink
        if lvl < depth:
            shrink *= math.prod(pooling[lvl])
    cin = meta["in_channels"]
    if meta.get("stem"):   # the fixed filters' responses, and the smoothed image being differentiated
        cin = cin * (1 + len(meta["stem"]) * (2 + dims)) + 3
    chans = skips + 4 * base + 3 * meta["classes"] + cin
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
    grids, halos = axis_grid_halo(meta, len(spatial))  # per axis (anisotropic pooling)
    bpv = bytes_per_voxel(meta, itemsize)
    overhead = TILE_OVERHEAD_VOXELS.get(len(spatial), 1 << 16)
    per_axis = [_axis_options(int(s), g, h) for s, g, h in zip(spatial, grids, halos)]
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


def _per_axis(v: Any, nd: int) -> tuple[int, ...]:
    """An int for every axis, or one int per axis, as a tuple of ``nd`` ints."""
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * nd


def _normalise_tile_arg(tile: Any, nd: int, grid: Any) -> tuple[int, ...] | None:
    """``tile`` as ``nd`` cores on ``grid`` (an int, or one per axis)."""
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
    return tuple(max(g, -(-t // g) * g) for t, g in zip(tile, _per_axis(grid, nd)))


def plan_tiles(spatial: Sequence[int], cores: Sequence[int], halo: Any, grid: Any,
               n_slices: int) -> dict[tuple[int, ...], list]:
    """All tiles ``(slice index or None, per-axis AxisTile combo)``, grouped by padded input
    shape (tiles of one shape can share a batch). ``halo``/``grid``: an int, or one per axis."""
    nd = len(spatial)
    plans = [plan_axis(s, c, h, g) for s, c, h, g in zip(spatial, cores, _per_axis(halo, nd), _per_axis(grid, nd))]
    slices = range(n_slices) if n_slices else [None]
    groups: dict[tuple[int, ...], list] = {}
    for z in slices:
        for combo in itertools.product(*plans):
            groups.setdefault(tuple(a.padded for a in combo), []).append((z, combo))
    return groups


def plan_batches(groups: dict[tuple[int, ...], list], batch_size: Any, budget: float,
                 bytes_voxel: float, cuda: bool) -> list[tuple[tuple[int, ...], list]]:
    """Split each group of equal-shape tiles into batches: ``batch_size`` tiles, or with
    ``"auto"`` as many as fit ``budget`` (at most 64; on CPU no more than needed to reach
    ``CPU_MIN_BATCH_VOXELS``)."""
    batches = []
    for shape, members in groups.items():
        vox = math.prod(shape)
        if isinstance(batch_size, str):
            b = max(1, int(budget // (vox * bytes_voxel)))
            if not cuda:
                b = min(b, max(1, -(-CPU_MIN_BATCH_VOXELS // vox)))
            b = min(b, 64)
        else:
            b = int(batch_size)
        for i in range(0, len(members), b):
            batches.append((shape, members[i:i + b]))
    return batches
