"""What the paint and the image say about the objects' edges before the edge calibration
(:mod:`.calibration`) trusts the image's flux there: the image's gradient and Laplacian in the
plane, whether the painted objects are brighter or darker than the painted background (their
polarity, which signs the flux), and whether a halo rings them (phase contrast), where the flux's
premise, a blurred step, does not hold, and where the halo's crest lies instead. Read during
training too: a halo, and objects spread over what looks like the painted background
(:func:`swell_overshoot`; map_readings.py)."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .flux_regions import grown_only, plane_structure, without_new_holes


def _per_plane(img: np.ndarray, filt: Callable, sigma: float) -> np.ndarray:
    """``filt(plane, sigma)`` on every YX plane of ``img`` ``(..., Y, X)``."""
    out = np.empty_like(img)
    for idx in np.ndindex(img.shape[:-2]):
        out[idx] = filt(img[idx], sigma)
    return out


def _plane_gradient(x: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Gradient magnitude in the YX plane of the channel mean of ``x`` ``(N, C, *spatial)``."""
    from scipy import ndimage as ndi

    return _per_plane(x.mean(1), ndi.gaussian_gradient_magnitude, sigma)


def _plane_laplacian(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Laplacian of Gaussian in the YX plane of ``img`` ``(N, *spatial)`` (the crops' channel mean)."""
    from scipy import ndimage as ndi

    return _per_plane(img, ndi.gaussian_laplace, sigma)


def class_contrasts(img: np.ndarray, paint: np.ndarray) -> list[float]:
    """Per painted object class (value >= 2 in ``paint``): :func:`brighter_share` of its painted
    pixels of ``img`` against the painted background's (value 1); empty without background paint."""
    bg = img[paint == 1]
    if not bg.size:
        return []
    return [brighter_share(img[paint == c], bg) for c in np.unique(paint[paint >= 2])]


def brighter_share(a: np.ndarray, b: np.ndarray, most: int = 20000) -> float:
    """The probability that a pixel drawn from ``a`` is brighter than one drawn from ``b`` (ties
    count half): the area under the ROC curve of intensity separating them, Mann-Whitney's U over
    the pairs. At most ``most`` pixels of each (a fixed draw), so the cost stays small."""
    rng = np.random.default_rng(0)
    a, b = (np.ravel(v).astype(np.float64) for v in (a, b))
    a, b = (rng.choice(v, most, replace=False) if v.size > most else v for v in (a, b))
    b = np.sort(b)
    below = np.searchsorted(b, a, side="left")
    ties = np.searchsorted(b, a, side="right") - below
    return float((below + 0.5 * ties).sum()) / (a.size * b.size)


def paint_means(img: np.ndarray, obj: np.ndarray, bg: np.ndarray, polarity: float) -> tuple[float, float, float]:
    """The mean of ``img`` over the painted objects and over the painted background, and the
    contrast between them along ``polarity`` (objects minus background, times the polarity:
    positive where the paint agrees with it); NaNs without both kinds of paint."""
    if not (obj.any() and bg.any()):
        return math.nan, math.nan, math.nan
    o, b = float(img[obj].mean()), float(img[bg].mean())
    return o, b, polarity * (o - b)


def halo_overshoot(p: np.ndarray, img: np.ndarray, valid: np.ndarray, polarity: float,
                   obj: np.ndarray, bg: np.ndarray, ring: int = 3) -> float:
    """How far the ``ring`` px just outside the network's own objects (``p > 0.5``, in the YX
    plane) lie past the painted background, away from the objects, in units of the paint's
    object-background contrast: positive where a halo rings the objects (phase contrast's bright
    ring around dark cells), negative where the ring lies between object and background (a
    blurred step). NaN without both kinds of paint or without a ring."""
    from scipy import ndimage as ndi

    half = p > 0.5
    around = ndi.binary_dilation(half, plane_structure(p.ndim, full=True), iterations=ring) & ~half & valid
    _, b, contrast = paint_means(img, obj, bg, polarity)
    if not (contrast > 0 and around.any()):
        return math.nan
    return polarity * (b - float(img[around].mean())) / contrast


def swell_overshoot(p: np.ndarray, img: np.ndarray, valid: np.ndarray, polarity: float,
                    obj: np.ndarray, bg: np.ndarray) -> float:
    """Where the network's own objects (``p > 0.5``) lie on the unpainted ``valid`` pixels, how far
    their mean lies from the painted objects' towards the painted background, in units of the
    paint's object-background contrast: about 0 where the objects it found look like the painted
    ones, 1 where they look on average like the painted background, more past it. NaN without
    both kinds of paint or without unpainted objects."""
    where = (p > 0.5) & valid & ~obj & ~bg
    o, _, contrast = paint_means(img, obj, bg, polarity)
    if not (contrast > 0 and where.any()):
        return math.nan
    return polarity * (o - float(img[where].mean())) / contrast


def halo_ridge(p: np.ndarray, img: np.ndarray, valid: np.ndarray, polarity: float, obj: np.ndarray,
               bg: np.ndarray, thresholds, allowed: list[bool], reference: float, slack: float) -> float:
    """Where a halo rings the objects (:func:`halo_overshoot`), the threshold that takes their
    boundary out to the halo's crest: among the ``allowed`` ``thresholds`` at or under
    ``reference`` (0.5's objects grown, :func:`.flux_regions.grown_only`, or shrunk without new
    holes), the highest whose 1-px ring just outside the objects (in the YX plane) lies within
    ``slack`` of the objects' contrast of the brightest such ring (for dark objects; the darkest
    for bright ones). Phase-contrast masks reach the crest: it is where touching cells meet, and
    the network, which sees the halo as bright as the painted background or brighter, stops short
    of it and leaves the gaps between touching cells open (Omnipose's colonies: 0.5 gives 0.74-0.82
    where the crest gives 0.87-0.93; docs/quality.md). A ring already there keeps the reference."""
    from scipy import ndimage as ndi

    half = p > 0.5
    _, b, contrast = paint_means(img, obj, bg, polarity)
    if not (contrast > 0 and math.isfinite(slack)):
        return reference
    st = plane_structure(p.ndim)
    past = []          # (threshold, how far its ring lies past the background, in contrast units)
    for t, ok in zip(thresholds, allowed):
        if not ok or t > reference:
            continue
        region = p > t
        region = grown_only(region, half) if t < 0.5 else without_new_holes(region, ~half) if t > 0.5 else region
        ring = ndi.binary_dilation(region, st) & ~region & valid
        if ring.any():
            past.append((t, polarity * (b - float(img[ring].mean())) / contrast))
    if not past:
        return reference
    crest = max(z for _, z in past)
    return max(t for t, z in past if z >= crest - slack)
