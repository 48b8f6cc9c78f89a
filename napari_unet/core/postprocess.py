"""Post-processing of predicted probabilities (numpy only): labels and uncertainty."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .checks import check_threshold
from .labels import labels_dtype

__all__ = ["labels_dtype", "probabilities_to_labels", "one_class_per_object", "entropy",
           "object_class_evidence", "classes_are_kinds", "suggests_one_class_per_object"]

# classes_are_kinds: each of two object classes painted in at least this many predicted objects
# that hold paint of that class only, and at most this share of painted objects holding two
KINDS_MIN_OBJECTS = 2
KINDS_MAX_MIXED = 0.1


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


def object_class_evidence(labels: np.ndarray, paint: np.ndarray, background: int = 1) -> dict:
    """What a model's objects and the paint say about its classes: kinds of object or parts of
    one. The objects are the connected pieces of non-``background`` pixels of ``labels`` (by
    faces); a leading axis of separate crops (or planes) is labelled item by item; ``paint`` as
    ``labels`` (0 unpainted, 1 background, 2.. classes). Returns counts:

    - ``pure``: {class: objects whose painted object pixels are all of that class};
    - ``mixed``: objects painted with two classes or more;
    - ``multi``: objects the labels split between classes (the smaller share at least 10% of
      at least 30 pixels), and ``enclosed``: those of them whose smaller class lies wholly
      inside (touches neither the background nor the crop's border), as a nucleus in its cell.
    """
    from scipy import ndimage as ndi

    if labels.shape != paint.shape:
        raise ValueError(f"labels of shape {labels.shape} and paint of shape {paint.shape} differ")
    ev: dict = {"pure": {}, "mixed": 0, "multi": 0, "enclosed": 0}
    for lab, pt in zip(labels, paint):   # one crop (or plane) at a time
        pieces, n = ndi.label(lab != background)
        if n == 0:
            continue
        obj = (pt >= 2) & (pieces > 0)
        if obj.any():
            where = np.where(obj, pieces, 0)
            ids = np.unique(where[where > 0])
            lo = np.asarray(ndi.minimum(pt, where, ids), np.int64)
            hi = np.asarray(ndi.maximum(pt, where, ids), np.int64)
            ev["mixed"] += int((lo != hi).sum())
            for c in lo[lo == hi]:
                ev["pure"][int(c)] = ev["pure"].get(int(c), 0) + 1
        outside = np.pad(lab == background, 1, constant_values=True)   # the border counts as outside
        touch = ndi.binary_dilation(outside)[(slice(1, -1),) * lab.ndim]
        for i, sl in enumerate(ndi.find_objects(pieces), 1):
            m = pieces[sl] == i
            vals, counts = np.unique(lab[sl][m], return_counts=True)
            if len(vals) < 2 or counts.min() < max(30, 0.1 * m.sum()):
                continue
            ev["multi"] += 1
            minority = vals[np.argmin(counts)]
            ev["enclosed"] += not bool((touch[sl][m] & (lab[sl][m] == minority)).any())
    return ev


def classes_are_kinds(evidence: dict) -> bool:
    """Whether :func:`object_class_evidence` shows the object classes as kinds of object (each
    object one class: dim and bright nuclei, cell types) rather than parts of one (a nucleus in
    its cytoplasm): at least two classes each painted alone in ``KINDS_MIN_OBJECTS`` objects,
    at most ``KINDS_MAX_MIXED`` of the painted objects holding two classes (touching objects
    the model joins), and of the objects the model splits between classes, at most half with
    one class wholly inside the other (a pixel classifier unsure of a kind splits an object
    side by side more often; parts of one object nest)."""
    pure, mixed = evidence["pure"], evidence["mixed"]
    painted = sum(pure.values()) + mixed
    alone = sum(1 for n in pure.values() if n >= KINDS_MIN_OBJECTS)
    nested = evidence["enclosed"] > 0.5 * evidence["multi"]
    return alone >= 2 and mixed <= KINDS_MAX_MIXED * painted and not nested


def suggests_one_class_per_object(meta: dict | None) -> bool:
    """Whether a model's record says to give each object one class (``meta["one_class_per_object"]``,
    set by training from the paint: :func:`classes_are_kinds`); models of two classes never."""
    meta = meta or {}
    return bool(meta.get("one_class_per_object")) and int(meta.get("classes", 2)) > 2


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
