"""Object-level scores: match predicted to true objects by IoU, as StarDist's ``matching`` and
the cell-tracking community do, plus splits, merges and an overlay of matched/missed/false objects.

Objects come from a label image: an instance mask (0 = background, one id per object) is used as
is; a semantic mask (a binary 0/1 or 0/255 mask, or napari-unet's class labels 1..K with
1 = background) becomes objects by connected components (:func:`as_objects`).

At an IoU threshold ``t >= 0.5`` a true object can overlap at most one predicted object by more
than ``t`` (and vice versa), so the matching is unique; pairs are taken greedily by decreasing
IoU, which is the optimal (Hungarian) matching there. Counts per threshold: TP (matched pairs),
FP (unmatched predictions), FN (unmatched truths); precision TP/(TP+FP), recall TP/(TP+FN),
F1 2TP/(2TP+FP+FN), and average precision as StarDist defines it, TP/(TP+FP+FN).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .labels import check_labels

__all__ = ["label_kind", "as_objects", "match_objects", "object_overlay", "format_object_scores"]

NAN = float("nan")
THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55, ..., 0.95

# overlay codes (same colours as the pixel error overlay: green, red, blue)
OBJ_MATCHED, OBJ_FALSE, OBJ_MISSED = 1, 2, 3
OVERLAY_NAMES = {OBJ_MATCHED: "matched object", OBJ_FALSE: "false object", OBJ_MISSED: "missed object"}


def label_kind(labels: Any) -> str:
    """``"instance"`` for a mask with 0 and two or more other values, else ``"semantic"``."""
    arr = check_labels(labels)
    present = np.unique(arr)
    return "instance" if len(present) >= 3 and present[0] == 0 else "semantic"


def as_objects(labels: Any, kind: str = "auto", class_value: int | None = None) -> np.ndarray:
    """Object ids (0 = background, int32/int64) from a label image.

    ``kind="instance"``: the ids as they are. ``kind="semantic"``: connected components of the
    foreground; the foreground is ``class_value`` if given, else every non-zero value when the
    image holds a 0 (a mask whose 0 means background), else every value above 1 (napari-unet's
    class labels, 1 = background); components are found per class, so touching objects of
    different classes stay apart. ``kind="auto"``: :func:`label_kind` decides.
    """
    from scipy import ndimage as ndi

    arr = check_labels(labels)
    if kind == "auto":
        kind = label_kind(arr)
    if kind == "instance":
        if class_value is not None:
            raise UserError("class_value applies to semantic labels, not to an instance mask")
        return arr
    if kind != "semantic":
        raise UserError(f"kind must be 'auto', 'instance' or 'semantic', got {kind!r}")
    if class_value is not None:
        classes = [int(class_value)]
    else:
        present = np.unique(arr)
        classes = [int(v) for v in present if v > (0 if present[0] == 0 else 1)]
    out = np.zeros(arr.shape, np.int64 if arr.size >= 2 ** 31 else np.int32)
    n = 0
    for v in classes:
        comp, k = ndi.label(arr == v)
        if k:
            m = comp > 0
            out[m] = comp[m] + n
            n += k
    return out


def _objects(labels: Any, kind: str, class_value: int | None) -> np.ndarray:
    arr = check_labels(labels)
    kind = label_kind(arr) if kind == "auto" else kind
    return as_objects(arr, kind, class_value if kind == "semantic" else None)


def _contingency(pred: np.ndarray, truth: np.ndarray):
    """(true ids, pred ids, overlap pairs (t, p, count), sizes) over non-zero pixels only."""
    t, p = truth.ravel(), pred.ravel()
    t_ids, t_size = np.unique(t[t > 0], return_counts=True)
    p_ids, p_size = np.unique(p[p > 0], return_counts=True)
    both = (t > 0) & (p > 0)
    if both.any():
        pairs, counts = np.unique(np.stack([t[both], p[both]]).astype(np.int64), axis=1,
                                  return_counts=True)
    else:
        pairs, counts = np.zeros((2, 0), np.int64), np.zeros(0, np.int64)
    return t_ids, t_size, p_ids, p_size, pairs, counts


def _mean_defined(values: Sequence[float]) -> float:
    """The mean of the values that are defined (not NaN); NaN if none is."""
    vals = [v for v in values if not np.isnan(v)]
    return float(np.mean(vals)) if vals else NAN


def empty_note(n_true: int, n_pred: int, class_value: int | None = None) -> str:
    """One sentence on the scores left undefined (NaN) because a side holds no object; "" if none."""
    obj = "object" + (f" of class {class_value}" if class_value is not None else "")
    if not n_true and not n_pred:
        return (f"neither the truth nor the prediction holds an {obj}: precision, recall, F1 and AP "
                "are undefined (n/a)")
    if not n_pred:
        return f"the prediction holds no {obj}: precision is undefined (n/a)"
    if not n_true:
        return f"the truth holds no {obj}: recall is undefined (n/a)"
    return ""


def match_objects(pred: Any, truth: Any, *, thresholds: Sequence[float] = THRESHOLDS,
                  pred_kind: str = "auto", truth_kind: str = "auto",
                  class_value: int | None = None) -> dict:
    """Match predicted and true objects; see the module docstring for the definitions.

    Returns ``{"thresholds": [{"threshold", "tp", "fp", "fn", "precision", "recall", "f1",
    "ap", "mean_matched_iou"}, ...], "n_true", "n_pred", "splits", "merges", "mean_ap",
    "f1_50", "matches": [(true id, pred id, IoU) at 0.5, or at the first threshold without
    0.5], "note" (only where a score is undefined)}`` where ``ap`` is StarDist's
    TP/(TP+FP+FN) and ``mean_ap`` its mean over the thresholds. A score whose denominator is 0
    is undefined and NaN, never 0 or 1: precision without predicted objects, recall without true
    objects, F1 and AP when neither side holds an object (and ``mean_matched_iou`` without a
    match); ``mean_ap`` is the mean of the defined values (NaN if none), and ``note`` says why. ``splits``: true objects with
    at least two predicted objects that lie mostly (more than half) inside them; ``merges``:
    predicted objects that contain more than half of each of at least two true objects.
    ``class_value``: for semantic labels, score only that class's objects.
    """
    p = _objects(pred, pred_kind, class_value)
    t = _objects(truth, truth_kind, class_value)
    if p.shape != t.shape:
        raise UserError(f"predicted labels {p.shape} and true labels {t.shape} differ in shape")
    t_ids, t_size, p_ids, p_size, pairs, counts = _contingency(p, t)
    ts = dict(zip(t_ids.tolist(), t_size.tolist()))
    ps = dict(zip(p_ids.tolist(), p_size.tolist()))
    tt, pp = pairs[0].tolist(), pairs[1].tolist()
    inter = counts.astype(float)
    union = np.array([ts[a] + ps[b] for a, b in zip(tt, pp)], float) - inter
    iou = inter / np.maximum(union, 1)
    order = np.argsort(-iou, kind="stable")
    rows = []
    matches_50: list[tuple[int, int, float]] = []
    n_true, n_pred = len(t_ids), len(p_ids)
    for thr in thresholds:
        used_t, used_p, matched = set(), set(), []
        for k in order:
            if iou[k] < thr:
                break
            a, b = tt[k], pp[k]
            if a in used_t or b in used_p:
                continue
            used_t.add(a)
            used_p.add(b)
            matched.append((a, b, float(iou[k])))
        tp = len(matched)
        fp, fn = n_pred - tp, n_true - tp
        rows.append({"threshold": float(thr), "tp": tp, "fp": fp, "fn": fn,  # 0/0 is NaN, not 0 or 1
                     "precision": tp / (tp + fp) if tp + fp else NAN,
                     "recall": tp / (tp + fn) if tp + fn else NAN,
                     "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else NAN,
                     "ap": tp / (tp + fp + fn) if tp + fp + fn else NAN,
                     "mean_matched_iou": float(np.mean([m[2] for m in matched])) if matched else NAN})
        if abs(thr - 0.5) < 1e-9 or not matches_50 and thr == thresholds[0]:
            matches_50 = matched
    # splits / merges: majority containment
    splits_of: dict[int, int] = {}
    merges_of: dict[int, int] = {}
    for a, b, c in zip(tt, pp, counts.tolist()):
        if 2 * c > ps[b]:          # pred b lies mostly inside truth a
            splits_of[a] = splits_of.get(a, 0) + 1
        if 2 * c > ts[a]:          # truth a lies mostly inside pred b
            merges_of[b] = merges_of.get(b, 0) + 1
    result = {
        "thresholds": rows, "n_true": n_true, "n_pred": n_pred,
        "splits": sum(1 for v in splits_of.values() if v >= 2),
        "merges": sum(1 for v in merges_of.values() if v >= 2),
        "mean_ap": _mean_defined([r["ap"] for r in rows]),
        "matches": matches_50,
    }
    note = empty_note(n_true, n_pred, class_value)
    if note:
        result["note"] = note
    at50 = next((r for r in rows if abs(r["threshold"] - 0.5) < 1e-9), None)
    if at50 is not None:
        result["f1_50"] = at50["f1"]
    return result


def object_overlay(pred: Any, truth: Any, *, threshold: float = 0.5, pred_kind: str = "auto",
                   truth_kind: str = "auto") -> np.ndarray:
    """uint8 map: 1 = pixels of matched predicted objects, 2 = false (unmatched) predicted
    objects, 3 = missed (unmatched) true objects where no predicted object lies; 0 elsewhere."""
    p = _objects(pred, pred_kind, None)
    t = _objects(truth, truth_kind, None)
    if threshold < 0.5:
        raise UserError(f"the overlay threshold must be at least 0.5, got {threshold}")
    matched = match_objects(p, t, thresholds=(threshold,), pred_kind="instance",
                            truth_kind="instance")["matches"]
    mp = np.zeros(int(p.max(initial=0)) + 1, bool)
    mt = np.zeros(int(t.max(initial=0)) + 1, bool)
    for a, b, _ in matched:
        mt[a], mp[b] = True, True
    out = np.zeros(p.shape, np.uint8)
    out[(t > 0) & ~mt[t]] = OBJ_MISSED
    out[(p > 0) & ~mp[p]] = OBJ_FALSE
    out[(p > 0) & mp[p]] = OBJ_MATCHED
    return out


def format_object_scores(res: dict) -> str:
    """A text table of :func:`match_objects`' result (for the command line); an undefined
    score (NaN) reads "n/a"."""
    from .metrics import format_score

    rows = [f"{res['n_true']} true objects, {res['n_pred']} predicted; "
            f"{res['splits']} split, {res['merges']} merged (majority overlap)",
            f"{'IoU>=':>6} {'TP':>6} {'FP':>6} {'FN':>6} {'prec':>6} {'recall':>6} {'F1':>6} {'AP':>6} {'mIoU':>6}"]
    for r in res["thresholds"]:
        scores = " ".join(format_score(r[k], "6.3f") for k in ("precision", "recall", "f1", "ap", "mean_matched_iou"))
        rows.append(f"{r['threshold']:6.2f} {r['tp']:6d} {r['fp']:6d} {r['fn']:6d} {scores}")
    if res["thresholds"]:
        rows.append(f"mean AP over IoU {res['thresholds'][0]['threshold']:.2f}..{res['thresholds'][-1]['threshold']:.2f}: "
                    f"{format_score(res['mean_ap'], '.3f')}")
    if res.get("note"):
        rows.append(res["note"])
    return "\n".join(rows)
