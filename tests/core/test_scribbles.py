"""Learning from strokes that leave a gap: the edge-aware regulariser, the quality signal that
counts boundaries, and continuing that never goes backwards (keep_better)."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from napari_unet.core.events import TrainFinished, Validation, quality_summary
from napari_unet.core.losses import edge_aware_potts, neighbour_offsets
from napari_unet.core.synthetic import make_nuclei, make_strokes
from napari_unet.core.train import iter_train, train

TINY = dict(base_channels=8, depth=2, patch=64, batch_size=4, device="cpu")


@pytest.fixture(scope="module")
def data2d():
    img, sem, inst = make_nuclei((160, 160), seed=5)
    return img, sem, make_strokes(sem, inst, seed=5)


def test_neighbour_offsets_count_each_pair_once():
    assert len(neighbour_offsets(2, (1,))) == 4
    assert len(neighbour_offsets(3, (1, 2))) == 26
    offs = neighbour_offsets(2, (1, 3))
    assert len(set(offs)) == len(offs) and all(o != tuple(-v for v in p) for o in offs for p in offs)
    # z steps much longer than the in-plane ones are not neighbours
    aniso = neighbour_offsets(3, (1,), spacing=(5.0, 1.0, 1.0))
    assert all(o[0] == 0 for o in aniso) and len(aniso) == 4


def _split(width: int, cut: int) -> torch.Tensor:
    """Probabilities (1, 2, 1, width): class 1 left of ``cut``, class 2 from it on."""
    p = torch.zeros(1, 2, 1, width)
    p[0, 0, 0, :cut] = 1
    p[0, 1, 0, cut:] = 1
    return p


def test_regulariser_prefers_the_boundary_on_the_image_edge():
    width = 40
    image = torch.zeros(1, 1, 1, width)
    image[..., 20:] = 1.0                          # an edge between x=19 and x=20
    image += 0.01 * torch.randn(image.shape, generator=torch.Generator().manual_seed(0))
    offs = [(0, 1), (0, 2), (0, 4)]
    on_edge = edge_aware_potts(_split(width, 20), image, offs)
    off_edge = [edge_aware_potts(_split(width, c), image, offs) for c in (12, 16, 24, 28)]
    assert all(on_edge < 0.2 * o for o in off_edge)
    # the gradient moves probability towards the boundary at the edge
    p = _split(width, 26).clone().requires_grad_(True)
    edge_aware_potts(p, image, offs).backward()
    # near the wrong cut, lowering the class-2 probability left of it is not what it asks:
    # it asks pixels 20..25 (class 2 side of the edge but class 1 now) to agree with the right
    assert p.grad[0, 1, 0, 22] < 0


def test_regulariser_is_zero_for_a_constant_prediction():
    image = torch.rand(2, 1, 16, 16)
    p = torch.zeros(2, 3, 16, 16)
    p[:, 1] = 1
    assert float(edge_aware_potts(p, image, neighbour_offsets(2))) == pytest.approx(0.0)


def test_validation_measures_boundaries_not_only_strokes(data2d):
    img, sem, strokes = data2d
    vals = [ev for ev in iter_train(img, strokes, steps=30, **TINY) if isinstance(ev, Validation)]
    assert vals
    v = vals[-1]
    assert 0.0 <= v.agreement <= 1.0 and 0.0 <= v.uncertain <= 1.0
    text = quality_summary(v)
    assert "stability" in text and "1.00" not in text
    perfect = Validation(1, 0.0, {1: 1.0, 2: 1.0}, {1: 1.0, 2: 1.0}, 1.0, 1.0, 0.62, 0.2)
    assert "1.00" not in quality_summary(perfect) and "0.62" in quality_summary(perfect)


def test_keep_better_keeps_the_previous_model_when_a_run_makes_it_worse(data2d):
    img, sem, strokes = data2d
    base = train(img, strokes, steps=40, **TINY)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    carried = base.meta["edge_threshold"]
    # an absurd learning rate wrecks the weights: the previous model must come back
    events = list(iter_train(img, strokes, model=base, steps=8, lr=5.0, keep_better=True,
                             **{k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}))
    fin = events[-1]
    assert isinstance(fin, TrainFinished) and fin.kept_previous
    assert "kept the previous model" in fin.message
    assert fin.detail.startswith("kept the previous model") and fin.paint_iou[0] > fin.paint_iou[1]
    for k, v in fin.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the kept weights' edge threshold is recorded, not the discarded run's
    assert fin.model.meta["edge_threshold"] == carried
    assert fin.model.meta["training"]["edge_threshold"] == carried
    # the run's own weights come with the event (a Revert can still take them), marked as such
    other = fin.discarded
    assert other is not None and other is not fin.model and not other.training
    assert any(not torch.equal(v, before[k]) for k, v in other.state_dict().items())
    assert other.meta["training"]["kept_by_keep_better"] is False
    assert other.meta["training"]["steps"] == 8
    # the kept weights count the steps they were trained for; the run's own, those and 8 more
    assert fin.model.meta["training"]["total_steps"] == 40 and other.meta["training"]["total_steps"] == 48


def test_keep_better_takes_the_new_weights_when_they_fit_the_paint_better(data2d, monkeypatch):
    import napari_unet.core.train as tr

    monkeypatch.setattr(tr, "STEADY_GAIN", 0.0)   # the fit and the edges decide (steadiness: below)
    img, sem, strokes = data2d
    base = train(img, strokes, steps=2, **TINY)
    events = list(iter_train(img, strokes, model=base, steps=40, keep_better=True,
                             **{k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}))
    fin = events[-1]
    assert not fin.kept_previous and "at least as well" in fin.message
    assert "at least as well" in fin.detail and fin.paint_iou[1] >= fin.paint_iou[0] - 1e-3
    assert fin.discarded is None


def test_keep_better_keeps_the_previous_model_on_a_tie_when_nothing_new_was_painted(data2d, monkeypatch):
    """Continuing with the same paint and no better fit to it: the previous model stays (the
    unpainted pixels would only move at random); one new stroke and the same tie: the new weights."""
    import napari_unet.core.train as tr

    # a tie needs the run's BatchNorm re-estimate (3 random batches here) to leave the prediction
    # as it was; the filter stem's Hessian responses vary between so few crops enough to move it
    monkeypatch.setattr(tr, "STEM_2D", None)
    img, sem, strokes = data2d
    # a base trained at 2e-3 (the 2D default until the 32nd session): from a base of 40 steps at
    # 1e-3 the re-estimate alone moved the paint's IoU by 0.0085, no tie to test
    base = train(img, strokes, steps=40, lr=2e-3, **TINY)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    opts = {k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}
    fin = list(iter_train(img, strokes, model=base, steps=3, lr=1e-7, keep_better=True, **opts))[-1]
    assert fin.kept_previous and "nothing new was painted" in fin.message
    assert abs(fin.paint_iou[0] - fin.paint_iou[1]) <= 1e-3
    for k, v in fin.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    more = strokes.copy()
    ys, xs = np.nonzero((sem == 1) & (strokes == 0))
    more[ys[:5], xs[:5]] = 1                       # five more background pixels
    fin = list(iter_train(img, more, model=base, steps=3, lr=1e-7, keep_better=True, **opts))[-1]
    assert not fin.kept_previous and "at least as well" in fin.message


def test_keep_better_through_the_training_process(data2d):
    from napari_unet.core.train_process import iter_train_process

    img, sem, strokes = data2d
    base = train(img, strokes, steps=40, **TINY)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    events = list(iter_train_process([img], [strokes], model=base, steps=6, lr=5.0, keep_better=True,
                                     **{k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}))
    fin = events[-1]
    assert isinstance(fin, TrainFinished) and fin.kept_previous and fin.model is base
    # the detail and the scores cross the process boundary as fields, not inside the message
    assert fin.detail.startswith("kept the previous model") and fin.detail in fin.message
    assert fin.paint_iou is not None and fin.paint_iou[0] > fin.paint_iou[1]
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    # the weights not kept cross the boundary too, as a model of their own
    assert fin.discarded is not None and fin.discarded is not base
    assert any(not torch.equal(v, before[k]) for k, v in fin.discarded.state_dict().items())


def test_anchor_kl_counts_only_unpainted_pixels_where_the_models_differ():
    from napari_unet.core.losses import anchor_kl

    torch.manual_seed(0)
    a = torch.randn(2, 3, 16, 16)
    y = torch.zeros(2, 16, 16, dtype=torch.long)
    assert float(anchor_kl(a, a, y)) == pytest.approx(0.0, abs=1e-6)
    b = a.clone()
    b[:, :, :4] += torch.randn(2, 3, 4, 16) * 3          # the models differ in the top rows
    assert float(anchor_kl(b, a, y)) > 0.05
    y[:, :4] = 1                                          # ... which are painted: no anchor there
    assert float(anchor_kl(b, a, y)) == pytest.approx(0.0, abs=1e-6)


def test_continuing_anchors_on_the_starting_model_and_a_fresh_run_does_not(data2d, monkeypatch):
    """The anchor term runs on every step of a continued run (none on a fresh one), and starts
    at zero: the frozen copy sees the same batch the same way (BatchNorm in the same mode)."""
    import napari_unet.core.train.loop as loop

    img, sem, strokes = data2d
    seen = []

    def spy(logits, start, target):
        v = loop.__dict__["_real_anchor_kl"](logits, start, target)
        seen.append(float(v))
        return v

    monkeypatch.setitem(loop.__dict__, "_real_anchor_kl", loop.anchor_kl)
    monkeypatch.setattr(loop, "anchor_kl", spy)
    base = train(img, strokes, steps=5, **TINY)
    assert seen == []
    kw = {k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}
    train(img, strokes, model=base, steps=6, **kw)
    assert len(seen) == 6
    assert seen[0] < 1e-5 and max(seen[1:]) > seen[0]


def _spy_pair_distances(monkeypatch) -> list:
    """The regulariser's pair distances (px) at each of its calls during training, as a list
    that fills as training runs."""
    import napari_unet.core.train.loop as loop

    seen, real = [], loop.edge_aware_potts

    def spy(probs, image, offsets):
        seen.append({max(abs(v) for v in o) for o in offsets})
        return real(probs, image, offsets)

    monkeypatch.setattr(loop, "edge_aware_potts", spy)
    return seen


def test_regulariser_compares_the_neighbours_set_for_the_image_dimensionality(data2d, monkeypatch):
    """2D runs use ``REG_DILATIONS``, stacks ``REG_DILATIONS_3D`` (both 1, 2, 4 px by default,
    set apart so each can be tuned): each pair of the regulariser is one of those."""
    import napari_unet.core.train as tr

    img, sem, strokes = data2d
    seen = _spy_pair_distances(monkeypatch)
    monkeypatch.setattr(tr, "REG_DILATIONS", (1, 2))
    monkeypatch.setattr(tr, "REG_LONG_STEPS", 0)          # the longest pairs throughout
    train(img, strokes, steps=2, **TINY)
    assert seen and all(s == {1, 2} for s in seen)
    seen.clear()
    monkeypatch.setattr(tr, "REG_DILATIONS_3D", (1, 3))
    stack = np.stack([img] * 8)
    paint = np.zeros(stack.shape, np.uint8)
    paint[::4] = strokes
    monkeypatch.setattr(tr, "REG_LONG_STEPS", 2)          # stacks keep theirs whatever the step
    monkeypatch.setattr(tr, "STEM_3D", None)              # (a 3D model with the stem has no regulariser)
    train(stack, paint, dims=3, steps=5, base_channels=4, depth=2, patch=(8, 32, 32), batch_size=2,
          device="cpu")
    assert len(seen) == 5 and all(s == {1, 3} for s in seen)


def test_in_2d_the_longest_pairs_leave_after_the_first_steps(data2d, monkeypatch):
    """The 4-px pairs speed up a short run's convergence but act as a curvature flow that shrinks
    small objects (nuclei ~10 px across come out ~1 px short), so a 2D run drops them after its
    first ``REG_LONG_STEPS`` steps."""
    import napari_unet.core.train as tr

    img, sem, strokes = data2d
    seen = _spy_pair_distances(monkeypatch)
    monkeypatch.setattr(tr, "REG_RAMP", 0.0)             # the regulariser from the first step
    monkeypatch.setattr(tr, "REG_LONG_STEPS", 3)
    train(img, strokes, steps=6, **TINY)
    assert seen == [{1, 2, 4}] * 3 + [{1, 2}] * 3


def _bands(width: int = 64, dark: tuple[int, int] = (28, 36)) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright textured image (1, 1, 32, width) with a dark vertical band, and strokes: class 2
    on the band's centre column, class 1 on two columns far from it (a wide unpainted gap)."""
    g = torch.Generator().manual_seed(0)
    image = 0.7 + 0.05 * torch.randn(1, 1, 32, width, generator=g)
    image[..., dark[0]:dark[1]] = 0.2 + 0.05 * torch.randn(1, 1, 32, dark[1] - dark[0], generator=g)
    target = torch.zeros(1, 32, width, dtype=torch.long)
    target[:, :, (dark[0] + dark[1]) // 2] = 2
    target[:, :, [4, width - 5]] = 1
    return image, target


def _onehot(cls: torch.Tensor, k: int = 2) -> torch.Tensor:
    return torch.nn.functional.one_hot(cls, k).movedim(-1, 1).float()


def test_appearance_prior_charges_a_class_spread_over_pixels_that_look_like_another():
    from napari_unet.core.losses import AppearancePrior

    image, target = _bands()
    prior = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"), gate=2)
    right = torch.zeros(1, 32, 64, dtype=torch.long)
    right[..., 28:36] = 1                                # class 2 on the dark band only
    assert float(prior(_onehot(right), image, target)) == pytest.approx(0.0, abs=1e-6)
    # the thin class spread 10 px into the bright side on the right: every pixel of it pays
    spread = right.clone()
    spread[..., 36:46] = 1
    cost = float(prior(_onehot(spread), image, target))
    assert cost > 0.5 * (10 * 32) / (32 * 64)
    # and its gradient lowers class 2 there (raises the cost of keeping it)
    p = _onehot(spread).requires_grad_(True)
    prior(p, image, target).backward()
    assert float(p.grad[0, 1, :, 38:44].mean()) > float(p.grad[0, 0, :, 38:44].mean())
    assert float(p.grad[0, :, :, :26].abs().max()) == 0.0  # left of the band nothing disagrees
    # where the user painted that region class 2, the paint rules: no cost there (dense labels too)
    painted = target.clone()
    painted[..., 36:46] = 2
    p = _onehot(spread).requires_grad_(True)
    AppearancePrior(classes=2, channels=1, device=torch.device("cpu"))(p, image, painted).backward()
    assert float(p.grad[..., 36:46].abs().max()) == 0.0


def test_appearance_prior_gate_excuses_a_background_halo_but_not_a_widened_object():
    """The gate (an opening by a 5-px square) excuses a background strip narrower than it
    along an object (a halo where intensity alone would cut elsewhere: the object's boundary
    is the strokes' and the regulariser's business). An object class predicted 4 px wider
    than the image shows pays at any width (strokes leave a gap around objects and a thin
    class spreads into it, EM membranes); ``gate_objects=True`` excuses both."""
    from napari_unet.core.losses import AppearancePrior

    image, target = _bands()
    narrow = torch.zeros(1, 32, 64, dtype=torch.long)
    narrow[..., 30:34] = 1                               # the dark band's outer 2 px called background
    wide = torch.zeros(1, 32, 64, dtype=torch.long)
    wide[..., 28:40] = 1                                 # the dark class 4 px too wide on the right

    def prior(**kw):
        # confidence 0.5 (charge wherever the appearance prefers another class) and intensity
        # only, so that only the gate differs
        return AppearancePrior(classes=2, channels=1, device=torch.device("cpu"), contrast=0,
                               confidence=0.5, **kw)

    assert float(prior(gate=2)(_onehot(narrow), image, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(prior(gate=0)(_onehot(narrow), image, target)) > 0.0
    assert float(prior(gate=2)(_onehot(wide), image, target)) > 0.0
    assert float(prior(gate=2, gate_objects=True)(_onehot(wide), image, target)) == pytest.approx(0.0, abs=1e-6)
    # the charge on the widened object lowers that class on the extra columns only
    p = _onehot(wide).requires_grad_(True)
    prior(gate=2)(p, image, target).backward()
    assert float(p.grad[0, 1, :, 37:40].min()) > 0.0     # (36's 3-px mean is half dark)
    assert float(p.grad[0, :, :, :36].abs().max()) == 0.0


def test_appearance_prior_posterior_says_what_the_paint_looks_like():
    """``posterior`` (what ``quality_diagnose.py --method appearance`` takes apart): after one
    batch, the unpainted dark band looks like the class painted on its centre and the bright
    background like class 1; the posterior sums to 1; the costs the loss charges are its -log."""
    from napari_unet.core.losses import AppearancePrior

    image, target = _bands()
    prior = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"))
    prior(_onehot(torch.zeros(1, 32, 64, dtype=torch.long)), image, target)
    q = prior.posterior(image)
    assert q.shape == (1, 2, 32, 64)
    assert torch.allclose(q.sum(1), torch.ones(1, 32, 64), atol=1e-5)
    assert float(q[0, 1, :, 29:35].mean()) > 0.8          # the band, painted on column 32 only
    assert float(q[0, 0, :, 10:20].mean()) > 0.8          # the background between the strokes
    u = prior._costs(prior._features(image, torch.nn.functional.avg_pool2d))
    assert torch.allclose(torch.exp(-u).movedim(0, 1), q, atol=1e-3)


def test_appearance_prior_gate_still_excuses_a_strip_between_two_object_classes():
    """Three classes: a dark and a grey object on a bright background. The grey class
    predicted 4 px over the background pays; 3 px of the dark object called grey (a
    disagreement between object classes, narrower than the gate) does not, as with two
    objects of similar intensity the appearance cannot settle which one a rim belongs to."""
    from napari_unet.core.losses import AppearancePrior

    g = torch.Generator().manual_seed(0)
    image = 0.7 + 0.03 * torch.randn(1, 1, 32, 96, generator=g)
    image[..., 24:40] = 0.2 + 0.03 * torch.randn(1, 1, 32, 16, generator=g)
    image[..., 56:72] = 0.45 + 0.03 * torch.randn(1, 1, 32, 16, generator=g)
    target = torch.zeros(1, 32, 96, dtype=torch.long)
    target[:, :, 32], target[:, :, 64], target[:, :, [4, 90]] = 2, 3, 1
    truth = torch.zeros(1, 32, 96, dtype=torch.long)
    truth[..., 24:40], truth[..., 56:72] = 1, 2
    between, over_bg = truth.clone(), truth.clone()
    between[..., 26:29] = 2
    over_bg[..., 72:76] = 2
    kw = dict(classes=3, channels=1, device=torch.device("cpu"), contrast=0, confidence=0.5)

    def cost(pred, **more):
        return float(AppearancePrior(**kw, **more)(_onehot(pred, 3), image, target))

    assert cost(truth) == pytest.approx(0.0, abs=1e-6)
    assert cost(between) == pytest.approx(0.0, abs=1e-6)
    assert cost(between, gate=0) > cost(truth, gate=0)     # ungated it would pay
    assert cost(over_bg) > 0.05
    assert cost(over_bg, gate_objects=True) == pytest.approx(0.0, abs=1e-6)


def test_appearance_prior_margin_spares_the_pixels_next_to_a_predicted_boundary():
    from napari_unet.core.losses import AppearancePrior

    image, target = _bands()
    wide = torch.zeros(1, 32, 64, dtype=torch.long)
    wide[..., 28:40] = 1
    kw = dict(classes=2, channels=1, device=torch.device("cpu"), contrast=0, confidence=0.5, gate=0)
    p = _onehot(wide).requires_grad_(True)
    AppearancePrior(margin=1, **kw)(p, image, target).backward()
    assert float(p.grad[0, 1, :, 39].abs().max()) == 0.0   # next to the predicted boundary
    assert float(p.grad[0, 1, :, 37:39].min()) > 0.0       # further in
    q = _onehot(wide).requires_grad_(True)
    AppearancePrior(margin=0, **kw)(q, image, target).backward()
    assert float(q.grad[0, 1, :, 39].min()) > 0.0


def test_appearance_prior_charges_only_where_the_evidence_is_strong():
    """An intensity that no stroke covers is no evidence: there the posterior only reflects
    which class has more paint (here the bright class, 2 columns against 1), so at the default
    confidence (charge where the predicted class's posterior is below 0.2) a region of it costs
    nothing whatever is predicted; at 0.5 the less painted class would take it."""
    from napari_unet.core.losses import AppearancePrior

    image, target = _bands()
    image[..., 44:56] = 0.45                               # unpainted, between the two classes
    pred = torch.zeros(1, 32, 64, dtype=torch.long)
    pred[..., 28:36] = 1
    strict = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"), contrast=0, confidence=0.2)
    loose = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"), contrast=0, confidence=0.5)
    assert float(strict(_onehot(pred), image, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(loose(_onehot(pred), image, target)) > 0.0
    # and the strict prior still charges a class spread where the evidence is clear
    spread = pred.clone()
    spread[..., 4:20] = 1
    assert float(strict(_onehot(spread), image, target)) > 0.1


def test_appearance_prior_does_not_take_a_shaded_background_for_a_dark_object():
    """Uneven illumination: the background darkens from 0.8 (right) to 0.3 (left), and small
    dark objects (0.35 below their surroundings) are painted on the left, the background on the
    right. By intensity alone the dark left background looks like the objects, so the prior
    charges a correct prediction there; with the contrast feature (intensity against its
    surroundings) it does not, and it still charges a class spread over that background."""
    from napari_unet.core.losses import AppearancePrior

    g = torch.Generator().manual_seed(0)
    h, w = 48, 96
    image = torch.linspace(0.3, 0.8, w).expand(1, 1, h, w).clone() + 0.02 * torch.randn(1, 1, h, w, generator=g)
    truth = torch.zeros(1, h, w, dtype=torch.long)
    for y in (6, 22, 38):
        for x in (4, 16, 28, 64, 80):
            image[..., y:y + 5, x:x + 5] -= 0.35
            truth[:, y:y + 5, x:x + 5] = 1
    target = torch.zeros(1, h, w, dtype=torch.long)
    for y in (6, 22, 38):                                  # object strokes: the left objects' centres
        for x in (4, 16, 28):
            target[:, y + 2, x + 1:x + 4] = 2
    target[:, 2:46, [60, 75, 90]] = 1                      # background strokes on the bright right
    target[truth == 1] = torch.where(target[truth == 1] == 2, 2, 0)
    right = _onehot(truth)
    # both at confidence 0.5 so that only the contrast feature differs
    plain = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"), contrast=0, confidence=0.5)
    shaded = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"), contrast=7, confidence=0.5)
    assert float(plain(right, image, target)) > 0.02         # the dark left background "looks like" objects
    assert float(shaded(right, image, target)) < 0.2 * float(plain(right, image, target))
    spread = truth.clone()
    spread[:, :, 36:56] = 1                                  # objects spread over the background
    assert float(shaded(_onehot(spread), image, target)) > 0.05
    default = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"))
    assert float(default(right, image, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(default(_onehot(spread), image, target)) > 0.05


def test_appearance_prior_learns_only_from_painted_pixels_and_handles_channels_and_stacks():
    from napari_unet.core.losses import AppearancePrior

    image, target = _bands()
    prior = AppearancePrior(classes=3, channels=2, device=torch.device("cpu"))
    two = torch.cat([image, 1 - image], 1)               # (1, 2, 32, 64)
    probs = torch.softmax(torch.randn(1, 3, 32, 64, generator=torch.Generator().manual_seed(1)), 1)
    v = prior(probs, two, target)                        # class 3 has no paint yet
    assert torch.isfinite(v) and float(v) >= 0
    # counts: one per painted pixel, per channel, in the painted class's row; none for unpainted
    assert prior.counts.shape[0] == 4                    # intensity and contrast, per channel
    assert float(prior.counts[:, 1:].sum()) == 4 * int((target > 0).sum())
    assert float(prior.counts[:, 3].sum()) == 0.0
    # nothing painted at all: a finite, non-negative cost and no counts
    empty = AppearancePrior(classes=2, channels=1, device=torch.device("cpu"))
    assert torch.isfinite(empty(_onehot(torch.zeros(1, 32, 64, dtype=torch.long)), image, torch.zeros_like(target)))
    assert float(empty.counts[:, 1:].sum()) == 0.0
    # 3D: (N, K, Z, Y, X)
    stack = image.unsqueeze(2).repeat(1, 1, 4, 1, 1)
    t3 = target.unsqueeze(1).repeat(1, 4, 1, 1)
    p3 = _onehot(torch.ones(1, 4, 32, 64, dtype=torch.long))   # class 2 everywhere
    assert float(AppearancePrior(classes=2, channels=1, device=torch.device("cpu"))(p3, stack, t3)) > 0.1


def test_training_runs_the_appearance_prior_and_its_weight_turns_it_off(data2d, monkeypatch):
    import napari_unet.core.train as tr
    from napari_unet.core.losses import AppearancePrior

    img, sem, strokes = data2d
    calls = []
    real = AppearancePrior.__call__

    def spy(self, probs, image, target):
        calls.append(int((target > 0).sum()))
        return real(self, probs, image, target)

    monkeypatch.setattr(AppearancePrior, "__call__", spy)
    train(img, strokes, steps=3, **TINY)
    assert len(calls) == 3 and all(c > 0 for c in calls)
    calls.clear()
    monkeypatch.setattr(tr, "APPEARANCE_WEIGHT", 0.0)
    train(img, strokes, steps=3, **TINY)
    assert calls == []


def test_keep_better_with_nothing_new_painted_also_asks_the_image_edges(data2d, monkeypatch):
    """Same paint, a better fit to it: the new weights are taken only if their boundaries follow
    the image's edges clearly better (their region's flux) than the previous model's (a clearly
    steadier prediction, the other way in, is off here: tested below)."""
    import napari_unet.core.train as tr
    from napari_unet.core.train import calibration

    monkeypatch.setattr(tr, "STEADY_GAIN", 0.0)

    img, sem, strokes = data2d
    base = train(img, strokes, steps=2, **TINY)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    opts = {k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}
    fin = list(iter_train(img, copy.deepcopy(strokes), model=copy.deepcopy(base), steps=40,
                          keep_better=True, **opts))[-1]
    assert fin.paint_iou[1] > fin.paint_iou[0] + 1e-3
    assert not fin.kept_previous and "edge flux" in fin.message
    # the same run, where the new weights' boundaries would follow the edges less well
    real, calls = calibration.region_flux, []

    def reversed_flux(*a, **k):
        calls.append(real(*a, **k))
        return [1.0, 1.005][len(calls) - 1]        # the previous model first; a gain under 1%
    monkeypatch.setattr(calibration, "region_flux", reversed_flux)
    fin = list(iter_train(img, strokes, model=base, steps=40, keep_better=True, **opts))[-1]
    assert len(calls) == 2 and fin.kept_previous and "follow the image's edges no better" in fin.message
    for k, v in fin.model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_keep_better_with_nothing_new_painted_takes_a_clearly_steadier_prediction(data2d, monkeypatch):
    """Same paint: new weights whose prediction agrees with the mirrored crops' clearly better
    (a model still settling) are taken even when they fit the strokes a little less well and
    their edges are no better; a smaller gain, or a fit much worse, keeps the previous model."""
    import dataclasses

    import napari_unet.core.train as tr
    from napari_unet.core.train import calibration
    from napari_unet.core.train.validation import ValidationMixin

    img, sem, strokes = data2d
    base = train(img, strokes, steps=2, **TINY)
    opts = {k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}
    real_validate = ValidationMixin._validate
    monkeypatch.setattr(calibration, "region_flux", lambda *a, **k: 1.0)   # edges: no gain

    def continued(agreement_gain, fit_change):
        calls = []

        def staged(self, step, vs=None):
            v = real_validate(self, step, vs)
            if vs is None or vs is not self.paintset:
                return v
            calls.append(v)
            if len(calls) == 1:         # the new weights, scored first
                return dataclasses.replace(v, agreement=0.9 + agreement_gain, mean_iou=0.9 + fit_change)
            return dataclasses.replace(v, agreement=0.9, mean_iou=0.9)
        monkeypatch.setattr(ValidationMixin, "_validate", staged)
        fin = list(iter_train(img, strokes, model=copy.deepcopy(base), steps=6, keep_better=True, **opts))[-1]
        assert len(calls) == 2
        return fin

    fin = continued(0.01, -0.005)
    assert not fin.kept_previous and "clearly steadier (mirror agreement 0.910 against 0.900" in fin.message
    assert fin.discarded is None and fin.model.meta["training"]["total_steps"] == 8   # the run's own weights
    fin = continued(0.005, +0.01)          # a better fit, a small gain in steadiness, no better edges
    assert fin.kept_previous and "no steadier (mirror agreement 0.905 against 0.900)" in fin.message
    fin = continued(0.05, -0.05)           # steadier, but fits the strokes much worse
    assert fin.kept_previous and "fits the painted strokes better" in fin.message
    monkeypatch.setattr(tr, "STEADY_GAIN", 0.0)                            # off: the edges decide
    fin = continued(0.01, +0.01)
    assert fin.kept_previous and "follow the image's edges no better" in fin.message
    assert "steadier" not in fin.message


def test_the_regulariser_sits_out_objects_neither_brighter_nor_darker_than_the_background(data2d, monkeypatch):
    """The edge-aware regulariser's affinities are intensity differences. Seen as DIC relief (each
    nucleus lit on one side and shaded on the other, its inside at the background's grey), the
    painted objects are neither brighter nor darker than the painted background, the edges along
    the shear show no difference, and training runs without it (the appearance prior stays);
    the same nuclei in fluorescence are regularised, and ``REG_NEEDS_POLARITY`` off brings it back."""
    from scipy import ndimage as ndi

    import napari_unet.core.train as tr
    import napari_unet.core.train.loop as loop
    from napari_unet.core.losses import AppearancePrior

    img, sem, strokes = data2d
    path = ndi.gaussian_filter(img.astype(np.float32) / img.max(), 1.5)
    relief = 0.5 + ndi.shift(path, (0.7, 0.7), order=1) - ndi.shift(path, (-0.7, -0.7), order=1)
    potts, prior = [], []
    real_potts, real_prior = loop.edge_aware_potts, AppearancePrior.__call__

    def spy_potts(*a):
        potts.append(1)
        return real_potts(*a)

    def spy_prior(self, *a):
        prior.append(1)
        return real_prior(self, *a)

    monkeypatch.setattr(loop, "edge_aware_potts", spy_potts)
    monkeypatch.setattr(AppearancePrior, "__call__", spy_prior)
    from napari_unet.core.events import TrainStarted

    runs, notes = {}, {}
    for name, image, needs in [("fluorescence", img, True), ("relief", relief, True), ("relief, off", relief, False)]:
        monkeypatch.setattr(tr, "REG_NEEDS_POLARITY", needs)
        potts.clear(), prior.clear()
        events = list(iter_train(image, strokes, steps=2, **TINY))
        runs[name] = (len(potts), len(prior))
        notes[name] = next(ev.advice for ev in events if isinstance(ev, TrainStarted))
    assert runs == {"fluorescence": (2, 2), "relief": (0, 2), "relief, off": (2, 2)}
    # the user is told when training starts (the CLI's "note:", the Train widget's orange line)
    assert notes["relief"].startswith("the painted objects are neither brighter nor darker")
    assert notes["fluorescence"] == notes["relief, off"] == ""
    # in 2D the calibration moves such boundaries onto the strongest edges, and the note says so;
    # with the calibration off it does not, and neither does the note
    assert "strongest edges near them" in notes["relief"]
    monkeypatch.setattr(tr, "REG_NEEDS_POLARITY", True)
    monkeypatch.setattr(tr, "EDGE_CALIBRATION", False)
    events = list(iter_train(relief, strokes, steps=2, **TINY))
    alone = next(ev.advice for ev in events if isinstance(ev, TrainStarted))
    assert "from the network alone" in alone and "strongest edges" not in alone
