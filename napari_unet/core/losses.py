"""Losses for sparse labels: target 0 = unlabeled (ignored), 1..K = classes.

Both terms are class-balanced: each class present in the batch counts equally whatever the
number of its painted pixels, so a few strokes of a rare class are not drowned out. No host
synchronisation (everything stays on the device).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


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
