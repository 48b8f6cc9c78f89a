"""What the paint and the image say about the objects' edges before the edge calibration
(:mod:`.calibration`) trusts the image's flux there: whether the painted objects are brighter or
darker than the painted background (their polarity, which signs the flux), and whether a halo
rings them (phase contrast), where the flux's premise, a blurred step, does not hold."""
from __future__ import annotations

import math

import numpy as np

from .flux_regions import plane_structure


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
    if not (obj.any() and bg.any() and around.any()):
        return math.nan
    b = float(img[bg].mean())
    contrast = polarity * (float(img[obj].mean()) - b)
    if contrast <= 0:
        return math.nan
    return polarity * (b - float(img[around].mean())) / contrast
