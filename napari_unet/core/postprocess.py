"""Post-processing of predicted probabilities (numpy only): labels and uncertainty."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .checks import check_threshold
from .labels import labels_dtype

__all__ = ["labels_dtype", "probabilities_to_labels", "one_class_per_object", "entropy"]


def probabilities_to_labels(probs: np.ndarray, class_values: Sequence[int] | None = None,
                            threshold: float | None = None, out: np.ndarray | None = None, *,
                            one_class_per_object: bool = False) -> np.ndarray:
    """Label image from probabilities: argmax, or (two classes) foreground where p >= threshold.

    Values are the class label values (1..K by default), as in paintings. Done slice by slice
    along the first spatial axis to keep memory low. ``one_class_per_object``: then
    :func:`one_class_per_object` (classes that are kinds of object, e.g. dim and bright nuclei).
    """
    k = probs.shape[0]
    values = np.asarray(class_values if class_values is not None else range(1, k + 1))
    dtype = labels_dtype(int(values.max()))
    if out is None:
        out = np.empty(probs.shape[1:], dtype)
    check_threshold(threshold, k)
    for i in range(probs.shape[1]):
        p = probs[:, i]
        if threshold is not None:
            out[i] = np.where(p[1] >= threshold, values[1], values[0])
        else:
            out[i] = values[np.argmax(p, axis=0)]
    if one_class_per_object:
        one_class_per_object_(probs, out, values)
    return out


def one_class_per_object(probs: np.ndarray, labels: np.ndarray,
                         class_values: Sequence[int] | None = None) -> np.ndarray:
    """Give every object one class, in place: each connected piece of non-background pixels of
    ``labels`` (the first class, 1 by convention, is the background; pieces connected by faces,
    in 2D or 3D as ``labels``) takes the object class with the largest probability summed over
    the piece. For classes that are kinds of object (dim and bright nuclei, dividing and resting
    cells): a pixel classifier often calls part of a nucleus one kind and the rest the other.
    Not for classes that are parts of one object (a nucleus inside its cytoplasm): those touch,
    so the vote would give the whole cell one class. Two classes: nothing changes.

    ``probs``: ``(K, *spatial)``; ``labels``: ``spatial`` with the class values (1..K by default).
    Needs the labels in memory (a component map of 4 bytes per pixel). Returns ``labels``.
    """
    from scipy import ndimage as ndi

    k = probs.shape[0]
    if tuple(labels.shape) != tuple(probs.shape[1:]):
        raise ValueError(f"labels of shape {tuple(labels.shape)} do not match probabilities of "
                         f"shape {tuple(probs.shape)} (classes first)")
    values = np.asarray(class_values if class_values is not None else range(1, k + 1))
    if k <= 2:
        return labels
    pieces, n = ndi.label(labels != values[0])
    if n == 0:
        return labels
    ids = np.arange(1, n + 1)
    mass = np.stack([ndi.sum_labels(np.asarray(probs[c], np.float32), pieces, ids) for c in range(1, k)])
    winner = np.concatenate([[values[0]], values[1:][np.argmax(mass, axis=0)]]).astype(labels.dtype)
    for i in range(labels.shape[0]):   # slice by slice: no second full-size temporary
        m = pieces[i] > 0
        labels[i][m] = winner[pieces[i][m]]
    return labels


one_class_per_object_ = one_class_per_object   # (the keyword of probabilities_to_labels hides it)


def entropy(probs: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Normalised per-pixel entropy (0 = certain, 1 = uniform), slice by slice."""
    k = probs.shape[0]
    if out is None:
        out = np.empty(probs.shape[1:], np.float32)
    for i in range(probs.shape[1]):
        p = np.clip(probs[:, i], 1e-7, 1.0)
        out[i] = -(p * np.log(p)).sum(0) / np.log(k)
    return out
