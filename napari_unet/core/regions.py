"""Training regions: the painted parts of each image, normalised as ``predict`` does, the
validation split (held-out blocks of paint) and the fixed validation crops (numpy + torch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .normalize import apply_stats, percentile_stats

__all__ = ["Pair", "Volume", "ValSet", "build_volumes", "split_validation", "block_class_counts",
           "build_valset", "round_up"]


@dataclass
class Pair:
    image: np.ndarray          # channels first, not normalised
    labels: np.ndarray         # spatial, 0 = unlabeled
    counts: np.ndarray         # pixels per label value
    name: str
    stats: np.ndarray | None = None


@dataclass
class Volume:
    """One normalised training region: ``image`` (C, *spatial) float32, labels (*spatial)."""

    image: np.ndarray
    train: np.ndarray          # training labels (validation pixels removed)
    val: np.ndarray | None     # validation labels (same shape) or None
    tensor: torch.Tensor | None = None   # image on the data device
    labels_tensor: torch.Tensor | None = None
    centres: list[np.ndarray] = field(default_factory=list)  # per class value: flat indices


def round_up(v: int, g: int) -> int:
    return -(-int(v) // g) * g


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    sl = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        any_ = mask.any(axis=other) if other else mask
        idx = np.flatnonzero(any_)
        if idx.size == 0:
            return None
        sl.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(sl)


def _pad_to(arr: np.ndarray, shape: Sequence[int], mode: str) -> np.ndarray:
    """Pad the trailing ``len(shape)`` axes at the far end to at least ``shape``."""
    lead = arr.ndim - len(shape)
    after = [max(0, s - n) for n, s in zip(arr.shape[lead:], shape)]
    return _pad_both(arr, [0] * len(shape), after, mode)


def _pad_both(arr: np.ndarray, before: Sequence[int], after: Sequence[int], mode: str) -> np.ndarray:
    lead = arr.ndim - len(before)
    pad = [(0, 0)] * lead + list(zip(before, after))
    if not any(a or b for a, b in pad):
        return arr
    if mode == "reflect":
        if min(arr.shape[lead:]) < 2:
            return np.pad(arr, pad, mode="edge")
        return np.pad(arr, pad, mode="reflect")
    return np.pad(arr, pad, mode="constant")


def build_volumes(pairs: list[Pair], *, dims: int, crop: tuple[int, ...], norm: dict,
                  context: tuple[int, ...]) -> list[Volume]:
    """Normalise every pair and cut it to its painted region plus ``context`` on each side.

    Where the image ends before that, the region is extended by mirroring (labels 0), so that
    a painted pixel can sit anywhere in a patch, also near the border: otherwise, in a short
    stack, every patch would start at the same few planes, the paint would always fall on the
    same phase of the network's pooling grid, and the other phases would go untrained.
    """
    vols: list[Volume] = []
    for pr in pairs:
        if pr.stats is None:
            pr.stats = percentile_stats(pr.image, norm.get("low", 1.0), norm.get("high", 99.8), channel_axis=0)
        painted = pr.labels != 0
        if dims == 2 and pr.labels.ndim == 3:
            zs = np.flatnonzero(painted.any(axis=(1, 2)))
            parts = [(int(z), pr.image[:, z], pr.labels[z], painted[z]) for z in zs]
        else:
            parts = [(None, pr.image, pr.labels, painted)]
        for z, img, lab, pm in parts:
            bb = _bbox(pm)
            if bb is None:
                continue
            sl = tuple(slice(max(0, s.start - c), min(n, s.stop + c))
                       for s, c, n in zip(bb, context, lab.shape))
            before = [max(0, c - s.start) for s, c in zip(bb, context)]
            after = [max(0, s.stop + c - n) for s, c, n in zip(bb, context, lab.shape)]
            region = np.asarray(img[(slice(None),) + sl])
            norm_img = apply_stats(region, pr.stats)
            lab_r = np.array(lab[sl], copy=True)  # never modify the caller's labels
            norm_img = _pad_both(norm_img, before, after, "reflect")
            lab_r = _pad_both(lab_r, before, after, "constant")
            norm_img = _pad_to(norm_img, crop, "reflect")
            lab_r = _pad_to(lab_r, crop, "constant")
            vols.append(Volume(np.ascontiguousarray(norm_img), lab_r, None))
    return vols


def block_class_counts(labels: np.ndarray, block: tuple[int, ...], classes: int) -> np.ndarray:
    """Counts ``(n_blocks..., classes + 1)`` of each label value per block."""
    nb = tuple(-(-n // b) for n, b in zip(labels.shape, block))
    out = np.zeros(nb + (classes + 1,), np.int64)
    padded = _pad_to(labels, tuple(n * b for n, b in zip(nb, block)), "constant")
    # chunk along the first axis, one block row at a time
    for i in range(nb[0]):
        chunk = padded[i * block[0]:(i + 1) * block[0]]
        shp = []
        for n, b in zip(nb[1:], block[1:]):
            shp += [n, b]
        for v in range(1, classes + 1):
            m = (chunk == v).reshape([block[0]] + shp)
            s = m.sum(axis=(0,) + tuple(range(2, 2 * len(nb) - 1, 2)))
            out[i, ..., v] = s
    return out


def split_validation(vols: list[Volume], *, fraction: float, block: tuple[int, ...], classes: int,
                     rng: np.random.Generator) -> None:
    """Move about ``fraction`` of each class's paint, in whole spatial blocks, to ``vol.val``.

    A block goes to validation only if it helps a class still short of its target and leaves
    every class in it at least half of its paint for training.
    """
    if fraction <= 0:
        return
    counts = [block_class_counts(v.train, block, classes) for v in vols]
    total = sum(c.reshape(-1, classes + 1).sum(0) for c in counts)
    target = fraction * total
    val = np.zeros(classes + 1, np.int64)
    cands = [(i, idx) for i, c in enumerate(counts)
             for idx in zip(*np.nonzero(c[..., 1:].sum(-1)))]
    order = rng.permutation(len(cands))
    chosen: dict[int, list[tuple[int, ...]]] = {}
    for j in order:
        i, idx = cands[j]
        bc = counts[i][idx]
        present = bc > 0
        present[0] = False
        if not np.any(present & (val < target)):
            continue
        if np.any(present & (total - val - bc < 0.5 * total)):
            continue
        val += bc
        chosen.setdefault(i, []).append(idx)
        if np.all(val[1:] >= target[1:]):
            break
    for i, idxs in chosen.items():
        v = vols[i]
        v.val = np.zeros_like(v.train)
        for idx in idxs:
            sl = tuple(slice(a * b, (a + 1) * b) for a, b in zip(idx, block))
            v.val[sl] = v.train[sl]
            v.train[sl] = 0


@dataclass
class ValSet:
    x: torch.Tensor            # (n, C, *patch) on the data device
    y: torch.Tensor            # (n, *patch) labels (only each crop's own block), 0 = ignore


def build_valset(vols: list[Volume], *, patch: tuple[int, ...], block: tuple[int, ...],
                 max_crops: int, rng: np.random.Generator, data_device: torch.device) -> ValSet | None:
    """Fixed validation crops of ``patch`` size, each centred on one block of held-out paint."""
    items = []
    for vi, v in enumerate(vols):
        if v.val is None:
            continue
        counts = block_class_counts(v.val, block, int(v.val.max(initial=0)))
        for idx in zip(*np.nonzero(counts[..., 1:].sum(-1))):
            items.append((vi, idx))
    if not items:
        return None
    if len(items) > max_crops:
        keep = rng.choice(len(items), max_crops, replace=False)
        items = [items[i] for i in sorted(keep)]
    xs, ys = [], []
    for vi, idx in items:
        v = vols[vi]
        bsl = []
        csl = []
        for a, b, p, n in zip(idx, block, patch, v.val.shape):
            start, stop = a * b, min(n, (a + 1) * b)
            o = min(max(0, (start + stop) // 2 - p // 2), n - p)
            csl.append(slice(o, o + p))
            bsl.append(slice(start - o, stop - o))
        csl_t, bsl_t = tuple(csl), tuple(bsl)
        xs.append(v.image[(slice(None),) + csl_t])
        lab = np.zeros(patch, np.int64)
        lab[bsl_t] = v.val[csl_t][bsl_t]
        ys.append(lab)
    x = torch.from_numpy(np.stack(xs)).to(data_device)
    y = torch.from_numpy(np.stack(ys)).to(data_device)
    return ValSet(x, y)
