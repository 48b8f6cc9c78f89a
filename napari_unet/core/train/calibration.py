"""The background/object boundary moved onto the image's edges at the end of a run.

Strokes leave a gap between the painted object and the painted background, and the network
fills it: the object class reaches into the gap with high confidence (EM membranes predicted
~1.4x their width; docs/quality.md). Its probabilities still rank the gap's pixels well (on EM
the best threshold an oracle could pick gains 0.03-0.04 IoU), so the boundary is in the right
order, at the wrong level. Which level: the one whose region collects the most flux of the
image's gradient through its boundary (flux-maximising flows, Vasilevskiy & Siddiqi, PAMI 2002):
by the divergence theorem, the sum of the image's Laplacian (Gaussian, 1 px) over the region,
signed by the objects' polarity (brighter or darker than the painted background). It is largest
when the boundary lies on the Laplacian's zero crossing, the inflection of a blurred edge
(Marr & Hildreth 1980), whichever side the network put it. The mean gradient magnitude along the
contour (active contours, Caselles et al. 1997; used up to the thirteenth session) has a flat
peak that texture inside objects pulls inwards: it chose thresholds that cut objects short
(BBBC039 at 80 steps 0.7 where the best is 0.65; blobs 0.75 against 0.5; docs/quality.md).

Thresholds on both sides of 0.5 are tried: the object class mostly spreads into the gap the
strokes leave around it (EM membranes), but a network can also stop short of a dim rim
(synthetic nuclei, 300 steps: 0.912 -> 0.941 at 0.2; fourteenth session), by as far as 0.02 on
nuclei ~10 px across (0.872 at 0.5, 0.931 at 0.02; twenty-first session). A lower threshold
does not gain by merging objects across a darker gap: the gap's pixels subtract from the flux.
``NAPARI_UNET_EDGE_TWO_SIDED=0``: 0.5 and up only; ``NAPARI_UNET_EDGE_LOWEST=0.1``: down to 0.1.
Upwards the grid reaches 0.999: small nuclei can swell 2-4 px into the strokes' gap with odds
above 100 to 1 (real H&E, 600 steps: 0.99 chosen, IoU 0.606; 0.998, 0.707; forty-first session).

A threshold moves boundaries; it does not carve. Holes that a threshold above 0.5 opens inside
the objects (0.5's objects have none there) are filled back before its flux is summed: in a
dark stained tissue region every lighter nucleus has a negative Laplacian, and when those holes
counted the flux rose with each nucleus cut out, up to where the region fell apart (an IHC
image of glands: 0.99 chosen, IoU 0.872 where 0.5 gives 0.938; seventeenth session).
``NAPARI_UNET_EDGE_NEW_HOLES=1`` counts them again. Nor does a threshold under 0.5 add objects:
only 0.5's objects, grown, are scored (the same IHC image, 1,000 steps: 0.02 chosen for the
tissue's blue-stained nuclei, IoU 0.921 -> 0.942; twenty-eighth session;
``NAPARI_UNET_EDGE_NEW_OBJECTS=1`` counts them again).

The threshold goes into the head's bias, so the model's argmax, its probability maps and
everything downstream agree; the model's metadata records it (``meta["edge_threshold"]``). A run
that continues such a model undoes the shift first and chooses again at the end (shifts on top of
shifts shrank the nuclei round after round), keeping its own where the edges score another no
higher (twenty-third session; up to the thirty-third, "clearly higher": by 1%). Skipped when the
paint leaves no gap (dense labels). Stacks are calibrated plane by plane (the Laplacian in YX)
with the flux; with the mean gradient they are not (``EDGE_CALIBRATION_STACKS``: a Z-blurred
object's dim top and bottom planes were cut away to raise the mean along the contour). With
more than two classes the background's boundary against all object classes moves
(:func:`object_odds`); they keep their order among themselves.

The flux needs a polarity: objects brighter or darker than the background. Where the paint shows
neither for a class (one of its painted pixels is brighter than a painted background pixel about
as often as not: DIC's relief, lit on one side and shaded on the other with the interior at the
background's grey), the Laplacian's zero crossings are not the objects' boundaries, and 0.5
stays; so it does when painted classes lie on both sides, which would each want the other sign
(:func:`paint_polarity`, :data:`MIN_POLARITY`; nineteenth session). In 2D the mean gradient along
the contour, which needs no polarity, scores them instead (:data:`NO_POLARITY`; twentieth session).

The flux's premise is a blurred step. Phase contrast rings dark cells with a bright halo, whose
zero crossing lies inside the cell; there (:data:`HALO_MAX`) the boundary goes no further in than
the reference, and out towards the halo's crest where the reference stops short of it
(:func:`.edge_evidence.halo_ridge`, :data:`HALO_RIDGE`).

Each object's flux counts in units of its own contrast (:func:`contrast_weights`): summed in the
image's units, bright nuclei among dim ones (a 50-fold range) chose a threshold that trimmed
their rims and cut the dim ones short (twentieth session).
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from .edge_evidence import (_plane_gradient, _plane_laplacian, brighter_share, class_contrasts,  # noqa: F401
                            halo_overshoot, halo_ridge)   # (some re-exported)
from .flux_regions import grown_only, object_structure, plane_structure, without_new_holes

# 0.5 first: the network's own boundary (or a continued model's own threshold), which wins ties
HIGHEST = float(os.environ.get("NAPARI_UNET_EDGE_HIGHEST", 0.999))   # 0.99: the grid before (notes)
THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.98, 0.99) + tuple(
    t for t in (0.995, 0.998, 0.999) if t <= HIGHEST)
if os.environ.get("NAPARI_UNET_EDGE_TWO_SIDED", "1") == "1":   # also grow the objects
    THRESHOLDS = THRESHOLDS + (0.45, 0.4, 0.35, 0.3, 0.2, 0.1)
    LOWEST = float(os.environ.get("NAPARI_UNET_EDGE_LOWEST", 0.01))   # (module notes)
    THRESHOLDS = THRESHOLDS + tuple(t for t in (0.05, 0.03, 0.02, 0.01) if t >= LOWEST)
# "flux": the Laplacian summed over the region; "gradient": the mean gradient along the contour
CRITERION = os.environ.get("NAPARI_UNET_EDGE_CRITERION", "flux")
# the margin (relative) by which a threshold's edges must beat the reference's, 0.5 or a continued
# model's own: none, the strongest edges win and an exact tie keeps the reference (a 1% margin, the
# rule of the 13th to 33rd sessions, kept small nuclei short of their rims: 0.912 -> 0.934 without)
EDGE_MIN_GAIN = float(os.environ.get("NAPARI_UNET_EDGE_MIN_GAIN", 0.0))
MIN_GAIN = 0.01            # the flux's resolution where keep-better compares two models (validation.py)
# a continued model's own threshold is the reference, kept on a tie (0: 0.5 in every run)
CONTINUE_KEEPS_THRESHOLD = os.environ.get("NAPARI_UNET_EDGE_KEEP_PRIOR", "1") == "1"
# a threshold may lose at most this share of the painted object (and background) pixels that 0.5
# keeps (without it EM's flux climbs to 0.99 and cuts the membranes away: a round 0.548 -> 0.346)
RECALL_TOL = float(os.environ.get("NAPARI_UNET_EDGE_RECALL_TOL", 0.04))
# a continued model's own threshold stays allowed: it met the limit when chosen, and the strokes
# painted since lie where that model was wrong and the new weights least sure, which pulled EM's
# boundary down round after round (0.9 -> 0.6; 36th session, docs/quality.md). "0": judged too
CARRIED_ALLOWED = os.environ.get("NAPARI_UNET_EDGE_CARRIED_ALLOWED", "1") == "1"
MIN_UNPAINTED = 0.1        # dense paint (less unpainted than this share of the crops): nothing to do
# the flux is signed by the objects' polarity, read from the paint: an object pixel brighter (or
# darker) than a background pixel with a probability this far from 0.5 (:func:`brighter_share`;
# the benchmark's cases 0.115 or more, DIC relief 0.016: there the flux cut objects, 0.652 -> 0.627)
MIN_POLARITY = float(os.environ.get("NAPARI_UNET_EDGE_MIN_POLARITY", 0.2))
# a halo, not a blurred step: the ring outside the objects past the painted background by more
# than this share of their contrast (edge_evidence.halo_overshoot); the flux is not asked there
# (phase-contrast E. coli, 600 steps: 0.98 chosen, IoU 0.862, 0.914 at 0.5; the table's cases
# -0.36 to 0.32; 46th session)
HALO_MAX = float(os.environ.get("NAPARI_UNET_EDGE_HALO_MAX", 0.5))
# there the boundary goes out to within this share of the objects' contrast of the halo's crest
# (edge_evidence.halo_ridge; Omnipose's colonies 0.74 / 0.82 -> 0.87 / 0.93 at 600 steps; "inf": the
# reference stays, the 46th-48th sessions' rule)
HALO_RIDGE = float(os.environ.get("NAPARI_UNET_EDGE_HALO_RIDGE", 0.25))
# objects without a polarity (paint_polarity None) have no flux to maximise: "gradient" scores their
# thresholds by the mean gradient magnitude along the contour (which needs none; in 2D); "keep"
# keeps 0.5 (the nineteenth session). DIC at 500 steps 0.645 -> 0.684 (twentieth session)
NO_POLARITY = os.environ.get("NAPARI_UNET_EDGE_NO_POLARITY", "gradient")
EDGE_NEW_HOLES = os.environ.get("NAPARI_UNET_EDGE_NEW_HOLES", "0") == "1"   # (to the 17th session)
# "1": objects that only a threshold under 0.5 makes count too (:func:`.flux_regions.grown_only`)
EDGE_NEW_OBJECTS = os.environ.get("NAPARI_UNET_EDGE_NEW_OBJECTS", "0") == "1"   # (to the 27th)
# each object's flux in units of its own contrast (:func:`contrast_weights`); "0": in the image's
# units, where the brightest objects decide for all (up to the nineteenth session)
EDGE_PER_OBJECT = os.environ.get("NAPARI_UNET_EDGE_PER_OBJECT", "1") == "1"
# an object's contrast counts as at least this share of the median object's (a faint speck's flux is noise)
MIN_CONTRAST_SHARE = 0.25


def flux_scores(fg_prob: np.ndarray, lap: np.ndarray, valid: np.ndarray, polarity: float,
                thresholds=THRESHOLDS, weights: np.ndarray | None = None) -> list[float]:
    """For each threshold: the outward flux of the image's gradient through the region's boundary,
    i.e. minus the Laplacian ``lap`` summed over the region's ``valid`` pixels, times
    ``polarity`` (+1: objects brighter than the background, -1: darker), per valid pixel.

    Above 0.5 the region is the objects with the holes that 0.5's objects do not have filled
    back (:func:`without_new_holes`): the threshold moves the boundary the strokes left open, and
    holes it would carve inside an object (its lighter nuclei, in a stained tissue region) are not
    evidence for it. They would be: every lighter spot inside a dark region has a negative
    Laplacian, and a textured region's flux rose with every spot carved, up to the threshold
    where the objects fall apart (IHC glands, docs/quality.md). ``EDGE_NEW_HOLES`` counts them.
    Below 0.5 the region is 0.5's objects grown (:func:`grown_only`): objects that only the lower
    threshold makes are things the network put on the other side of 0.5, whatever their edges say
    (other cells as dark as the objects). ``EDGE_NEW_OBJECTS`` counts them.

    ``weights`` (per pixel, e.g. :func:`contrast_weights`) scale each pixel's share."""
    n = max(1, int(valid.sum()))
    signed = np.where(valid, -polarity * lap, 0.0)
    if weights is not None:
        signed = signed * weights
    half = fg_prob > 0.5                       # the network's own objects
    base_bg = None if EDGE_NEW_HOLES else ~half
    core = None if EDGE_NEW_OBJECTS else half
    out = []
    for th in thresholds:
        region = fg_prob > th
        if base_bg is not None and th > 0.5:
            region = without_new_holes(region, base_bg)
        if core is not None and th < 0.5:
            region = grown_only(region, core)
        out.append(float(signed[region].sum()) / n)
    return out


