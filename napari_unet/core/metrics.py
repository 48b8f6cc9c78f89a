"""IoU/Dice against ground truth, and the error map for the overlay layer.

Pixels where the truth is 0 (unlabeled) are ignored, as in paintings, unless the truth is a
complete mask whose 0 means background (binary, boolean, instance ids): see ``core.truth``.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .labels import check_labels
from .truth import resolve_truth

__all__ = ["confusion", "evaluate", "per_slice_scores", "error_map", "format_score"]

NO_OBJECT_CLASS_NOTE = ("neither the truth nor the prediction holds a class above 1 (only background): "
                        "its IoU/Dice are undefined (0/0), and so are the means (n/a)")

# error-map codes (also used for the overlay layer's colours and legend)
ERR_IGNORED = 0  # truth unlabeled, or correctly predicted background
ERR_TP = 1       # correct foreground class
ERR_FP = 2       # predicted foreground where the truth is background
ERR_FN = 3       # truth foreground predicted as background
ERR_WRONG = 4    # foreground predicted as another foreground class
ERROR_NAMES = {ERR_TP: "true positive", ERR_FP: "false positive", ERR_FN: "false negative",
               ERR_WRONG: "wrong class"}


def _pair(pred: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    p = check_labels(pred, "predicted labels")
    t = check_labels(truth, "true labels")
    if p.shape != t.shape:
        raise UserError(f"predicted labels {p.shape} and true labels {t.shape} differ in shape")
    return p, t


def confusion(pred: Any, truth: Any, chunk: int = 1 << 24) -> tuple[np.ndarray, np.ndarray]:
    """Return (values, matrix) with matrix[i, j] = #pixels truth==values[i], pred==values[j],
    over pixels where truth != 0; chunked so big stacks need no big temporaries."""
    p, t = _pair(pred, truth)
    pf, tf = p.reshape(-1), t.reshape(-1)
    vals = set()
    for s in range(0, tf.size, chunk):
        tt, pp = tf[s:s + chunk], pf[s:s + chunk]
        m = tt != 0
        vals.update(np.unique(tt[m]).tolist())
        vals.update(np.unique(pp[m]).tolist())
    values = np.array(sorted(vals), dtype=np.int64)
    n = len(values)
    mat = np.zeros((n, n), np.int64)
    if n == 0:
        return values, mat
    for s in range(0, tf.size, chunk):
        tt, pp = tf[s:s + chunk], pf[s:s + chunk]
        m = tt != 0
        ti = np.searchsorted(values, tt[m])
        pi = np.searchsorted(values, pp[m])
        mat += np.bincount(ti * n + pi, minlength=n * n).reshape(n, n)
    return values, mat


def evaluate(pred_labels: Any, true_labels: Any, *, class_names: Sequence[str] | None = None,
             truth_zero: str = "auto") -> dict:
    """Per-class IoU and Dice with TP/FP/FN pixel counts, and their means.

    Returns ``{"classes": {value: {"iou", "dice", "tp", "fp", "fn", "name"}}, "mean_iou",
    "mean_dice", "foreground_iou", "foreground_dice", "foreground", "pixels", "ignored",
    "truth_zero", "truth_note", "note" (only where a score is undefined)}``. Class 1 is background by convention; ``foreground_*`` merge every class
    above 1 into one (a binary foreground score). A class absent from both prediction and truth
    is left out. Predicted 0 (no prediction) counts as a miss.
    Scores never flatter: when no class above 1 appears in the truth or the prediction (only
    background), ``mean_iou``, ``mean_dice``, ``foreground_iou`` and ``foreground_dice`` are NaN
    (undefined, 0/0; a mean of the background alone is no segmentation score) and ``note`` says
    so; class 1 keeps its own row. With no labelled pixel at all, ``classes`` is empty and the
    means are NaN.
    ``truth_zero`` ("auto", "background", "unlabeled"): how the truth's 0 is read (see
    :func:`napari_unet.core.truth.resolve_truth`); ``truth_zero``/``truth_note`` in the result
    say which reading was used.

    Args:
        pred_labels: predicted labels (1..K; 0 = no prediction).
        true_labels: truth of the same shape (0 = unlabeled, or background, see ``truth_zero``).
        class_names: names for the class values (default: "class N").
        truth_zero: "auto", "background" or "unlabeled".

    Returns:
        The scores dict described above.

    Raises:
        ValueError / TypeError: labels that are not non-negative integers, shapes that differ,
            or an unknown ``truth_zero``.
    """
    pred_labels, true_labels, how = resolve_truth(pred_labels, true_labels, truth_zero)
    values, mat = confusion(pred_labels, true_labels)
    total = int(mat.sum())
    n_pixels = int(np.asarray(true_labels).size)
    classes: dict[int, dict[str, Any]] = {}
    for i, v in enumerate(values.tolist()):
        if v == 0:
            continue
        tp = int(mat[i, i])
        fp = int(mat[:, i].sum() - tp)
        fn = int(mat[i, :].sum() - tp)
        if tp + fp + fn == 0:
            continue
        name = (class_names[v - 1] if class_names is not None and 0 < v <= len(class_names)
                else ("background" if v == 1 else f"class {v}"))
        classes[v] = {"name": name, "iou": tp / (tp + fp + fn), "dice": 2 * tp / (2 * tp + fp + fn),
                      "tp": tp, "fp": fp, "fn": fn}
    result: dict[str, Any] = {
        "classes": classes,
        "mean_iou": float(np.mean([c["iou"] for c in classes.values()])) if classes else float("nan"),
        "mean_dice": float(np.mean([c["dice"] for c in classes.values()])) if classes else float("nan"),
        "pixels": total,
        "ignored": n_pixels - total,
        **how,
    }
    # binary foreground (every class > 1) against background (1) and unpredicted (0)
    fg = values > 1
    tp = int(mat[np.ix_(fg, fg)].sum())
    fp = int(mat[np.ix_(~fg, fg)].sum())
    fn = int(mat[np.ix_(fg, ~fg)].sum())
    if tp + fp + fn:
        result["foreground_iou"] = tp / (tp + fp + fn)
        result["foreground_dice"] = 2 * tp / (2 * tp + fp + fn)
        result["foreground"] = {"tp": tp, "fp": fp, "fn": fn}
    elif classes:  # background only, on both sides: nothing to score but the background
        nan = float("nan")
        result.update(mean_iou=nan, mean_dice=nan, foreground_iou=nan, foreground_dice=nan,
                      foreground={"tp": 0, "fp": 0, "fn": 0}, note=NO_OBJECT_CLASS_NOTE)
    return result


def format_score(value: Any, spec: str = ".3f", missing: str = "n/a") -> str:
    """``format(value, spec)``, or ``missing`` (as wide as ``spec`` asks) for an undefined score
    (NaN or None): the command line and the widgets show "n/a", never "nan"."""
    if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        width = spec.split(".")[0].lstrip("<>^=+- ")
        return f"{missing:>{width}}" if width.isdigit() else missing
    return format(value, spec)


def per_slice_scores(pred_labels: Any, true_labels: Any, *, truth_zero: str = "auto") -> list[dict]:
    """``evaluate`` for every slice of a stack (first axis); the truth's 0 is read once, for
    the whole stack."""
    p, t, how = resolve_truth(pred_labels, true_labels, truth_zero)
    if p.ndim < 3:
        raise UserError("per-slice scores need a stack (Z, Y, X)")
    return [{**evaluate(p[i], t[i], truth_zero="unlabeled"), **how} for i in range(p.shape[0])]


def error_map(pred_labels: Any, true_labels: Any, *, class_value: int | None = None,
              truth_zero: str = "auto") -> np.ndarray:
    """uint8 map: 1 true positive, 2 false positive, 3 false negative, 4 wrong foreground class,
    0 elsewhere (unlabeled truth, correct background).

    With ``class_value`` the map is for that one class against all others. ``truth_zero`` as
    in :func:`evaluate`.
    """
    p, t, _ = resolve_truth(pred_labels, true_labels, truth_zero)
    out = np.zeros(t.shape, np.uint8)
    labelled = t != 0
    if class_value is None:
        pf, tf = p > 1, t > 1
        out[labelled & pf & tf & (p == t)] = ERR_TP
        out[labelled & pf & tf & (p != t)] = ERR_WRONG
        out[labelled & pf & ~tf] = ERR_FP
        out[labelled & ~pf & tf] = ERR_FN
    else:
        pc, tc = p == class_value, t == class_value
        out[labelled & pc & tc] = ERR_TP
        out[labelled & pc & ~tc] = ERR_FP
        out[labelled & ~pc & tc] = ERR_FN
    return out
