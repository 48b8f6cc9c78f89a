"""Label rules shared by metrics, training, prediction outputs and the widgets (numpy only):
the label validator, the dtype of a label image and the note on a class painted too little."""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UserError, UserTypeError, say

__all__ = ["check_labels", "labels_dtype", "scarce_paint"]

# a painted class holding less than this share of all the paint gets a note when training starts
SCARCE_SHARE = 0.02


def labels_dtype(max_value: int) -> np.dtype:
    """The dtype of a label image whose largest value is ``max_value``: uint8 up to 255, else
    uint16 (the one rule for predicted labels, their files and layers, and filled paintings)."""
    return np.dtype(np.uint8 if max_value < 256 else np.uint16)


def check_labels(labels: Any, name: str = "labels", *, whole_floats: bool = True) -> np.ndarray:
    """Labels must be non-negative integers (0 = unlabeled, 1..K = classes); booleans become
    uint8. Floats holding whole numbers are accepted when ``whole_floats`` (scores of masks
    saved as float), refused otherwise (training: a float painting is a mistake to fix)."""
    arr = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if arr.dtype.kind == "b":
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f" and not whole_floats:
        raise UserTypeError(f"{name} must be an integer array (0 = unlabeled, 1..K = classes), got "
                            f"{arr.dtype}; " + say("if it holds whole numbers convert it with .astype(np.uint8)",
                                                   "save the labels as an integer (uint8 or uint16) image"))
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise UserTypeError(f"{name} must hold whole numbers (got {arr.dtype} with fractional or "
                            "NaN values): labels are 0 = unlabeled, 1..K = classes")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise UserTypeError(f"{name} must be an integer array (0 = unlabeled, 1..K = classes), got {arr.dtype}")
    if arr.dtype == np.uint64 and arr.size:  # searchsorted/bincount work in int64
        top = int(arr.max())
        if top > np.iinfo(np.int64).max:
            raise UserError(f"{name} hold values up to {top}: too large for label values "
                            "(0 = unlabeled, 1..K = classes)")
        arr = arr.astype(np.int64)
    if arr.size and arr.dtype.kind == "i" and arr.min() < 0:
        raise UserError(f"{name} contain negative values; labels are 0 = unlabeled, 1..K = classes")
    return arr


def scarce_paint(counts: dict, names: list[str] | None = None) -> str:
    """A note, or "", on the painted classes that hold less than ``SCARCE_SHARE`` of all the
    paint (``counts``: painted pixels per class value 1..K, for every image together). A class
    painted in a few spots only is learnt from those spots: a network that sees 31 background
    pixels against 5,000 object pixels gives nearly everything to the objects, and nothing in
    the paint tells it otherwise (the held-out strokes then read low). Unpainted classes are
    not mentioned: they are a choice, not a slip."""
    counts = {int(k): int(v) for k, v in counts.items() if int(v) > 0}
    total = sum(counts.values())
    if total == 0 or len(counts) < 2:
        return ""
    few = [(k, v) for k, v in sorted(counts.items()) if v < SCARCE_SHARE * total]
    if not few:
        return ""

    def name(k: int) -> str:
        n = names[k - 1] if names and k - 1 < len(names) else None
        return f"{n} (class {k})" if n and n != f"class {k}" else f"class {k}"

    parts = [f"{name(k)} holds {v:,} of the {total:,} painted pixels ({100 * v / total:.1f}%)"
             for k, v in few]
    them = "it" if len(few) == 1 else "them"
    return (f"{'; '.join(parts)}: the network learns {them} from a few spots and may give most of "
            f"the image to the other classes; paint {them} in more places")
