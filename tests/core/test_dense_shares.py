"""A run on a dense mask ends with its decision matched to the mask's class shares: training
balances the classes (right for strokes), so without it a rare class painted in full was
predicted several times too often (docs/quality.md, thirty-seventh session)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import napari_unet.core.train as T
from napari_unet import predict
from napari_unet.core.train.calibration import shift_head


def _rare_blobs(seed=0, n=6, shape=(96, 96)):
    """Noisy image with a few small bright disks: about 4% object in its dense mask (1 bg, 2 obj)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    sem = np.ones(shape, np.uint8)
    for _ in range(n):
        cy, cx = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        sem[(yy - cy) ** 2 + (xx - cx) ** 2 <= 16] = 2
    img = (0.2 + 0.5 * (sem == 2) + 0.15 * rng.standard_normal(shape)).astype(np.float32)
    return img, sem


def _run(img, sem, **kw):
    events = list(T.iter_train(img, sem, steps=30, device="cpu", seed=0, base_channels=4, depth=2, **kw))
    return events[-1]


def test_a_dense_mask_sets_the_decision_at_its_background_share(monkeypatch):
    img, sem = _rare_blobs()
    share = round(float(np.mean(sem == 1)), 4)
    assert 0.93 < share < 0.99
    done = _run(img, sem)
    m = done.model
    assert m.meta["edge_threshold"] == share and m.meta["training"]["edge_threshold"] == share
    assert "class shares" in done.message and f"class 2 above {share:g}" in done.message
    # the head as trained: the shift undone (what continuing does first)
    plain = copy.deepcopy(m)
    shift_head(plain, 1.0 - share)
    d = m.head.bias.detach() - plain.head.bias.detach()
    assert d[0].item() == pytest.approx(math.log(share / (1 - share)), abs=1e-5) and d[1].item() == 0
    p_adj, p_plain = predict(m, img, device="cpu"), predict(plain, img, device="cpu")
    # objects where the trained probability beats the share: fewer than at 0.5
    sure = np.abs(p_plain[1] - share) > 1e-4
    assert np.array_equal((p_adj.argmax(0) == 1)[sure], (p_plain[1] > share)[sure])
    assert (p_adj.argmax(0) == 1).sum() <= (p_plain.argmax(0) == 1).sum()
    # the switch off: nothing carried
    monkeypatch.setattr(T, "DENSE_PRIOR", False)
    off = _run(img, sem)
    assert off.model.meta["edge_threshold"] is None and "class shares" not in off.message


def test_strokes_are_not_matched_to_their_shares():
    img, sem = _rare_blobs()
    strokes = np.zeros_like(sem)
    strokes[::6] = sem[::6]           # a sixth of the rows: far from dense
    m = _run(img, strokes).model
    assert m.meta["training"]["edge_threshold"] != round(float(np.mean(strokes[strokes > 0] == 1)), 4)


def test_continuing_on_a_dense_mask_does_not_compound_the_shift():
    img, sem = _rare_blobs()
    first = _run(img, sem).model
    bias = first.head.bias.detach().clone()
    # a continued run that cannot move the weights (a vanishing learning rate): the carried shift
    # is undone for training and applied once at the end, so the head comes back as it was
    again = _run(img, sem, init=first, lr=1e-12).model
    assert again.meta["edge_threshold"] == first.meta["edge_threshold"]
    assert torch.allclose(again.head.bias.detach(), bias, atol=1e-4)
