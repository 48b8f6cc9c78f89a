"""Losses for sparse labels: target 0 = unlabeled (ignored), 1..K = classes.

Both terms are class-balanced: each class present in the batch counts equally whatever the
number of its painted pixels, so a few strokes of a rare class are not drowned out. No host
synchronisation (everything stays on the device).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["sparse_loss", "confusion_counts", "neighbour_offsets", "edge_aware_potts", "AppearancePrior",
           "anchor_kl"]


def sparse_loss(logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 0.5,
                entropy_weight: float = 0.0, eps: float = 1.0, balanced: bool = True) -> torch.Tensor:
    """Class-balanced cross-entropy (+ ``dice_weight`` x soft Dice) over painted pixels only.

    ``balanced=False``: every painted pixel weighs the same in the cross-entropy (a dense mask,
    whose class shares are the image's); the Dice term stays per class.

    ``logits``: ``(N, K, *spatial)``; ``target``: ``(N, *spatial)`` integers 0..K (0 ignored).
    Returns a scalar; 0 (with a gradient) when nothing in the batch is painted.
    """
    logits = logits.float()
    k = logits.shape[1]
    t = target.long()
    painted = t > 0
    idx = (t - 1).clamp_min(0)
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, idx.unsqueeze(1)).squeeze(1)           # (N, *spatial)
    w = painted.float()
    cls = torch.where(painted, idx, torch.full_like(idx, k))       # k = the "ignored" bin
    flat_cls = cls.reshape(-1)
    sums = torch.zeros(k + 1, device=logits.device).scatter_add_(0, flat_cls, (nll * w).reshape(-1))
    counts = torch.zeros(k + 1, device=logits.device).scatter_add_(0, flat_cls, w.reshape(-1))
    sums, counts = sums[:k], counts[:k]
    present = (counts > 0).float()
    n_present = present.sum().clamp_min(1.0)
    ce = (sums / counts.clamp_min(1.0) * present).sum() / n_present if balanced else \
        sums.sum() / counts.sum().clamp_min(1.0)
    probs = logp.exp()
    if entropy_weight > 0:
        # entropy minimisation on unpainted pixels (Grandvalet & Bengio 2005): moves decision
        # boundaries into low-density regions of the input, i.e. onto the edges between the
        # painted interiors and the painted background, instead of anywhere in the gap
        unp = (~painted).float()
        ent = -(probs * logp).sum(1)
        ce = ce + entropy_weight * (ent * unp).sum() / unp.sum().clamp_min(1.0)
    if dice_weight <= 0:
        return ce + 0.0 * logits.sum()
    onehot = F.one_hot(idx, k).movedim(-1, 1).float() * w.unsqueeze(1)   # (N, K, *spatial)
    pm = probs * w.unsqueeze(1)
    dims = (0,) + tuple(range(2, logits.ndim))
    inter = (pm * onehot).sum(dims)
    denom = pm.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    dice_loss = ((1 - dice) * present).sum() / n_present
    return ce + dice_weight * dice_loss


@torch.no_grad()
def confusion_counts(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``(K, K)`` counts truth (row, class index) x prediction (column) over painted pixels."""
    k = logits.shape[1]
    pred = logits.argmax(1)
    t = target.long()
    m = t > 0
    ti = (t[m] - 1).clamp(0, k - 1)
    pi = pred[m]
    return torch.bincount(ti * k + pi, minlength=k * k).reshape(k, k)


def _pair_slices(shape: tuple[int, ...], offset: tuple[int, ...]) -> tuple[tuple, tuple]:
    """Slices ``(a, b)`` over the spatial axes so that ``x[a]`` and ``x[b]`` are neighbours
    ``offset`` apart (``b = a + offset``)."""
    a, b = [slice(None), slice(None)], [slice(None), slice(None)]
    for n, o in zip(shape, offset):
        if o >= 0:
            a.append(slice(0, n - o))
            b.append(slice(o, n))
        else:
            a.append(slice(-o, n))
            b.append(slice(0, n + o))
    return tuple(a), tuple(b)


def neighbour_offsets(dims: int, dilations: tuple[int, ...] = (1, 2, 4),
                      spacing: tuple[float, ...] | None = None) -> list[tuple[int, ...]]:
    """Half of the 8 (2D) or 26 (3D) neighbourhood at each dilation (each pair counted once).

    In 3D, ``spacing`` (z, y, x voxel size) drops z offsets whose physical length exceeds the
    largest in-plane one (a z step on a coarse axis is not a neighbour)."""
    import itertools

    base = [o for o in itertools.product((-1, 0, 1), repeat=dims)
            if any(o) and next(v for v in o if v) > 0]
    out = []
    for d in dilations:
        for o in base:
            off = tuple(v * d for v in o)
            if dims == 3 and spacing is not None and off[0] != 0:
                zlen = abs(off[0]) * spacing[0]
                if zlen > 2 * d * max(spacing[1], spacing[2]):
                    continue
            out.append(off)
    return out


def edge_aware_potts(probs: torch.Tensor, image: torch.Tensor,
                     offsets: list[tuple[int, ...]]) -> torch.Tensor:
    """A local, image-gated Potts relaxation (a regularised loss for sparse labels in the
    spirit of Tang et al., ECCV 2018, "On regularized losses for weakly-supervised CNN
    segmentation", and Obukhov et al. 2019, "Gated CRF loss"), applied to every pixel.

    For neighbour pairs ``(i, j)``: ``w_ij * (1 - <p_i, p_j>)`` with the affinity
    ``w_ij = exp(-|I_i - I_j|^2 / (2 <|I_i - I_j|^2>))`` (contrast-adaptive, per patch and
    offset, as in GrabCut). A change of class costs little where the image has an edge and a
    lot inside flat regions, so the network puts boundaries in the unpainted gap between
    strokes where the image puts them instead of wherever the strokes stop.

    ``probs``: ``(N, K, *spatial)`` softmax probabilities; ``image``: ``(N, C, *spatial)``.
    Returns the mean over pairs and offsets (a scalar).
    """
    spatial = probs.shape[2:]
    reduce = tuple(range(1, probs.ndim - 1))   # per sample, over the spatial axes
    total = probs.new_zeros(())
    for off in offsets:
        a, b = _pair_slices(spatial, off)
        with torch.no_grad():
            d2 = (image[a] - image[b]).float().pow(2).sum(1)                # (N, *)
            mean = d2.mean(dim=reduce, keepdim=True).clamp_min(1e-8)
            w = torch.exp(-d2 / (2 * mean))
        agree = (probs[a] * probs[b]).sum(1)
        total = total + (w * (1 - agree)).mean()
    return total / max(1, len(offsets))


def _yx_box(half: int, dims: int) -> tuple[tuple[tuple, tuple], ...]:
    """(kernel, padding) of the two 1-D passes (Y, then X) of a ``2 half + 1`` px box in the YX
    plane, for ``avg_pool2d`` (``dims`` 2) or ``avg_pool3d`` (3: nothing along Z)."""
    n, lead = 2 * half + 1, (1,) * (dims - 2)
    zero = (0,) * (dims - 2)
    return ((lead + (n, 1), zero + (half, 0)), (lead + (1, n), zero + (0, half)))


class AppearancePrior:
    """A data term for the unpainted pixels from what the painted ones look like (the colour
    models of GrabCut, Rother et al. 2004, as a loss on the network's output), gated so that it
    only acts where the prediction contradicts the image over a region, not along boundaries.

    Per feature and class, a histogram over every painted pixel of the batches seen so far
    (``bins`` bins, +1 and a 3-bin smoothing). The features, per channel: the normalised
    intensity (3-px box mean) and, with ``contrast`` > 0, that intensity minus its mean over a
    ``2 contrast + 1`` px square in YX, so that a background darkened by uneven illumination or
    shading (phase contrast) does not look like a dark object. The class posterior at equal
    class priors (naive Bayes over the features, its log-likelihood divided by their number as
    they are correlated) gives each pixel a cost ``u_k = -log q_k`` (at most -log 1e-4). The
    loss is the mean over pixels of ``sum_k p_k u_k`` restricted to the unpainted pixels where
    the appearance gives the predicted class a posterior below ``confidence`` (strong evidence
    only: an intensity no stroke covers only says which class has more paint). Where the
    prediction is the background (class 1), that mask is opened by a ``2 gate + 1`` px square
    (in the YX plane): background narrower than that, e.g. a halo along a nucleus where
    intensity alone would put the boundary, costs nothing, while a region the image gives to an
    object pays. Where the prediction is an object class and the appearance says background
    (its posterior above 0.5), every such pixel pays: strokes leave a gap around objects and a
    class spreads into it (EM membranes predicted twice as wide as their dark line, or over the
    unpainted cytoplasm), so an object over what looks like background is charged at any width.
    Between object classes (more than two) the gate applies as for the background
    (``gate_objects=True`` applies it to every pixel, as before 2026-12-02's sixth session).
    ``margin`` > 0 spares the pixels that close to a predicted class boundary.

    State (the histograms) lives on the device; no host synchronisation."""

    def __init__(self, classes: int, channels: int, device: torch.device, bins: int = 32, gate: int = 2,
                 contrast: int = 7, confidence: float = 0.2, margin: int = 0,
                 gate_objects: bool = False):
        self.k, self.bins, self.gate, self.contrast = classes, bins, gate, contrast
        self.gate_objects = gate_objects   # the gate also excuses pixels predicted as an object
        self.margin = margin        # px: pixels this close to a predicted class boundary are not charged
        self.max_q = confidence     # charge where the predicted class's posterior is below this
        self.d = channels * (2 if contrast > 0 else 1)    # features per pixel
        self.counts = torch.zeros(self.d, classes + 1, bins, device=device)
        self.kernel = torch.tensor([[[0.25, 0.5, 0.25]]], device=device)

    def _features(self, image: torch.Tensor, pool) -> torch.Tensor:
        """``(N, D, *spatial)`` bin indices: per channel the 3-px box mean on [-0.25, 1.25] and,
        with ``contrast``, its difference to the (2 contrast + 1) px box mean in YX on
        [-0.75, 0.75] (what a pixel looks like against its surroundings: uneven illumination,
        shading and halos move the first, not the second)."""
        nb = self.bins
        f = pool(image.float(), 3, stride=1, padding=1, count_include_pad=False)
        out = [((f + 0.25) * (nb / 1.5)).long().clamp_(0, nb - 1)]
        if self.contrast > 0:
            m = f
            for kern, pad in _yx_box(self.contrast, f.ndim - 2):
                m = pool(m, kern, 1, pad, count_include_pad=False)
            out.append(((f - m + 0.75) * (nb / 1.5)).long().clamp_(0, nb - 1))
        return torch.cat(out, 1)

    def _costs(self, b: torch.Tensor) -> torch.Tensor:
        """``(K, N, *spatial)``: ``-log`` of each class's posterior (at most -log 1e-4) for the
        feature bins ``b`` from the histograms so far."""
        k, d, nb = self.k, self.d, self.bins
        h = F.conv1d(self.counts[:, 1:].reshape(d * k, 1, nb) + 1, self.kernel, padding=1).view(d, k, nb)
        loglik = (h / h.sum(-1, keepdim=True)).log()                      # (D, K, bins)
        if d == 1:   # the cost per bin, then one lookup per pixel
            ub = (-torch.log_softmax(loglik[0], 0)).clamp_max(9.21)       # (K, bins)
            return ub[:, b[:, 0]]
        # naive Bayes tempered by the feature count (the features are correlated)
        ll = sum(loglik[j][:, b[:, j]] for j in range(d)) / d              # (K, N, *spatial)
        return (-torch.log_softmax(ll, 0)).clamp_max(9.21)

    @torch.no_grad()
    def posterior(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, K, *spatial)``: what the appearance alone says of each pixel of ``image``
        (``(N, C, *spatial)``, normalised), from the histograms so far (for diagnostics)."""
        pool = F.avg_pool2d if image.ndim == 4 else F.avg_pool3d
        q = torch.exp(-self._costs(self._features(image, pool)))
        return (q / q.sum(0, keepdim=True)).movedim(0, 1)

    def __call__(self, probs: torch.Tensor, image: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        k, d, nb = self.k, self.d, self.bins
        dims = probs.ndim - 2
        with torch.no_grad():
            pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
            b = self._features(image, pool)                                   # (N, D, *spatial)
            t = target.long().clamp(0, k)
            for j in range(d):
                idx = (t * nb + b[:, j]).reshape(-1)
                self.counts[j] += torch.bincount(idx, minlength=(k + 1) * nb).view(k + 1, nb).float()
            u = self._costs(b)                                                # (K, N, *spatial)
            # the prediction's top class (a running maximum: argmax over classes is slow on the
            # CPU) and its appearance cost; charged where the appearance says that class is
            # unlikely (posterior below max_q; 0.5 with two classes: where it prefers the other)
            top, u_top = probs[:, 0], u[0]
            top_i = torch.zeros_like(top)
            for j in range(1, k):
                higher = probs[:, j] > top
                top = torch.where(higher, probs[:, j], top)
                u_top = torch.where(higher, u[j], u_top)
                top_i = torch.where(higher, float(j), top_i)
            u = u.movedim(0, 1)
            mask = (u_top > -math.log(self.max_q)).unsqueeze(1).to(probs.dtype)
            raw = mask
            if self.gate > 0:   # an opening by a (2 gate + 1) px square in YX, as separable box means
                box = _yx_box(self.gate, dims)
                for kern, pad in box:     # erode: all of the window (inside the patch)
                    mask = (pool(mask, kern, 1, pad, count_include_pad=False) > 0.999).to(probs.dtype)
                for kern, pad in box:     # dilate: any of it
                    mask = (pool(mask, kern, 1, pad, count_include_pad=False) > 0.001).to(probs.dtype)
            if not self.gate_objects and self.gate > 0:
                # an object class pays at any width where the image says background (its
                # posterior above 0.5): objects spreading into the gap around them; between
                # object classes (more than two) the gate still applies
                over_bg = (top_i.unsqueeze(1) > 0) & (u[:, :1] < math.log(2.0))
                mask = torch.where(over_bg, raw, mask)
            if self.margin > 0:   # only the inside of each predicted region (its YX neighbours agree)
                mp = F.max_pool2d if dims == 2 else F.max_pool3d
                hi, lo = top_i.unsqueeze(1), -top_i.unsqueeze(1)
                for kern, pad in _yx_box(self.margin, dims):   # the box's max and min, Y then X
                    hi, lo = mp(hi, kern, 1, pad), mp(lo, kern, 1, pad)
                mask = mask * (hi == -lo).to(probs.dtype)
            mask = mask[:, 0] * (target == 0).to(probs.dtype)   # the paint itself is the strokes' business
        return ((probs * u).sum(1) * mask).mean()


def anchor_kl(logits: torch.Tensor, anchor_logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """When a model is continued: ``KL(p_start || p)`` on the unpainted pixels, where ``p_start``
    is the starting model's prediction on the same batch (learning without forgetting, Li &
    Hoiem 2016). The new strokes move the prediction where they and what they teach reach; the
    rest of the image keeps what the previous model said instead of drifting (a correction
    round with few new strokes, or none, must not lose what the last one had).

    ``logits``, ``anchor_logits``: ``(N, K, *spatial)``; ``target``: ``(N, *spatial)``, 0 =
    unpainted. Returns the mean over unpainted pixels (0 when every pixel is painted)."""
    unp = (target == 0).float()
    logp = F.log_softmax(logits.float(), dim=1)
    logq = F.log_softmax(anchor_logits.float(), dim=1)
    kl = (logq.exp() * (logq - logp)).sum(1)
    return (kl * unp).sum() / unp.sum().clamp_min(1.0)
