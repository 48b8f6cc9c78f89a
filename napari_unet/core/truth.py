"""How a ground truth's 0 is read before scoring: "unlabeled" (a painting: 0 is ignored) or
"background" (a complete mask: binary 0/1, 0/255, bool, or instance ids with 0 = background).

Scoring a complete mask as a painting would ignore its whole background, so false positives
would never be counted and an all-foreground prediction would score IoU 1. ``truth_zero="auto"``
therefore reads a truth as a complete mask when it is boolean, holds 0 and exactly one other
value, or holds 0 and values above both ``INSTANCE_MIN`` and the prediction's largest class
(instance ids); a complete mask is scored as background (1) against foreground (2). Every
result says which reading was used (``truth_zero`` and ``truth_note``), so that it is never
silent. numpy only.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UserError
from .labels import check_labels

__all__ = ["distinct", "resolve_truth"]

TRUTH_ZERO = ("auto", "background", "unlabeled")
INSTANCE_MIN = 16  # a truth with 0 and values above this (and above the prediction's) holds instance ids
BACKGROUND, FOREGROUND = 1, 2


def distinct(a: np.ndarray, chunk: int = 1 << 24) -> np.ndarray:
    """Sorted distinct values of an integer array, chunked (big stacks need no big sort)."""
    flat = a.reshape(-1)
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2:  # counting is linear, sorting is not
        seen = np.zeros(1 << (8 * a.dtype.itemsize), bool)
        for s in range(0, flat.size, chunk):
            seen |= np.bincount(flat[s:s + chunk], minlength=seen.size) > 0
        return np.flatnonzero(seen).astype(np.int64)
    vals: set = set()
    for s in range(0, flat.size, chunk):
        vals.update(np.unique(flat[s:s + chunk]).tolist())
    return np.array(sorted(vals), dtype=np.int64)


def _binary(a: np.ndarray) -> np.ndarray:
    """0 -> background (1), every other value -> foreground (2)."""
    return np.where(a != 0, FOREGROUND, BACKGROUND).astype(np.uint8)


def _values_text(vals: np.ndarray) -> str:
    nz = vals[vals != 0]
    if nz.size == 0:
        return "0 only"
    if nz.size == 1:
        return f"0 and {int(nz[0])}"
    return f"0 and {nz.size} other values up to {int(nz.max())}"


def resolve_truth(pred: Any, truth: Any, truth_zero: str = "auto") -> tuple[np.ndarray, np.ndarray, dict]:
    """Return ``(pred, truth, info)`` ready for scoring with 0 = unlabeled.

    ``truth_zero``: ``"unlabeled"`` keeps the truth as it is (0 ignored, as in paintings);
    ``"background"`` reads it as a complete mask (truth 0 -> background 1, any other value ->
    foreground 2; a prediction that holds 0 or is boolean is read the same way, since our own
    predictions never hold 0); ``"auto"`` picks "background" for a boolean truth, a truth of 0 and
    one other value (0/1, 0/255), or 0 with instance ids, else "unlabeled".
    ``info``: ``{"truth_zero": "background"|"unlabeled", "truth_note": <one sentence>}``.
    """
    if truth_zero not in TRUTH_ZERO:
        raise UserError(f"truth_zero must be one of {', '.join(TRUTH_ZERO)}, got {truth_zero!r}")
    truth_bool = np.asarray(truth).dtype.kind == "b"
    pred_bool = np.asarray(pred).dtype.kind == "b"
    p = check_labels(pred, "predicted labels")
    t = check_labels(truth, "true labels")
    if p.shape != t.shape:
        raise UserError(f"predicted labels {p.shape} and true labels {t.shape} differ in shape")
    tv = distinct(t)
    has_zero = bool(tv.size) and tv[0] == 0
    if not has_zero and not truth_bool:
        return p, t, {"truth_zero": "unlabeled", "truth_note": "the truth has no 0: every pixel is scored"}
    mode, why = truth_zero, "as asked"
    if truth_zero == "auto":
        nz = tv[tv != 0]
        pmax = int(p.max(initial=0))
        if truth_bool:
            mode, why = "background", "the truth is a boolean mask"
        elif nz.size == 1:
            mode, why = "background", f"the truth is a binary mask of {_values_text(tv)}"
        elif nz.size and nz.max() > max(INSTANCE_MIN, pmax):
            mode, why = "background", f"the truth looks like an instance mask: {_values_text(tv)}"
        else:
            mode, why = "unlabeled", f"the truth looks like a painting: {_values_text(tv)}"
    if mode == "unlabeled":
        ignored = int(t.size - np.count_nonzero(t))
        return p, t, {"truth_zero": "unlabeled",
                      "truth_note": f"truth 0 read as unlabeled ({why}): {ignored} pixels ignored"}
    note = f"truth 0 read as background ({why}): 0 scored as class 1, every other value as class 2"
    if pred_bool or (p.size and np.count_nonzero(p) < p.size):
        p = _binary(p)
        note += "; the prediction holds 0 too, read the same way"
    return p, _binary(t), {"truth_zero": "background", "truth_note": note}
