"""Losses for sparse labels: target 0 = unlabeled (ignored), 1..K = classes.

Both terms are class-balanced: each class present in the batch counts equally whatever the
number of its painted pixels, so a few strokes of a rare class are not drowned out. No host
synchronisation (everything stays on the device).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sparse_loss", "confusion_counts", "neighbour_offsets", "edge_aware_potts", "anchor_kl"]


def sparse_loss(logits: torch.Tensor, target: torch.Tensor, *, dice_weight: float = 0.5,
                entropy_weight: float = 0.0, eps: float = 1.0) -> torch.Tensor:
    """Class-balanced cross-entropy (+ ``dice_weight`` x soft Dice) over painted pixels only.

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
    ce = (sums / counts.clamp_min(1.0) * present).sum() / n_present
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
