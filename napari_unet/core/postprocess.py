"""Post-processing of predicted probabilities (numpy only): labels and uncertainty."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .checks import check_threshold
from .labels import labels_dtype

__all__ = ["labels_dtype", "probabilities_to_labels", "entropy"]


def probabilities_to_labels(probs: np.ndarray, class_values: Sequence[int] | None = None,
                            threshold: float | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Label image from probabilities: argmax, or (two classes) foreground where p >= threshold.

    Values are the class label values (1..K by default), as in paintings. Done slice by slice
    along the first spatial axis to keep memory low.
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
