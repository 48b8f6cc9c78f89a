"""Label-array checks shared by metrics, training and the widgets (numpy only)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UserError, UserTypeError


def check_labels(labels: Any, name: str = "labels") -> np.ndarray:
    """Labels must be non-negative integers (floats holding integers are accepted)."""
    arr = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise UserTypeError(f"{name} must hold whole numbers (got {arr.dtype} with fractional or "
                            "NaN values): labels are 0 = unlabeled, 1..K = classes")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise UserTypeError(f"{name} must be an integer array, got {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size:  # searchsorted/bincount work in int64
        top = int(arr.max())
        if top > np.iinfo(np.int64).max:
            raise UserError(f"{name} hold values up to {top}: too large for label values "
                            "(0 = unlabeled, 1..K = classes)")
        arr = arr.astype(np.int64)
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise UserError(f"{name} contain negative values; labels are 0 = unlabeled, 1..K = classes")
    return arr