def contrast_weights(fg_prob: np.ndarray, img: np.ndarray, polarity: float,
                     lowest: float = min(THRESHOLDS)) -> np.ndarray:
    """Per pixel, one over the contrast of the object it belongs to, so that :func:`flux_scores`
    counts every object's flux in units of its own contrast: a nucleus ten times dimmer than its
    neighbour has a Laplacian ten times weaker, and summed in the image's units the bright
    objects decide the threshold for all (a threshold that trims their blurred rims cut the dim
    ones in half; BBBC039 with each nucleus at its own brightness, docs/quality.md).

    The objects are the components of the widest region any threshold makes (``fg_prob >
    lowest``; 4-connected in the plane, and along Z in stacks ``(N, Z, Y, X)``, where an object's
    top and bottom planes are a dim, Z-blurred cross-section of it), so every threshold is weighed
    alike. An object's contrast is ``polarity`` times the mean of ``img`` over its core
    (``fg_prob > 0.5``; all of it without one) minus the mean over a 2-px ring outside it, at
    least :data:`MIN_CONTRAST_SHARE` of the median over the objects' pixels. Pixels outside
    every object weigh 1 (no threshold includes them)."""
    from scipy import ndimage as ndi

    wide = fg_prob > lowest
    lab, n = ndi.label(wide, object_structure(fg_prob.ndim))
    weights = np.ones(fg_prob.shape)
    if n == 0:
        return weights

    def mean_of(where: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        """The mean of ``img`` per object over the pixels ``where`` labels it (0: none)."""
        count = np.bincount(where.ravel(), minlength=n + 1)[1:]
        total = np.bincount(where.ravel(), weights=img.ravel(), minlength=n + 1)[1:]
        return np.where(count > 0, total / np.maximum(count, 1), fallback)

    whole = mean_of(lab, np.zeros(n))
    inside = mean_of(np.where(fg_prob > 0.5, lab, 0), whole)
    plane = plane_structure(fg_prob.ndim, full=True)
    grown = ndi.grey_dilation(ndi.grey_dilation(lab, footprint=plane), footprint=plane)
    around = mean_of(np.where(wide, 0, grown), inside)
    contrast = polarity * (inside - around)
    floor = MIN_CONTRAST_SHARE * max(float(np.median(contrast[lab[wide] - 1])), 1e-6)
    per = np.concatenate([[1.0], 1.0 / np.maximum(contrast, floor)])
    return per[lab]


def edge_scores(fg_prob: np.ndarray, grad: np.ndarray, valid: np.ndarray,
                thresholds=THRESHOLDS) -> list[float]:
    """For each threshold: the mean of ``grad`` over the object's inner contour and over its
    outer contour (YX neighbours), averaged, over the ``valid`` pixels (NaN without contour)."""
    from scipy import ndimage as ndi

    st = plane_structure(fg_prob.ndim)
    out = []
    for th in thresholds:
        fg = fg_prob > th
        inner = fg & ~ndi.binary_erosion(fg, st, border_value=1) & valid
        outer = ndi.binary_dilation(fg, st) & ~fg & valid
        out.append(0.5 * (float(grad[inner].mean()) + float(grad[outer].mean()))
                   if inner.any() and outer.any() else math.nan)
    return out


def choose_threshold(scores: list[float], thresholds=THRESHOLDS, recall: list[float] | None = None,
                     bg_recall: list[float] | None = None, reference: float = 0.5,
                     min_gain: float | None = None) -> float:
    """The best score's threshold if it beats the ``reference``'s by ``min_gain`` (relative), among
    those keeping the painted object (``recall``, per threshold) and background (``bg_recall``)
    pixels within ``RECALL_TOL`` of 0.5's, and the reference (:data:`CARRIED_ALLOWED`); else the
    reference: 0.5, or a continued model's own (``CONTINUE_KEEPS_THRESHOLD``). ``min_gain`` defaults
    to :data:`EDGE_MIN_GAIN` (none: the best score wins, an exact tie keeps the reference)."""
    min_gain = EDGE_MIN_GAIN if min_gain is None else min_gain
    allowed = allowed_thresholds(thresholds, recall, bg_recall, reference)
    ref = next((i for i, t in enumerate(thresholds) if t == reference), None)
    r0 = ref if ref is not None and allowed[ref] else 0
    if not scores or not math.isfinite(scores[r0]):
        return float(thresholds[r0])
    best = max(range(len(scores)), key=lambda i: scores[i] if math.isfinite(scores[i]) and allowed[i]
               else -math.inf)
    gain = scores[best] > scores[r0] + min_gain * abs(scores[r0])
    return float(thresholds[best] if gain else thresholds[r0])


def allowed_thresholds(thresholds, recall: list[float] | None, bg_recall: list[float] | None,
                       reference: float) -> list[bool]:
    """Per threshold, whether it keeps the painted object and background pixels within
    ``RECALL_TOL`` of 0.5's (``recall``, ``bg_recall``: per threshold, 0.5's first); the reference
    too with :data:`CARRIED_ALLOWED` (0.5 keeps 0.5's paint anyway)."""
    def keeps(r: list[float] | None, i: int) -> bool:   # against 0.5's, whatever the reference
        return r is None or not math.isfinite(r[0]) or r[i] >= r[0] - RECALL_TOL

    return [keeps(recall, i) and keeps(bg_recall, i) or (CARRIED_ALLOWED and t == reference)
            for i, t in enumerate(thresholds)]


def object_odds(probs: torch.Tensor) -> torch.Tensor:
    """Per pixel, ``m / (m + p1)`` with ``m`` the largest object-class probability and ``p1``
    the background's (``probs`` ``(N, K, ...)``, K >= 2): an object wins the argmax after
    :func:`shift_head` with ``t`` exactly where this exceeds ``t``; for two classes, p(class 2)."""
    m = probs[:, 1:].amax(1)
    return m / (m + probs[:, 0]).clamp_min(1e-12)


@torch.no_grad()
def _on_crops(model: torch.nn.Module, x: torch.Tensor, read, *, to_dev, autocast: dict,
              batch: int) -> np.ndarray:
    """``read(logits)`` of ``model`` (in eval mode, then back to its mode) on the crops ``x``,
    ``batch`` crops at a time (float32 logits), concatenated as a NumPy array."""
    was_training = model.training
    model.eval()
    try:
        out = []
        for s in range(0, x.shape[0], batch):
            with torch.autocast(**autocast):
                logits = model(to_dev(x[s:s + batch]))
            out.append(read(logits.float()).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy()


def _object_odds_of(model: torch.nn.Module, x: torch.Tensor, *, to_dev, autocast: dict,
                    batch: int) -> np.ndarray:
    """:func:`object_odds` of ``model`` (in eval mode) on the crops ``x``, as a NumPy array."""
    return _on_crops(model, x, lambda logits: object_odds(torch.softmax(logits, 1)),
                     to_dev=to_dev, autocast=autocast, batch=batch)


def _flux_inputs(x: torch.Tensor, y: torch.Tensor, shape) -> tuple:
    """For the crops ``x`` with their paint ``y``: the crops (NumPy), their channel mean, the pixels
    scored (``shape``, away from the crops' borders), the objects' polarity and the painted object
    and background masks."""
    xs = x.float().cpu().numpy()
    valid = np.zeros(shape, bool)
    m = [max(1, n // 8) for n in shape[-2:]]
    valid[..., m[0]:shape[-2] - m[0], m[1]:shape[-1] - m[1]] = True
    paint = y.cpu().numpy()
    obj, bg = paint >= 2, paint == 1
    img = xs.mean(1)
    return xs, img, valid, paint_polarity(img, paint), obj, bg


def paint_polarity(img: np.ndarray, paint: np.ndarray) -> float | None:
    """+1 when every painted object class is brighter than the painted background (at least
    :data:`MIN_POLARITY` past a coin's 0.5, :func:`class_contrasts`), -1 when every one is darker,
    None otherwise (no paint of either kind, a class with no polarity, or classes of both)."""
    shares = class_contrasts(img, paint)
    if shares and all(v >= 0.5 + MIN_POLARITY for v in shares):
        return 1.0
    if shares and all(v <= 0.5 - MIN_POLARITY for v in shares):
        return -1.0
    return None


def edge_threshold(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, to_dev,
                   autocast: dict, batch: int, reference: float = 0.5, notes: list[str] | None = None,
                   halo: bool = False) -> tuple[float, list[float]] | None:
    """The edge-aligned threshold between the background and the objects (:func:`object_odds`)
    for ``model`` on the crops ``x`` ``(N, C, *patch)`` with their paint ``y`` (the objects'
    paint must stay), and the edge score of each threshold; ``reference``: the threshold kept
    unless another scores better (:func:`choose_threshold`). ``notes`` gets why the flux was not
    asked, for the user's message: a halo, under which the boundary stays or goes out to its crest
    (:func:`halo_ridge`); ``halo``: one was seen during the run (map_readings.py),
    whatever the ring reads now."""
    p = _object_odds_of(model, x, to_dev=to_dev, autocast=autocast, batch=batch)
    xs, img, valid, polarity, obj, bg = _flux_inputs(x, y, p.shape)
    # both kinds of paint, no polarity: the mean gradient in 2D (stacks keep 0.5: module notes)
    no_sign = polarity is None and obj.any() and bg.any() and NO_POLARITY == "gradient" and p.ndim < 4
    recall = [float((p[obj] > th).mean()) if obj.any() else math.nan for th in THRESHOLDS]
    bg_recall = [float((p[bg] <= th).mean()) if bg.any() else math.nan for th in THRESHOLDS]
    if CRITERION == "gradient" or no_sign:
        scores = edge_scores(p, _plane_gradient(xs), valid)
    else:
        if polarity is None:
            return reference, []          # no polarity in the paint (paint_polarity): keep the reference
        if halo or halo_overshoot(p, img, valid, polarity, obj, bg) > HALO_MAX:   # a halo (module notes)
            if notes is not None:
                notes.append(f"a {'bright' if polarity < 0 else 'dark'} halo rings the objects, so the "
                             f"image's steepest edge lies inside them")
            allowed = allowed_thresholds(THRESHOLDS, recall, bg_recall, reference)
            return halo_ridge(p, img, valid, polarity, obj, bg, THRESHOLDS, allowed, reference, HALO_RIDGE), []
        weights = contrast_weights(p, img, polarity) if EDGE_PER_OBJECT else None
        scores = flux_scores(p, _plane_laplacian(img), valid, polarity, weights=weights)
    return choose_threshold(scores, recall=recall, bg_recall=bg_recall, reference=reference), scores


def flux_evidence(x: torch.Tensor, y: torch.Tensor) -> tuple[np.ndarray, np.ndarray, float] | None:
    """What :func:`region_flux` scores a model against on the crops ``x`` ``(N, C, *patch)`` with
    their paint ``y``: the Laplacian of the crops' channel mean, the pixels scored and the
    objects' polarity; None without it (:func:`_flux_inputs`). Computed once for any number of models."""
    _, img, valid, polarity, _, _ = _flux_inputs(x, y, (x.shape[0],) + tuple(x.shape[2:]))
    return None if polarity is None else (_plane_laplacian(img), valid, polarity)


def region_flux(model: torch.nn.Module, x: torch.Tensor, evidence: tuple, *, to_dev,
                autocast: dict, batch: int) -> float:
    """The flux score (:func:`flux_scores`) of the objects ``model`` segments as it is (its head's
    own threshold) on the crops ``x``, against their :func:`flux_evidence`: how well its
    boundaries sit on the image's edges, comparable between two models on the same crops."""
    p = _object_odds_of(model, x, to_dev=to_dev, autocast=autocast, batch=batch)
    lap, valid, polarity = evidence
    return flux_scores(p, lap, valid, polarity, thresholds=(0.5,))[0]


@torch.no_grad()
def painted_kinds(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, to_dev,
                  autocast: dict, batch: int) -> dict:
    """What the objects ``model`` segments (argmax) on the crops ``x`` ``(N, C, *patch)`` and their
    paint ``y`` say of its classes: :func:`~napari_unet.core.postprocess.object_class_evidence`."""
    from ..postprocess import object_class_evidence

    labels = _on_crops(model, x, lambda logits: logits.argmax(1) + 1, to_dev=to_dev,
                       autocast=autocast, batch=batch)
    return object_class_evidence(labels, y.cpu().numpy())


def carried_threshold(model: torch.nn.Module) -> float | None:
    """The edge threshold that a model's head carries (``meta["edge_threshold"]``; models saved
    before that key: their last run's record), or None when it carries none."""
    meta = getattr(model, "meta", {}) or {}
    if int(meta.get("classes", 0)) < 2:
        return None
    t = meta["edge_threshold"] if "edge_threshold" in meta else (meta.get("training") or {}).get("edge_threshold")
    return float(t) if isinstance(t, (int, float)) and 0.0 < t < 1.0 and t != 0.5 else None


def shift_head(model: torch.nn.Module, threshold: float) -> None:
    """Make the argmax of ``model`` pick an object class where :func:`object_odds` of the model
    as it was exceeds ``threshold`` (two classes: ``p(class 2) > threshold``): the background's
    bias raised by ``logit(threshold)``; the object classes keep their order."""
    with torch.no_grad():
        model.head.bias[0] += math.log(threshold / (1 - threshold))
