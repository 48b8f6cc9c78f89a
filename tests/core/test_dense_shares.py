"""A run on a dense mask trains on the mask's class shares: training balances the classes for
strokes (whose proportions say nothing), and on a full mask of a rare class that had the class
predicted several times too often (docs/quality.md, thirty-seventh and thirty-eighth sessions).
``DENSE_TRAINING``: "shares" (default), "shift" (balanced, then the head shifted to the shares),
"balanced"."""
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


def _run(img, sem, steps=30, **kw):
    events = list(T.iter_train(img, sem, steps=steps, device="cpu", seed=0, base_channels=4, depth=2, **kw))
    return events[-1]


def _spy_loss(monkeypatch):
    """Record, per training step, the loss's ``balanced`` and the object share of the batch's paint."""
    real, seen = T.sparse_loss, []

    def spy(logits, target, **kw):
        if logits.requires_grad:   # training steps, not validation
            t = target[target > 0]
            seen.append((kw.get("balanced", True), float((t == 2).float().mean())))
        return real(logits, target, **kw)

    monkeypatch.setattr(T, "sparse_loss", spy)
    return seen


def test_a_dense_mask_trains_on_its_class_shares(monkeypatch):
    img, sem = _rare_blobs(shape=(128, 128), n=10)
    objects = {}
    for mode in ("shares", "balanced"):
        monkeypatch.setattr(T, "DENSE_TRAINING", mode)
        seen = _spy_loss(monkeypatch)
        done = _run(img, sem, patch=16)   # patches far smaller than the image: where they fall counts
        assert done.model.meta["edge_threshold"] is None   # no head shift: the decision is the model's own
        assert {b for b, _ in seen} == {mode == "balanced"}   # the cross-entropy: per pixel, or per class
        assert ("trained on its class shares" in done.message) == (mode == "shares")
        objects[mode] = float(np.mean([s for _, s in seen]))
        monkeypatch.undo()
    # balanced: half the patches centred on an object; by the shares (a third on each class in
    # turn, the rest on the paint as it comes): about a fifth, so well under half the object pixels
    assert objects["shares"] < 0.6 * objects["balanced"], objects
    assert objects["shares"] > float(np.mean(sem == 2)), objects   # the rare class still oversampled


def test_a_rare_class_is_predicted_about_as_often_as_painted(monkeypatch):
    img, sem = _rare_blobs(n=5)
    true = float(np.mean(sem == 2))
    shares = {}
    for mode in ("shares", "balanced"):
        monkeypatch.setattr(T, "DENSE_TRAINING", mode)
        m = _run(img, sem, steps=60).model
        shares[mode] = float(np.mean(predict(m, img, device="cpu").argmax(0) == 1))
    # balanced training on a full mask calls the rare class too often; its own shares do not
    assert abs(shares["shares"] - true) < abs(shares["balanced"] - true), (shares, true)
    assert shares["balanced"] > true


def test_strokes_still_train_balanced(monkeypatch):
    img, sem = _rare_blobs()
    strokes = np.zeros_like(sem)
    strokes[::6] = sem[::6]           # a sixth of the rows: far from dense
    seen = _spy_loss(monkeypatch)
    done = _run(img, strokes)
    assert {b for b, _ in seen} == {True} and "class shares" not in done.message
    assert done.model.meta["training"]["edge_threshold"] != round(float(np.mean(strokes[strokes > 0] == 1)), 4)


def test_shift_sets_the_decision_at_its_background_share(monkeypatch):
    monkeypatch.setattr(T, "DENSE_TRAINING", "shift")
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


def test_continuing_a_shifted_head_on_a_dense_mask_does_not_compound_the_shift(monkeypatch):
    monkeypatch.setattr(T, "DENSE_TRAINING", "shift")
    img, sem = _rare_blobs()
    first = _run(img, sem).model
    bias = first.head.bias.detach().clone()
    # a continued run that cannot move the weights (a vanishing learning rate): the carried shift
    # is undone for training and applied once at the end, so the head comes back as it was
    again = _run(img, sem, init=first, lr=1e-12).model
    assert again.meta["edge_threshold"] == first.meta["edge_threshold"]
    assert torch.allclose(again.head.bias.detach(), bias, atol=1e-4)
    # continued under the default, the carried shift is undone and not put back
    monkeypatch.setattr(T, "DENSE_TRAINING", "shares")
    plain = _run(img, sem, init=first, lr=1e-12).model
    assert plain.meta["edge_threshold"] is None
    share = first.meta["edge_threshold"]
    assert plain.head.bias[0].item() == pytest.approx(bias[0].item() - math.log(share / (1 - share)), abs=1e-4)
