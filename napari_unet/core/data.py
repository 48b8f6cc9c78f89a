"""Training data: input checks, normalisation, the validation split, patch sampling, augmentation.

Everything here is numpy + torch (no Qt). The flow, used by :mod:`napari_unet.core.train`:

1. :func:`check_pairs` validates images/labels (shapes, dtypes, NaN, painted classes) and
   returns channels-first views plus the labels (0 = unlabeled, 1..K).
2. :func:`build_volumes` normalises every image exactly as ``predict`` does (percentile
   statistics computed once on the whole image, then applied to the region used), crops each
   image to the painted region plus context, and (``dims=2`` on a stack) keeps only the slices
   that carry paint. Each result is a :class:`Volume`.
3. :func:`split_validation` holds out spatial blocks of paint (so validation pixels are not
   next to a training stroke of the same block), keeping at least half of each class for
   training. Held-out pixels are removed from the training labels.
4. :class:`PatchSampler` draws class-balanced patches centred (with jitter) on painted pixels
   and augments them on the training device: flips, 90-degree and free rotations, scaling,
   intensity scale/shift, gamma and noise.

The parts live in :mod:`.checks` (image and label validators, shared with prediction),
:mod:`.regions` (volumes, validation split and crops), :mod:`.sampling` (patches) and
:mod:`.augment`; this module pairs the inputs and re-exports the names training uses.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UserError
from .checks import check_image, check_train_labels, unpainted_to_background  # noqa: F401  (re-exported)
from .limits import check_binary_mask
from .regions import (Pair, ValSet, Volume, block_class_counts, build_valset,  # noqa: F401
                      build_volumes, round_up, split_validation)
from .augment import AugmentConfig  # noqa: F401
from .sampling import MAX_CENTRES, PatchSampler, find_centres  # noqa: F401

__all__ = ["check_pairs", "check_image", "check_train_labels", "class_counts", "Pair", "Volume",
           "ValSet", "build_volumes", "split_validation", "block_class_counts", "build_valset",
           "find_centres", "AugmentConfig", "PatchSampler", "round_up", "MAX_CENTRES"]


def _as_list(x: Any, name: str) -> list:
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise UserError(f"{name} is an empty list")
        return list(x)
    return [x]


def class_counts(labels: np.ndarray, chunk: int = 1 << 24) -> np.ndarray:
    """Pixel count per label value (index = value), chunked."""
    flat = labels.reshape(-1)
    counts = np.zeros(1, np.int64)
    for s in range(0, flat.size, chunk):
        c = np.bincount(flat[s:s + chunk].astype(np.int64, copy=False))
        if len(c) > len(counts):
            c[:len(counts)] += counts
            counts = c
        else:
            counts[:len(c)] += c
    return counts


def check_pairs(images: Any, labels: Any, *, dims: int, channel_axis: int | None,
                unpainted_is_background: bool, what: str = "images") -> list[Pair]:
    imgs = _as_list(images, what)
    labs = _as_list(labels, "labels" if what == "images" else "val_labels")
    lname = "labels" if what == "images" else "val_labels"
    if len(imgs) != len(labs):
        raise UserError(f"{len(imgs)} {what} but {len(labs)} {lname}: give one labels array per image")
    pairs = []
    single = len(imgs) == 1 and not isinstance(images, (list, tuple))
    cin, zeros, values = None, False, set()   # the labels' values as given (before 0 -> background)
    for i, (im, lab) in enumerate(zip(imgs, labs)):
        iname = what[:-1] if single else f"{what[:-1]} {i}"
        lname_i = lname if single else f"{lname} {i}"
        chw = check_image(im, iname, dims, channel_axis)
        if cin is None:
            cin = chw.shape[0]
        elif chw.shape[0] != cin:
            raise UserError(f"{iname} has {chw.shape[0]} channels but the first image has {cin}")
        lab = check_train_labels(lab, lname_i, chw.shape[1:], iname, False)
        counts = class_counts(lab)
        zeros, values = zeros or bool(counts[0]), values | set(np.flatnonzero(counts[1:]) + 1)
        if unpainted_is_background:   # 0 -> 1: the counts follow without counting again
            lab = unpainted_to_background(lab)
            counts = np.pad(counts, (0, max(0, 2 - len(counts))))
            counts[1] += counts[0]
            counts[0] = 0
        pairs.append(Pair(chw, lab, counts, iname))
    check_binary_mask(zeros, values, lname)
    return pairs
