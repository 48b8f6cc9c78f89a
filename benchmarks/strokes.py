"""Simulated painting for the quality benchmark: strokes a person would draw, from a truth mask.

Every generator takes the semantic truth (``1`` = background, ``2..K`` = classes, no 0), is
seeded (a ``numpy.random.Generator`` or an int), returns a fresh ``uint8`` stroke array
(``0`` = unpainted) and paints only pixels whose truth is the painted class. numpy + scipy, plus
scikit-image's ``skeletonize`` for thin classes.

Styles:

- :func:`lines` -- for each object class, a 3-px line along the principal axis of 30% of its
  objects (connected components, or ``instances`` where given, each eroded by 1 px so a stroke
  never sits on an object's border). A *thin* class (a network such as EM membranes or cell
  boundaries: its largest component holds most of its pixels) gets short segments along its
  skeleton instead. Background: 20-40 px lines, every pixel of which lies more than
  ``margin`` px (Euclidean) from any non-background pixel, as a person keeps a gap to borders.
- :func:`blobs` -- a disk in the interior of 30% of the objects (radius a third of the object's
  inscribed radius; dots on the skeleton for a thin class) and a few disks far out in the
  background.
- :func:`planes` -- a stack painted on every ``step``-th plane only, :func:`lines` in each.
- :func:`corrections` -- the interactive loop's new strokes: one stroke along the middle of each
  of the wrongly predicted regions with the most room for a 3-px brush, of the true class there
  (what a user paints from the error overlay; a 1-px rim along a border is left alone).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

BACKGROUND = 1
_DIRS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _paint(out: np.ndarray, allowed: np.ndarray, ys, xs, value: int, halo: int = 1) -> None:
    """Paint a (2*halo+1)-wide brush at (ys, xs), only where ``allowed``."""
    h, w = out.shape
    for y, x in zip(ys, xs):
        y0, y1, x0, x1 = max(y - halo, 0), min(y + halo + 1, h), max(x - halo, 0), min(x + halo + 1, w)
        if y0 < y1 and x0 < x1:
            a = allowed[y0:y1, x0:x1]
            out[y0:y1, x0:x1][a] = value


def is_thin(mask: np.ndarray) -> bool:
    """A class is thin (a network) when its largest connected component holds over half of it."""
    comp, n = ndi.label(mask)
    if n == 0:
        return False
    return np.bincount(comp.ravel())[1:].max() > 0.5 * mask.sum()


def _objects(sem: np.ndarray, cls: int, instances: np.ndarray | None):
    """(label image, ids) of the objects of class ``cls``: instances where given, else components."""
    mask = sem == cls
    if instances is not None:
        lab = np.where(mask, instances, 0)
        return lab, np.unique(lab[lab > 0])
    lab, n = ndi.label(mask)
    return lab, np.arange(1, n + 1)


def _pick(rng, ids, fraction: float):
    ids = np.asarray(ids)
    if len(ids) == 0:
        return ids
    return rng.choice(ids, max(1, int(round(fraction * len(ids)))), replace=False)


def object_lines(sem, cls, seed=0, *, fraction=0.3, instances=None, out=None) -> np.ndarray:
    """A 3-px line along the principal axis of ``fraction`` of the objects of ``cls`` (2D),
    inside each object eroded by 1 px (the acceptance check's convention)."""
    rng = _rng(seed)
    out = np.zeros(sem.shape, np.uint8) if out is None else out
    lab, ids = _objects(sem, cls, instances)
    boxes = ndi.find_objects(lab)
    for i in _pick(rng, ids, fraction):
        sl = boxes[int(i) - 1]
        if sl is None:
            continue
        sl = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        m = ndi.binary_erosion(lab[sl] == i, iterations=1)
        ys, xs = np.nonzero(m)
        if len(ys) < 5:
            continue
        ev, v = np.linalg.eigh(np.cov(np.stack([ys, xs])) + 1e-6 * np.eye(2))
        d, h = v[:, -1], 1.2 * np.sqrt(ev[-1])
        t = np.linspace(-h, h, int(4 * h) + 2)
        py = np.round(ys.mean() + t * d[0]).astype(int)
        px = np.round(xs.mean() + t * d[1]).astype(int)
        ok = (py >= 0) & (py < m.shape[0]) & (px >= 0) & (px < m.shape[1])
        _paint(out[sl], m, py[ok], px[ok], cls)
    return out


def _walk(skel: np.ndarray, start, length: int, visited: np.ndarray) -> list:
    """Follow the skeleton from ``start`` for up to ``length`` pixels, going as straight as it
    allows, never revisiting a pixel."""
    h, w = skel.shape
    path, (y, x), prev = [start], start, None
    visited[start] = True
    while len(path) < length:
        best, best_score = None, None
        for dy, dx in _DIRS:
            yy, xx = y + dy, x + dx
            if 0 <= yy < h and 0 <= xx < w and skel[yy, xx] and not visited[yy, xx]:
                score = 0.0 if prev is None else -(dy * prev[0] + dx * prev[1]) / np.hypot(dy, dx)
                if best is None or score < best_score:
                    best, best_score = (yy, xx, dy, dx), score
        if best is None:
            break
        y, x, prev = best[0], best[1], (best[2], best[3])
        visited[y, x] = True
        path.append((y, x))
    return path


def skeleton_segments(sem, cls, seed=0, *, fraction=0.1, length=20, out=None) -> np.ndarray:
    """Short strokes (``length`` px, 3 px wide, clipped to the class) along the skeleton of a
    thin class (2D), together covering about ``fraction`` of the skeleton."""
    from skimage.morphology import skeletonize

    rng = _rng(seed)
    out = np.zeros(sem.shape, np.uint8) if out is None else out
    mask = sem == cls
    skel = skeletonize(mask)
    pts = np.argwhere(skel)
    if len(pts) == 0:
        return out
    n = max(3, int(round(fraction * len(pts) / length)))
    visited = np.zeros(skel.shape, bool)
    # keep segments apart: a start is never within 2 * length of an earlier one
    far = np.ones(skel.shape, bool)
    for k in rng.permutation(len(pts)):
        if n == 0:
            break
        y, x = (int(v) for v in pts[k])
        if visited[y, x] or not far[y, x]:
            continue
        path = _walk(skel, (y, x), length, visited)
        if len(path) < 5:
            continue
        py, px = np.array(path).T
        _paint(out, mask, py, px, cls)
        far[max(y - 2 * length, 0):y + 2 * length, max(x - 2 * length, 0):x + 2 * length] = False
        n -= 1
    return out


def background_lines(sem, seed=0, *, margin=4, n=10, length=(20, 41), out=None) -> np.ndarray:
    """``n`` straight background strokes of 20-40 px, 3 px wide, each pixel more than
    ``margin`` px from any non-background pixel (2D). A stroke starts at a random allowed pixel
    and stops where it would come closer to an object."""
    rng = _rng(seed)
    out = np.zeros(sem.shape, np.uint8) if out is None else out
    allowed = ndi.distance_transform_edt(sem == BACKGROUND) > margin
    starts = np.argwhere(allowed)
    if len(starts) == 0:
        return out
    h, w = sem.shape
    for _ in range(n):
        y, x = starts[rng.integers(len(starts))]
        a = rng.uniform(0, np.pi)
        half = int(rng.integers(*length)) // 2
        pys, pxs = [], []
        for sign in (1, -1):
            for t in range(0 if sign == 1 else 1, half + 1):
                yy, xx = int(round(y + sign * t * np.sin(a))), int(round(x + sign * t * np.cos(a)))
                if not (0 <= yy < h and 0 <= xx < w and allowed[yy, xx]):
                    break
                pys.append(yy)
                pxs.append(xx)
        _paint(out, allowed, pys, pxs, BACKGROUND)
    return out


def _classes(sem):
    return [int(c) for c in np.unique(sem) if c > BACKGROUND]


def _n_objects(sem, classes, thin, instances) -> int:
    """Objects a person sees: components of the object classes, or the background regions
    (cells) between the lines of a thin class."""
    if all(thin.get(c, False) for c in classes):
        return ndi.label(sem == BACKGROUND)[1]
    return sum(len(_objects(sem, c, instances)[1]) for c in classes if not thin.get(c, False))


def lines(sem, seed=0, *, margin=4, fraction=0.3, instances=None, thin=None,
          n_background=None) -> np.ndarray:
    """Style "lines" on a 2D truth: object lines (skeleton segments for thin classes) and
    background lines kept ``margin`` px from any object (``n_background`` of them, default
    30% of the objects' count, at least 5). ``thin``: {class: bool}, default :func:`is_thin`
    of each class."""
    rng = _rng(seed)
    out = np.zeros(sem.shape, np.uint8)
    classes = _classes(sem)
    thin = thin if thin is not None else {c: is_thin(sem == c) for c in classes}
    for c in classes:
        if thin.get(c, False):
            skeleton_segments(sem, c, rng, fraction=fraction / 3, out=out)
        else:
            object_lines(sem, c, rng, fraction=fraction, instances=instances, out=out)
    n_bg = n_background if n_background is not None else max(
        5, int(0.3 * _n_objects(sem, classes, thin, instances)))
    background_lines(sem, rng, margin=margin, n=n_bg, out=out)
    return out


def _disk(out, allowed, cy, cx, r, value) -> None:
    r = max(1.0, float(r))
    ri = int(np.ceil(r))
    h, w = out.shape
    y0, y1, x0, x1 = max(cy - ri, 0), min(cy + ri + 1, h), max(cx - ri, 0), min(cx + ri + 1, w)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    d = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & allowed[y0:y1, x0:x1]
    out[y0:y1, x0:x1][d] = value


def blobs(sem, seed=0, *, fraction=0.3, instances=None, thin=None) -> np.ndarray:
    """Style "blobs" on a 2D truth: a disk at the centre of ``fraction`` of the objects (radius
    a third of the inscribed radius, at least 1; for a thin class, such dots along its
    skeleton), and a few disks in the background far from any object."""
    from skimage.morphology import skeletonize

    rng = _rng(seed)
    out = np.zeros(sem.shape, np.uint8)
    classes = _classes(sem)
    thin = thin if thin is not None else {c: is_thin(sem == c) for c in classes}
    for c in classes:
        mask = sem == c
        if thin.get(c, False):
            dist = ndi.distance_transform_edt(mask)
            pts = np.argwhere(skeletonize(mask))
            n = max(5, int(round(fraction * len(pts) / 20)))
            for y, x in pts[rng.choice(len(pts), min(n, len(pts)), replace=False)] if len(pts) else []:
                _disk(out, mask, int(y), int(x), dist[y, x] / 3, c)
            continue
        lab, ids = _objects(sem, c, instances)
        boxes = ndi.find_objects(lab)
        for i in _pick(rng, ids, fraction):
            sl = boxes[int(i) - 1]
            if sl is None:
                continue
            m = lab[sl] == i
            dist = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
            cy, cx = np.unravel_index(np.argmax(dist), m.shape)
            _disk(out[sl], m, int(cy), int(cx), dist[cy, cx] / 3, c)
    bgd = ndi.distance_transform_edt(sem == BACKGROUND)
    vals = bgd[bgd > 0]
    if len(vals):
        far = np.argwhere(bgd >= max(8.0, np.quantile(vals, 0.75)))
        if len(far) == 0:
            far = np.argwhere(bgd >= vals.max())
        n = max(3, _n_objects(sem, classes, thin, instances) // 10)
        for y, x in far[rng.choice(len(far), min(n, len(far)), replace=False)]:
            _disk(out, sem == BACKGROUND, int(y), int(x), min(8.0, max(2.0, bgd[y, x] / 3)), BACKGROUND)
    return out


def planes(sem, seed=0, *, step=6, offset=None, margin=4, fraction=0.3, instances=None,
           thin=None) -> np.ndarray:
    """A (Z, Y, X) truth painted on every ``step``-th plane only (from ``offset``, default
    ``step // 2``), style :func:`lines` in each (objects and margins in the plane, as seen).
    Thin classes are decided on the whole stack."""
    rng = _rng(seed)
    out = np.zeros(sem.shape, np.uint8)
    classes = _classes(sem)
    thin = thin if thin is not None else {c: is_thin(sem == c) for c in classes}
    for z in range(step // 2 if offset is None else offset, sem.shape[0], step):
        out[z] = lines(sem[z], rng, margin=margin, fraction=fraction,
                       instances=None if instances is None else instances[z], thin=thin)
    return out


def corrections(pred, sem, strokes, *, n=8, min_size=10, length=30) -> tuple[np.ndarray, int]:
    """New strokes where a 2D prediction is most wrong, as a user paints from the error overlay
    with a 3-px brush: only where the brush fits inside a region where the prediction misses the
    true class (a 1-px rim along an object's border is not paintable without painting over right
    pixels, and no one paints it). Pixels already painted do not count: where a model still gets
    its paint wrong (a kept previous model, paint not yet learned) the user has painted there
    already and goes to the next errors, rather than repeating the stroke. For each of the ``n``
    regions with the most room for the brush (at least ``min_size`` px in all and 3 brush
    positions), a stroke of that class along the skeleton of those positions from the innermost
    pixel (up to ``length`` px, clipped to the region). Returns (the strokes with the corrections
    added, the number of strokes added; each adds paint)."""
    from skimage.morphology import skeletonize

    out = strokes.copy()
    regions = []
    brush = np.ones((3, 3), bool)
    for c in np.unique(sem):
        wrong = (sem == c) & (pred != c) & (strokes == 0)
        comp, k = ndi.label(wrong)
        if k:
            sizes = np.bincount(comp.ravel(), minlength=k + 1)
            fits = np.bincount(comp[ndi.binary_erosion(wrong, brush)], minlength=k + 1)
            boxes = ndi.find_objects(comp)
            regions += [(int(fits[i]), int(c), comp, i, boxes[i - 1]) for i in range(1, k + 1)
                        if sizes[i] >= min_size and fits[i] >= 3]
    regions.sort(key=lambda r: -r[0])
    added = 0
    for _, c, comp, i, sl in regions[:n]:
        m = comp[sl] == i
        room = ndi.binary_erosion(np.pad(m, 1), brush)[1:-1, 1:-1]
        dist = ndi.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
        skel = skeletonize(room)
        pts = np.argwhere(skel) if skel.any() else np.argwhere(room)
        cy, cx = np.unravel_index(np.argmax(dist), m.shape)
        y, x = pts[np.argmin(((pts - (cy, cx)) ** 2).sum(1))]
        if skel.any():
            visited = np.zeros(m.shape, bool)
            one_way = _walk(skel, (int(y), int(x)), length // 2, visited)
            path = _walk(skel, (int(y), int(x)), length // 2, visited)[::-1] + one_way[1:]
            py, px = np.array(path).T
        else:
            py, px = [y], [x]
        _paint(out[sl], m, py, px, c)
        added += 1
    return out, added
