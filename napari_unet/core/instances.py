"""Instance labels (one id per object, 0 = background) from a foreground probability map.

A seeded watershed, numpy/scipy/scikit-image only, 2D or 3D, honouring anisotropic voxels:

1. the probability is smoothed (Gaussian, ``sigma`` in physical units) and thresholded into a
   foreground mask; connected pieces smaller than ``min_size`` voxels are dropped;
2. the relief is the Euclidean distance to the background (``method="distance"``, with the voxel
   ``spacing``) or the smoothed probability itself (``method="probability"``);
3. seeds are the relief's local maxima, thinned so that two seeds of one connected piece are at
   least ``seed_distance`` apart (physical units; the higher one wins); every piece keeps at
   least one seed;
4. a watershed of the inverted relief from these seeds, inside the mask, splits touching objects;
   objects smaller than ``min_size`` voxels are removed and ids are made consecutive.

Big inputs are processed in overlapping slabs along the first axis (``block``); an object that
crosses a slab border gets one id: the slabs overlap by ``overlap`` voxels and the objects of two
neighbouring slabs that are each other's best match in the shared band are merged. With an overlap
larger than the objects the result equals the whole-array result (up to the id order).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import UserError, UserTypeError

__all__ = ["instance_labels"]

# inputs up to this many voxels are processed in one piece (a few float64 temporaries of this
# size are needed: ~1 GiB at 2**25 voxels); larger ones in slabs along the first axis
WHOLE_LIMIT = 1 << 25


def _spacing(spacing: Any, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    sp = np.atleast_1d(np.asarray(spacing, dtype=float))
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise UserError(f"spacing must be {ndim} positive numbers (one per axis), got {spacing!r}")
    return sp


def _check(prob: Any) -> np.ndarray:
    if not hasattr(prob, "shape") or not hasattr(prob, "dtype"):
        prob = np.asarray(prob)
    if len(prob.shape) not in (2, 3):
        raise UserError(f"the foreground probability must be 2D (Y, X) or 3D (Z, Y, X), got shape "
                         f"{tuple(prob.shape)}")
    if np.dtype(prob.dtype).kind not in "fiub":
        raise UserTypeError(f"the foreground probability must be numeric, got {prob.dtype}")
    return prob


def _footprint(radius: np.ndarray) -> np.ndarray:
    """An ellipsoid of the given per-axis radius (voxels) for local-maximum detection."""
    r = np.maximum(np.floor(radius).astype(int), 1)
    grids = np.ogrid[tuple(slice(-k, k + 1) for k in r)]
    return sum((g / max(rad, 1e-9)) ** 2 for g, rad in zip(grids, np.maximum(radius, 1.0))) <= 1.0


def _seeds(relief: np.ndarray, pieces: np.ndarray, n_pieces: int, sp: np.ndarray,
           seed_distance: float) -> np.ndarray:
    """Marker image: local maxima of ``relief`` inside ``pieces``, at least ``seed_distance``
    apart within a piece, and one seed at least per piece."""
    from scipy import ndimage as ndi
    from scipy.spatial import cKDTree

    radius = np.maximum(0.5 * seed_distance / sp, 1.0)
    peak = (relief == ndi.maximum_filter(relief, footprint=_footprint(radius), mode="nearest"))
    peak &= pieces > 0
    coords = np.argwhere(peak)
    heights = relief[peak]
    piece_of = pieces[peak]
    order = np.lexsort((np.arange(len(heights)), -heights))  # highest first, stable
    coords, heights, piece_of = coords[order], heights[order], piece_of[order]
    keep = np.ones(len(coords), bool)
    if len(coords) and seed_distance > 0:
        phys = coords * sp
        tree = cKDTree(phys)
        for i in range(len(coords)):
            if not keep[i]:
                continue
            for j in tree.query_ball_point(phys[i], r=seed_distance - 1e-9):
                if j > i and piece_of[j] == piece_of[i]:
                    keep[j] = False
    coords, piece_of = coords[keep], piece_of[keep]
    markers = np.zeros(relief.shape, np.int32)
    markers[tuple(coords.T)] = np.arange(1, len(coords) + 1)
    # a piece without a seed (possible on plateaus cut by the filter) gets its highest voxel
    seeded = np.zeros(n_pieces + 1, bool)
    seeded[piece_of] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    if len(missing):
        pos = ndi.maximum_position(relief, pieces, missing)
        nxt = len(coords) + 1
        for p in pos:
            markers[tuple(p)] = nxt
            nxt += 1
    return markers


def _segment(prob: np.ndarray, *, threshold: float, min_size: int, seed_distance: float,
             sigma: float, sp: np.ndarray, method: str) -> np.ndarray:
    """Instances of one piece (held in memory), int32, not yet made consecutive."""
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    p = np.asarray(prob, dtype=np.float32)
    if sigma > 0:
        p = ndi.gaussian_filter(p, sigma=sigma / sp, mode="nearest")
    mask = p >= threshold
    pieces, n = ndi.label(mask)
    if n == 0:
        return np.zeros(p.shape, np.int32)
    if min_size > 1:
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        small = sizes < min_size
        small[0] = False
        if small.any():
            mask[small[pieces]] = False
            pieces, n = ndi.label(mask)
            if n == 0:
                return np.zeros(p.shape, np.int32)
    if method == "distance":
        relief = ndi.distance_transform_edt(mask, sampling=sp).astype(np.float32)
        if sigma > 0:  # break the ties of the distance transform's ridges
            relief = ndi.gaussian_filter(relief, sigma=0.5 * sigma / sp, mode="nearest") * mask
    else:
        relief = p
    markers = _seeds(relief, pieces, n, sp, seed_distance)
    return watershed(-relief, markers, mask=mask).astype(np.int32, copy=False)


def _finish(lab: np.ndarray, min_size: int, out: np.ndarray | None) -> np.ndarray:
    """Remove objects under ``min_size`` voxels and number the rest 1..n (uint16/uint32)."""
    counts = np.bincount(lab.ravel())
    keep = counts >= max(min_size, 1)
    keep[0] = False
    n = int(keep.sum())
    lut = np.zeros(len(counts), np.int64)
    lut[keep] = np.arange(1, n + 1)
    dtype = np.uint16 if n < 65536 else np.uint32
    if out is None:
        return lut[lab].astype(dtype)
    out[...] = lut[lab]
    return out


def instance_labels(prob: Any, *, threshold: float = 0.5, min_size: int = 10,
                    seed_distance: float = 5.0, sigma: float = 1.0, spacing: Sequence[float] | float | None = None,
                    method: str = "distance", block: int | None = None, overlap: int | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Instance labels (0 = background, 1..n = objects; uint16, or uint32 past 65535 objects)
    from a 2D ``(Y, X)`` or 3D ``(Z, Y, X)`` foreground probability (a class's layer of
    ``predict``'s output, or any map in [0, 1]).

    ``threshold``: foreground where the smoothed probability is at least this. ``min_size``:
    smallest object kept, in voxels. ``seed_distance``: smallest distance between two seeds of
    one object, i.e. roughly the radius of the smallest object to split off, in the units of
    ``spacing`` (voxel size per axis, e.g. ``(2.0, 0.5, 0.5)``; default 1). ``sigma``: Gaussian
    smoothing of the probability in the same units (0: none). ``method``: ``"distance"`` (relief
    = distance to the background; splits round touching objects) or ``"probability"`` (relief =
    smoothed probability; for objects separated by low-probability borders).

    ``block``: slab thickness along the first axis for big inputs (default: the whole array when
    it has at most ``WHOLE_LIMIT`` voxels); ``overlap``: voxels shared by neighbouring slabs
    (default: enough for objects up to ~4x ``seed_distance`` across). ``out``: an array (e.g. a
    memory map) of the input's shape to write into.
    """
    prob = _check(prob)
    shape = tuple(prob.shape)
    sp = _spacing(spacing, len(shape))
    if method not in ("distance", "probability"):
        raise UserError(f"method must be 'distance' or 'probability', got {method!r}")
    if not 0.0 < float(threshold) < 1.0 and np.dtype(prob.dtype).kind == "f":
        raise UserError(f"threshold must be between 0 and 1, got {threshold}")
    for name, value in (("min_size", min_size), ("seed_distance", seed_distance), ("sigma", sigma)):
        if value < 0:
            raise UserError(f"{name} must not be negative, got {value}")
    if out is not None and tuple(out.shape) != shape:
        raise UserError(f"out has shape {tuple(out.shape)}, the probability {shape}")
    kw = dict(threshold=float(threshold), min_size=int(min_size), seed_distance=float(seed_distance),
              sigma=float(sigma), sp=sp, method=method)
    size = int(np.prod(shape))
    if block is None and size <= WHOLE_LIMIT:
        return _finish(_segment(prob, **kw), min_size, out)
    if block is None:
        block = max(8, WHOLE_LIMIT // max(size // shape[0], 1))
    if overlap is None:
        overlap = int(np.ceil((4 * seed_distance + 4 * sigma) / sp[0])) + 4
    return _blockwise(prob, int(block), int(overlap), kw, min_size, out)


# ----------------------------------------------------------------------------- big inputs

def _blockwise(prob: Any, block: int, overlap: int, kw: dict, min_size: int,
               out: np.ndarray | None) -> np.ndarray:
    """Slabs along axis 0 of thickness ``block`` plus ``overlap`` on each side; each slab keeps
    its core; objects of neighbouring slabs that are each other's best match in their shared
    band get one id (union-find)."""
    if block < 1 or overlap < 0:
        raise UserError("block must be positive and overlap non-negative")
    n0 = prob.shape[0]
    starts = list(range(0, n0, block))
    parent: list[int] = [0]

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    # raw ids go straight into the output when it can hold them (no full-size temporary)
    wide = out is not None and np.dtype(out.dtype).kind in "iu" and np.dtype(out.dtype).itemsize >= 4
    tmp = out if wide else np.zeros(prob.shape, np.uint32)
    prev: tuple[np.ndarray, int] | None = None  # previous slab's labels and its start index
    offset = 0
    for s in starts:
        e = min(s + block, n0)
        lo, hi = max(s - overlap, 0), min(e + overlap, n0)
        lab = _segment(np.asarray(prob[lo:hi]), **kw).astype(np.int64)
        nz = lab > 0
        lab[nz] += offset
        n_new = int(lab.max(initial=offset) - offset)
        if offset + n_new >= np.iinfo(np.uint32).max:
            raise UserError("more than 4 billion objects: raise min_size or seed_distance")
        parent.extend(range(offset + 1, offset + n_new + 1))
        offset += n_new
        if prev is not None:
            plab, plo = prev
            # shared band: [lo, previous slab's hi)
            band_hi = plo + plab.shape[0]
            a = plab[lo - plo: band_hi - plo]
            b = lab[: band_hi - lo]
            for x, y in _mutual_best(a, b):
                rx, ry = find(x), find(y)
                if rx != ry:
                    parent[max(rx, ry)] = min(rx, ry)
        tmp[s:e] = lab[s - lo: e - lo]
        prev = (lab, lo)
    roots = np.array([find(i) for i in range(len(parent))], np.int64)
    for s in starts:  # in slabs, so no full-size temporary beyond ``tmp``
        e = min(s + block, n0)
        tmp[s:e] = roots[tmp[s:e]]
    return _finish_blockwise(tmp, min_size, out)


def _mutual_best(a: np.ndarray, b: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (x in a, y in b) that overlap most with each other, over at least a third of the
    smaller one's voxels in the band."""
    m = (a > 0) & (b > 0)
    if not m.any():
        return []
    pairs, counts = np.unique(np.stack([a[m], b[m]]), axis=1, return_counts=True)
    size_a = dict(zip(*np.unique(a[a > 0], return_counts=True)))
    size_b = dict(zip(*np.unique(b[b > 0], return_counts=True)))
    best_a: dict[int, tuple[int, int]] = {}
    best_b: dict[int, tuple[int, int]] = {}
    for (x, y), c in zip(pairs.T.tolist(), counts.tolist()):
        if c > best_a.get(x, (0, -1))[0]:
            best_a[x] = (c, y)
        if c > best_b.get(y, (0, -1))[0]:
            best_b[y] = (c, x)
    out = []
    for x, (c, y) in best_a.items():
        if best_b[y][1] == x and 3 * c >= min(size_a[x], size_b[y]):
            out.append((x, y))
    return out


def _finish_blockwise(lab: np.ndarray, min_size: int, out: np.ndarray | None) -> np.ndarray:
    counts = np.zeros(1, np.int64)
    for z in range(lab.shape[0]):
        c = np.bincount(lab[z].ravel())
        if len(c) > len(counts):
            c[: len(counts)] += counts
            counts = c
        else:
            counts[: len(c)] += c
    keep = counts >= max(min_size, 1)
    keep[0] = False
    n = int(keep.sum())
    lut = np.zeros(len(counts), np.int64)
    lut[keep] = np.arange(1, n + 1)
    if out is not None:
        res = out
    elif n < 65536:
        res = np.empty(lab.shape, np.uint16)
    else:
        res = lab  # relabelled in place, slice by slice
    for z in range(lab.shape[0]):
        res[z] = lut[lab[z]]
    return res
