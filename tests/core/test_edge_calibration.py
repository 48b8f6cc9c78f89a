"""The end-of-run edge calibration (core/train/calibration.py): the background/object boundary
moved onto the image's edges when strokes leave a gap."""
import numpy as np
import pytest
import torch

from napari_unet import build_model, predict, train
from napari_unet.core.train import calibration
from napari_unet.core.train.calibration import (THRESHOLDS, _plane_gradient, _plane_laplacian, choose_threshold,
                                                contrast_weights, edge_scores, flux_scores, shift_head)


def _iou_at(prob, truth):
    """IoU with ``truth`` of ``prob`` thresholded at ``t``, as a function of ``t``."""
    return lambda t: ((prob > t) & truth).sum() / ((prob > t) | truth).sum()


def _membranes(n=96, width=3, spread=5.0):
    """Dark lines ``width`` px wide on a bright field, and a probability that falls off slowly
    across them (a network that has filled the gap around each line): over 0.5 far wider than
    the line."""
    img = np.full((n, n), 1.0, np.float32)
    dist = np.full((n, n), np.inf, np.float32)
    for c in (24, 60):
        for axis in (0, 1):
            d = np.abs(np.arange(n) - c)[:, None] * np.ones((1, n))
            d = d if axis == 0 else d.T
            dist = np.minimum(dist, d)
    line = dist <= width // 2
    img[line] = 0.1
    prob = 1 / (1 + np.exp((dist - spread) / 1.0))      # 0.5 at 5 px from the centre line
    return img, line, prob.astype(np.float32)


def test_edges_choose_the_line_width_not_the_gap():
    img, line, prob = _membranes()
    grad = _plane_gradient(img[None, None])
    valid = np.ones((1,) + img.shape, bool)
    scores = edge_scores(prob[None], grad, valid)
    th = choose_threshold(scores)
    assert th > 0.9                                  # shrinks the band...
    chosen = prob > th
    iou = (chosen & line).sum() / (chosen | line).sum()
    iou_half = ((prob > 0.5) & line).sum() / ((prob > 0.5) | line).sum()
    assert iou > 0.8 and iou_half < 0.5             # ...to the line the image shows


def test_flux_chooses_the_line_width_not_the_gap():
    img, line, prob = _membranes()
    lap = _plane_laplacian(img[None])
    th = choose_threshold(flux_scores(prob[None], lap, np.ones((1,) + img.shape, bool), polarity=-1.0))
    chosen = prob > th
    assert (chosen & line).sum() / (chosen | line).sum() > 0.8      # dark lines: polarity -1


def _bright_and_dim_nuclei(n=128):
    """Two bright and two dim discs (blurred), and a probability that puts 0.5 one px outside
    each and stays under 0.8 on the dim ones (a network less sure of them)."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n), 0.1, np.float32)
    prob = np.zeros((n, n), np.float32)
    truth = np.zeros((n, n), bool)
    for i, (cy, cx) in enumerate([(32, 32), (32, 96), (96, 32), (96, 96)]):
        d = np.hypot(yy - cy, xx - cx) - 16
        img[d < 0] = 0.9 if i < 2 else 0.3
        truth |= d < 0
        prob = np.maximum(prob, (1 if i < 2 else 0.8) / (1 + np.exp(d - 1.0)))
    return ndi.gaussian_filter(img, 1.5), truth, prob.astype(np.float32)


def test_flux_keeps_dim_objects_that_the_mean_edge_strength_would_cut_away():
    """The mean gradient along the contour rises when the dim objects' weak edges leave it (a
    threshold over their peak), so it cut them away (IoU 0.48); the flux, a sum, keeps every
    object that adds to it and still tightens the bright ones' boundary."""
    img, truth, prob = _bright_and_dim_nuclei()
    valid = np.ones((1,) + img.shape, bool)
    th = choose_threshold(flux_scores(prob[None], _plane_laplacian(img[None]), valid, polarity=1.0))
    iou = _iou_at(prob, truth)
    assert 0.5 < th < 0.8 and iou(th) > iou(0.5) and iou(th) > 0.93
    old = choose_threshold(edge_scores(prob[None], _plane_gradient(img[None, None]), valid))
    assert iou(old) < 0.6                                                    # what it replaced


def _nuclei_of_many_brightnesses(n=160):
    """Two bright discs and four eleven times dimmer (blurred), and a probability whose 0.5 lies
    2 px outside the bright ones (their blurred rim taken in) and just inside the dim ones, which
    the network is less sure of (at most 0.9)."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n), 0.1, np.float32)
    prob = np.zeros((n, n), np.float32)
    truth = np.zeros((n, n), bool)
    for i, (cy, cx) in enumerate([(30, 30), (30, 80), (30, 130), (110, 30), (110, 80), (110, 130)]):
        d = np.hypot(yy - cy, xx - cx) - 14
        img[d < 0] = 0.9 if i < 2 else 0.16
        truth |= d < 0
        prob = np.maximum(prob, 1 / (1 + np.exp(d - 2.0)) if i < 2 else 0.9 / (1 + np.exp(d + 0.5)))
    return ndi.gaussian_filter(img, 1.5), truth, prob.astype(np.float32)


def test_every_object_counts_in_units_of_its_own_contrast():
    """Summed in the image's units, the bright objects' flux rules: a threshold that trims their
    rim won although it cut 2.6 px off each dim object (IoU 0.77 where 0.5 gives 0.85). Each
    object's flux over its own contrast keeps the dim ones whole."""
    img, truth, prob = _nuclei_of_many_brightnesses()
    lap, valid = _plane_laplacian(img[None]), np.ones((1,) + img.shape, bool)
    weights = contrast_weights(prob[None], img[None], polarity=1.0)
    iou = _iou_at(prob, truth)
    th = choose_threshold(flux_scores(prob[None], lap, valid, 1.0, weights=weights))
    assert th < 0.7 and iou(th) >= iou(0.5) - 0.005
    bright, dim = weights[0][30, 30], weights[0][110, 80]
    assert 8 < dim / bright < 14                           # the contrast ratio, ~11
    old = choose_threshold(flux_scores(prob[None], lap, valid, 1.0))   # in the image's units
    assert old >= 0.8 and iou(old) < iou(th) - 0.05


def test_in_a_stack_an_objects_dim_top_and_bottom_planes_weigh_as_the_object():
    """Blurred along Z, an object's first and last planes are a dim cross-section of it; they are
    the same object, not dim ones of their own to be counted several times over."""
    prob = np.zeros((1, 7, 24, 48), np.float32)
    img = np.zeros_like(prob)
    for x0, level in ((4, 1.0), (28, 0.3)):                    # a bright and a dim ball, side by side
        prob[0, 1:6, 6:18, x0:x0 + 12] = 0.9
        img[0, 2:5, 6:18, x0:x0 + 12] = level
        img[0, (1, 5), 6:18, x0:x0 + 12] = 0.2 * level        # their Z-blurred caps
    w = contrast_weights(prob, img, polarity=1.0)[0]
    for x in (10, 34):
        assert w[1, 12, x] == w[3, 12, x] == w[5, 12, x]
    assert 3.0 < w[3, 12, 34] / w[3, 12, 10] < 3.7             # the dim ball weighs 1 / 0.3 times more


def _discs(n, discs, level):
    """An ``n`` x ``n`` image of discs ``(cy, cx, r)`` on 0.1, each pixel inside at ``level(d, r)``
    (``d``: its signed distance to the rim, negative inside), and the signed distance to the
    nearest rim."""
    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n), 0.1, np.float32)
    sd = np.full((n, n), np.inf, np.float32)
    for cy, cx, r in discs:
        d = np.hypot(yy - cy, xx - cx) - r
        sd = np.minimum(sd, d)
        img[d < 0] = level(d[d < 0], r)
    return img, sd


def _dim_rimmed_nuclei(n=128, inside=1.0):
    """Four nuclei, brighter in the centre than at the rim (blurred), two of them 3 px apart,
    and a probability whose 0.5 stops ``inside`` px short of every rim (a network that left the
    dim rim out); at 0.1 it bridges the pair."""
    from scipy import ndimage as ndi

    img, sd = _discs(n, [(32, 32, 14), (32, 96, 12), (96, 30, 13), (96, 59, 13)],
                     lambda d, r: np.clip(0.9 - 0.4 * (1 + d / r), 0.3, 1.0))
    prob = 1 / (1 + np.exp(sd + inside))
    return ndi.gaussian_filter(img, 1.2), sd < 0, prob.astype(np.float32)


def test_flux_grows_objects_that_stop_short_of_their_rim_without_merging_them():
    from scipy import ndimage as ndi

    assert min(THRESHOLDS) < 0.5                       # both sides of 0.5 are tried by default
    img, truth, prob = _dim_rimmed_nuclei()
    th = choose_threshold(flux_scores(prob[None], _plane_laplacian(img[None]),
                                      np.ones((1,) + img.shape, bool), polarity=1.0))
    iou = _iou_at(prob, truth)
    assert th < 0.5 and iou(th) > max(iou(t) for t in THRESHOLDS) - 0.01 and iou(0.5) < 0.9
    assert ndi.label(prob > th)[1] == 4 and ndi.label(prob > 0.1)[1] == 3     # the pair stays two


def test_no_edge_gain_keeps_one_half():
    assert choose_threshold([0.5] * len(THRESHOLDS)) == 0.5
    assert choose_threshold([1.0, 1.005] + [0.9] * (len(THRESHOLDS) - 2), min_gain=0.01) == 0.5   # a margin
    assert choose_threshold([float("nan")] * len(THRESHOLDS)) == 0.5


def test_a_reference_threshold_stays_unless_another_is_clearly_better():
    """A continued model's own threshold is the reference: flat edges keep it, not 0.5; with a
    margin (``min_gain``, ``NAPARI_UNET_EDGE_MIN_GAIN``) another must beat it by that much."""
    from napari_unet.core.train.calibration import RECALL_TOL

    margin = 0.01                                      # the rule up to the thirty-third session

    n, i5 = len(THRESHOLDS), THRESHOLDS.index(0.55)
    flat = [1.0] * n
    assert choose_threshold(flat) == 0.5 and choose_threshold(flat, reference=0.8) == 0.8
    small = list(flat)
    small[i5] = 1.0 + margin / 2                        # under the margin over the reference
    assert choose_threshold(small, reference=0.8, min_gain=margin) == 0.8
    assert choose_threshold(small, reference=0.8) == 0.55   # no margin (the default): the best edges
    clear = list(flat)
    clear[i5] = 1.0 + 3 * margin                        # clearly better: it moves, margin or not
    assert choose_threshold(clear, reference=0.8, min_gain=margin) == 0.55
    assert choose_threshold(clear, reference=0.8) == 0.55
    recall = [0.9] * n
    recall[i5] = 0.9 - 2 * RECALL_TOL                   # ... unless it loses the reference's paint
    assert choose_threshold(clear, recall=recall, reference=0.8) == 0.8
    assert choose_threshold([float("nan")] * n, reference=0.8) == 0.8
    assert choose_threshold(flat, reference=0.123) == 0.5   # not on the grid: 0.5


def test_a_carried_threshold_stays_allowed_when_new_paint_lowers_its_recall(monkeypatch):
    """Strokes painted since a model's threshold was chosen lie where it was wrong, and the new
    weights give them low probabilities: the paint's recall at the carried threshold falls past
    the limit. It stays allowed (CARRIED_ALLOWED), so it stays unless other edges beat it; every
    other threshold is still judged against 0.5's paint. Switched off: judged like the rest, so
    the boundary falls back to 0.5 (the rule up to the thirty-fifth session)."""
    from napari_unet.core.train import calibration
    from napari_unet.core.train.calibration import RECALL_TOL

    n, i8, i9 = len(THRESHOLDS), THRESHOLDS.index(0.8), THRESHOLDS.index(0.9)
    flat = [1.0] * n
    recall = [0.95] * n
    recall[i8] = recall[i9] = 0.95 - 2 * RECALL_TOL     # past the limit at 0.8 and 0.9
    assert choose_threshold(flat, recall=recall, reference=0.8) == 0.8
    higher = list(flat)
    higher[i9] = 2.0                                     # better edges where the paint is lost
    assert choose_threshold(higher, recall=recall, reference=0.8) == 0.8
    clear = list(flat)
    clear[THRESHOLDS.index(0.55)] = 1.1                  # better edges within the limit: moves
    assert choose_threshold(clear, recall=recall, reference=0.8) == 0.55
    assert choose_threshold(higher, recall=recall) == 0.5    # a fresh run: 0.5's limit holds
    monkeypatch.setattr(calibration, "CARRIED_ALLOWED", False)
    assert choose_threshold(flat, recall=recall, reference=0.8) == 0.5
    assert choose_threshold(clear, recall=recall, reference=0.8) == 0.55


def test_the_strongest_edges_win_and_ties_keep_the_reference():
    """No margin by default (EDGE_MIN_GAIN): a threshold whose edges score 0.2% above 0.5's wins
    (the flat top of the flux on nuclei, docs/quality.md), as it does over a continued model's own
    threshold; an exact tie keeps the reference; the recall limits still hold."""
    from napari_unet.core.train.calibration import EDGE_MIN_GAIN, RECALL_TOL

    n, i3 = len(THRESHOLDS), THRESHOLDS.index(0.3)
    assert EDGE_MIN_GAIN == 0.0
    top = [1.0] * n
    top[i3] = 1.002
    assert choose_threshold(top) == 0.3 and choose_threshold(top, reference=0.8) == 0.3
    assert choose_threshold(top, min_gain=0.01) == 0.5                 # the former 1% margin
    assert choose_threshold([1.0] * n) == 0.5 and choose_threshold([1.0] * n, reference=0.8) == 0.8
    bg = [0.9] * n
    bg[i3] = 0.9 - 2 * RECALL_TOL                                    # 0.3 loses painted background
    assert choose_threshold(top, bg_recall=bg) == 0.5


@pytest.mark.parametrize("continued", [False, True])
def test_a_run_moves_to_slightly_stronger_edges_fresh_or_continued(continued, monkeypatch):
    """Through ``train``: edges that score 0.3 a quarter of a percent above every other threshold
    move the boundary there, in a fresh run and in one that continues a model carrying 0.8 (a
    correction round whose map's best threshold drifted down); with the former 1% margin
    (``EDGE_MIN_GAIN``) neither moves."""
    import napari_unet.core.train as t
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]

    def run(margin: float):
        monkeypatch.setattr(calibration, "EDGE_MIN_GAIN", margin)
        m = None
        if continued:
            monkeypatch.setattr(t, "EDGE_CALIBRATION", False)
            m = train(img, sparse, steps=4, device="cpu", seed=0, base_channels=4, depth=2)
            monkeypatch.setattr(t, "EDGE_CALIBRATION", True)
            shift_head(m, 0.8)
            m.meta["edge_threshold"] = 0.8
        top = [1.0] * len(THRESHOLDS)
        top[THRESHOLDS.index(0.3)] = 1.0025
        monkeypatch.setattr(calibration, "flux_scores", lambda *a, **k: list(top))
        monkeypatch.setattr(calibration, "RECALL_TOL", 1.0)    # a 4-step model's paint: not the point here
        out = train(img, sparse, model=m, steps=2 if continued else 4, device="cpu", seed=0,
                    base_channels=4, depth=2)
        return out.meta["training"]["edge_threshold"]

    assert run(0.0) == 0.3
    assert run(0.01) == (0.8 if continued else 0.5)


@pytest.mark.parametrize("keep", [True, False])
def test_continuing_keeps_the_models_threshold_where_the_edges_do_not_choose(keep, monkeypatch):
    """A correction round on a model calibrated at 0.8 whose edges score every threshold alike
    keeps 0.8 (its head shifted again, the record saying so); switched off, it falls to 0.5."""
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    m = train(img, sparse, steps=4, device="cpu", seed=0, base_channels=4, depth=2)
    trained_bias = m.head.bias.detach().clone()     # whatever this run chose, from its trained head
    if m.meta["edge_threshold"] is not None:
        shift_head(m, 1.0 - m.meta["edge_threshold"])
        trained_bias = m.head.bias.detach().clone()
    shift_head(m, 0.8)
    m.meta["edge_threshold"] = 0.8
    monkeypatch.setattr(calibration, "flux_scores", lambda *a, **k: [1.0] * len(THRESHOLDS))
    monkeypatch.setattr(calibration, "CONTINUE_KEEPS_THRESHOLD", keep)
    monkeypatch.setattr(calibration, "RECALL_TOL", 1.0)    # a 4-step model's paint at 0.8: not the point here
    again = train(img, sparse, model=m, steps=2, lr=1e-12, device="cpu", seed=0)
    assert again.meta["edge_threshold"] == (0.8 if keep else None)
    assert again.meta["training"]["edge_threshold"] == (0.8 if keep else 0.5)
    expected = build_model(dims=2, base_channels=4, depth=2)    # the trained head, shifted to 0.8 or not
    expected.head.bias.data.copy_(trained_bias)
    if keep:
        shift_head(expected, 0.8)
    assert torch.allclose(again.head.bias, expected.head.bias, atol=1e-5)


def test_shift_head_makes_argmax_a_threshold():
    torch.manual_seed(0)
    model = build_model(dims=2, classes=2, base_channels=4, depth=2)
    img = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    before = predict(model, img, device="cpu")
    th = float(np.quantile(before[1], 0.7))
    th = min(max(th, 0.05), 0.95)
    shift_head(model, th)
    after = predict(model, img, device="cpu")
    sure = np.abs(before[1] - th) > 1e-3             # (float rounding right at the threshold)
    assert np.array_equal((after[1] > 0.5)[sure], (before[1] > th)[sure])


def test_shift_head_with_more_classes_moves_only_the_background_boundary():
    from napari_unet.core.train.calibration import object_odds

    torch.manual_seed(1)
    model = build_model(dims=2, classes=3, base_channels=4, depth=2)
    with torch.no_grad():  # an untrained head is nearly uniform: spread its outputs
        model.head.weight.mul_(50)
    img = np.random.default_rng(1).random((40, 48)).astype(np.float32)
    before = predict(model, img, device="cpu")
    odds = object_odds(torch.from_numpy(before)[None])[0].numpy()
    th = min(max(float(np.quantile(odds, 0.6)), 0.05), 0.95)
    shift_head(model, th)
    after = predict(model, img, device="cpu")
    sure = np.abs(odds - th) > 1e-3
    assert sure.mean() > 0.9
    # an object class where the odds exceed the threshold, and the same one as before
    assert np.array_equal((after.argmax(0) > 0)[sure], (odds > th)[sure])
    obj = sure & (odds > th)
    assert np.array_equal(after[1:].argmax(0)[obj], before[1:].argmax(0)[obj])


def test_training_records_the_threshold_and_skips_dense_paint():
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    m = train(img, sparse, steps=12, device="cpu", seed=0, base_channels=4, depth=2)
    th = m.meta["training"]["edge_threshold"]
    assert th in THRESHOLDS
    dense = train(img, sem, steps=4, device="cpu", seed=0, base_channels=4, depth=2)
    # no edges to look for in a dense mask: it trains on its class shares (test_dense_shares.py)
    assert dense.meta["training"]["edge_threshold"] is None
    three = sem.copy()
    three[(sem == 2) & (np.arange(96)[None, :] > 48)] = 3
    sparse3 = np.zeros_like(three)
    sparse3[::8] = three[::8]
    m3 = train(img, sparse3, steps=4, device="cpu", seed=0, base_channels=4, depth=2)
    assert m3.meta["training"]["edge_threshold"] in THRESHOLDS  # more classes: the background's boundary


def test_off_by_environment(monkeypatch):
    import napari_unet.core.train as t
    from napari_unet.core.synthetic import make_nuclei

    monkeypatch.setattr(t, "EDGE_CALIBRATION", False)
    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    assert train(img, sparse, steps=4, device="cpu", seed=0, base_channels=4,
                 depth=2).meta["training"]["edge_threshold"] is None


@pytest.mark.parametrize("dims", [3, 2])
def test_stacks_are_calibrated_unless_switched_off(dims, monkeypatch):
    """Stacks (3D models and 2D models on the planes) are calibrated by default (the flux
    criterion); ``EDGE_CALIBRATION_STACKS`` off (the default with the mean gradient) keeps
    the network's own boundary."""
    import napari_unet.core.train as t
    from napari_unet.core.synthetic import make_nuclei, make_strokes

    img, sem, inst = make_nuclei((16, 64, 64), seed=4, radius=(7.0, 11.0))
    strokes = make_strokes(sem, inst, seed=4, plane_step=4)
    kw = dict(dims=dims, steps=3, device="cpu", seed=0, base_channels=4, depth=2,
              patch=(16, 32, 32) if dims == 3 else 32, batch_size=2)
    assert t.EDGE_CALIBRATION_STACKS                                       # the default
    assert train(img, strokes, **kw).meta["training"]["edge_threshold"] in THRESHOLDS
    monkeypatch.setattr(t, "EDGE_CALIBRATION_STACKS", False)
    assert train(img, strokes, **kw).meta["training"]["edge_threshold"] is None


def _z_blurred_balls(shape=(24, 64, 64), outside=1.5):
    """Four balls of different brightness in a stack sampled 1.6x coarser along Z and blurred
    more along Z than in-plane, and a probability whose 0.5 lies ``outside`` px beyond them."""
    from scipy import ndimage as ndi

    zz, yy, xx = np.mgrid[:shape[0], :shape[1], :shape[2]]
    img = np.full(shape, 0.1, np.float32)
    sd = np.full(shape, np.inf, np.float32)
    for cz, cy, cx, r, b in [(8, 18, 18, 9, 0.9), (14, 44, 20, 10, 0.6), (10, 22, 46, 8, 0.8), (15, 46, 46, 9, 0.7)]:
        d = np.sqrt(((zz - cz) * 1.6) ** 2 + (yy - cy) ** 2 + (xx - cx) ** 2) - r
        sd = np.minimum(sd, d)
        img[d < 0] = b
    prob = 1 / (1 + np.exp(sd - outside))
    return ndi.gaussian_filter(img, (1.6, 1.0, 1.0)), sd < 0, prob.astype(np.float32)


def test_flux_on_a_z_blurred_stack_finds_the_objects_boundary():
    img, truth, prob = _z_blurred_balls()
    valid = np.ones((1,) + img.shape, bool)
    iou = _iou_at(prob, truth)
    th = choose_threshold(flux_scores(prob[None], _plane_laplacian(img[None]), valid, polarity=1.0))
    best = max(iou(t) for t in THRESHOLDS)
    assert iou(0.5) < 0.65 and iou(th) > best - 0.02


def test_the_objects_paint_stays_predicted():
    """Edges that would grow stronger by cutting away weak parts of the object (and the object
    pixels painted there) do not get to: a threshold may lose at most RECALL_TOL of the paint."""
    from napari_unet.core.train.calibration import RECALL_TOL

    scores = [1.0 + 0.02 * i for i in range(len(THRESHOLDS))]          # rising to the end
    recall = [0.95] * 5 + [0.95 - 2 * RECALL_TOL] * (len(THRESHOLDS) - 5)
    assert choose_threshold(scores) == THRESHOLDS[-1]
    assert choose_threshold(scores, recall=recall) == THRESHOLDS[4]


def test_continuing_starts_from_the_trained_head_so_shifts_do_not_compound(monkeypatch):
    """A calibrated head carries its threshold in its bias; a continued run undoes it before
    training (and chooses afresh at the end), else each correction round would shift again."""
    import napari_unet.core.train as t
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    monkeypatch.setattr(t, "EDGE_CALIBRATION", False)
    m = train(img, sparse, steps=4, device="cpu", seed=0, base_channels=4, depth=2)
    assert m.meta["edge_threshold"] is None
    trained_bias = m.head.bias.detach().clone()
    shift_head(m, 0.8)
    m.meta["edge_threshold"] = 0.8
    # a vanishing lr: the weights stay, so the head's bias shows what the run started from
    again = train(img, sparse, model=m, steps=2, lr=1e-12, device="cpu", seed=0)
    assert torch.allclose(again.head.bias, trained_bias, atol=1e-6)
    assert again.meta["edge_threshold"] is None and again.meta["training"]["edge_threshold"] is None


def test_a_run_stopped_before_choosing_gives_the_head_its_threshold_back():
    import threading

    from napari_unet import iter_train
    from napari_unet.core.events import TrainStep
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    m = train(img, sparse, steps=4, device="cpu", seed=0, base_channels=4, depth=2)
    shift_head(m, 0.8)
    m.meta["edge_threshold"] = 0.8
    shifted = m.head.bias.detach().clone()
    stop = threading.Event()
    stop.set()   # a Stop before the first step
    events = list(iter_train(img, sparse, model=m, steps=50, device="cpu", seed=0, stop=stop))
    assert events[-1].reason == "stopped" and events[-1].step == 0
    assert torch.allclose(m.head.bias, shifted, atol=1e-6) and m.meta["edge_threshold"] == 0.8
    # stopped after a few steps: no time to choose, the threshold it came with
    stop2 = threading.Event()
    seen = []
    for ev in iter_train(img, sparse, model=m, steps=50, device="cpu", seed=0, stop=stop2):
        seen.append(ev)
        if isinstance(ev, TrainStep) and ev.step >= 2:
            stop2.set()
    assert seen[-1].reason == "stopped" and m.meta["edge_threshold"] == 0.8
    assert m.meta["training"]["edge_threshold"] == 0.8
    # the generator closed right after it started (before any step): the same
    carried = m.head.bias.detach().clone()
    gen = iter_train(img, sparse, model=m, steps=50, device="cpu", seed=0)
    next(gen)
    gen.close()
    assert torch.allclose(m.head.bias, carried, atol=1e-6) and m.meta["edge_threshold"] == 0.8


class _Threshold(torch.nn.Module):
    """A stand-in network: class 2 where the image exceeds ``level`` (``dark``: is below it)."""

    def __init__(self, level: float, dark: bool = False):
        super().__init__()
        self.level, self.sign = level, -1.0 if dark else 1.0

    def forward(self, x):
        z = 40.0 * self.sign * (x[:, :1] - self.level)
        return torch.cat([torch.zeros_like(z), z], 1)


def test_region_flux_ranks_the_boundary_on_the_edge_above_shrunk_or_swollen_ones():
    from scipy import ndimage as ndi

    from napari_unet.core.train.calibration import flux_evidence, region_flux

    yy, xx = np.mgrid[:64, :64]
    disk = ((yy - 32) ** 2 + (xx - 32) ** 2 < 12 ** 2).astype(np.float32)
    img = ndi.gaussian_filter(disk, 2.0)
    x = torch.from_numpy(img)[None, None]
    y = torch.zeros(1, 64, 64, dtype=torch.long)
    y[0, 30:34, 30:34] = 2
    y[0, 2:6, 2:6] = 1
    kw = dict(to_dev=lambda t: t, autocast=dict(device_type="cpu", enabled=False), batch=1)
    flux = {lv: region_flux(_Threshold(lv), x, flux_evidence(x, y), **kw) for lv in (0.1, 0.5, 0.9)}
    assert flux[0.5] > flux[0.1] and flux[0.5] > flux[0.9]
    # dark objects on a bright background: the polarity follows the paint
    inv = {lv: region_flux(_Threshold(1 - lv, dark=True), 1 - x, flux_evidence(1 - x, y), **kw)
           for lv in (0.1, 0.5, 0.9)}
    assert inv[0.5] > inv[0.1] and inv[0.5] > inv[0.9]
    # without background paint there is no polarity to read
    assert flux_evidence(x, torch.where(y == 1, 0, y)) is None


def _stained_tissue(n=128):
    """A dark stained region with lighter spots inside (nuclei in an IHC gland), blurred, and a
    probability that puts 0.5 two px outside the region and is a little less sure on the spots."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    region = (yy >= 24) & (yy < 104) & (xx >= 24) & (xx < 104)
    spots = np.zeros((n, n), bool)
    for cy in range(34, 100, 16):
        for cx in range(34, 100, 16):
            spots |= (yy - cy) ** 2 + (xx - cx) ** 2 <= 9
    img = ndi.gaussian_filter(np.where(spots, 0.8, np.where(region, 0.3, 1.0)), 1.0).astype(np.float32)
    outside = ndi.distance_transform_edt(~region) - ndi.distance_transform_edt(region)
    prob = np.where(spots, 0.96, 1 / (1 + np.exp(outside - 2.0))).astype(np.float32)
    return img, region, spots, prob


def test_the_boundary_moves_onto_the_edge_without_carving_holes_in_the_objects(monkeypatch):
    """Every lighter spot inside a dark region has a negative Laplacian: when holes carved inside
    the objects counted, the flux rose with each spot cut out and the choice took them all."""
    from napari_unet.core.train import calibration

    img, region, spots, prob = _stained_tissue()
    lap, valid = _plane_laplacian(img[None]), np.ones((1,) + img.shape, bool)
    iou = _iou_at(prob, region)
    th = choose_threshold(flux_scores(prob[None], lap, valid, polarity=-1.0))
    assert 0.5 < th < 0.96 and (prob[spots] > th).all() and iou(th) > 0.98 > iou(0.5)
    monkeypatch.setattr(calibration, "EDGE_NEW_HOLES", True)       # as up to the seventeenth session
    carved = choose_threshold(flux_scores(prob[None], lap, valid, polarity=-1.0))
    assert carved > 0.96 and iou(carved) < 0.9


def _gland_among_other_dark_nuclei(n=128):
    """A dark stained region, and other cells as dark (the tissue's blue-stained nuclei in an IHC
    image) below it; a probability whose 0.5 lies 2 px inside the region (the network stopped
    short of its edge) and that gives the other cells 0.015 (not the painted class)."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    region = (yy >= 24) & (yy < 80) & (xx >= 24) & (xx < 104)
    others = np.zeros((n, n), bool)
    for cx in range(20, 110, 14):
        others |= (yy - 104) ** 2 + (xx - cx) ** 2 <= 16
    img = ndi.gaussian_filter(np.where(region, 0.3, np.where(others, 0.2, 1.0)), 1.0).astype(np.float32)
    outside = ndi.distance_transform_edt(~region) - ndi.distance_transform_edt(region)
    prob = np.where(others, 0.015, 1 / (1 + np.exp(outside + 2.0))).astype(np.float32)
    return img, region, others, prob


def test_a_lower_threshold_grows_the_objects_and_adds_none(monkeypatch):
    """Below 0.5 only the objects the network found at 0.5 are scored, grown: cells as dark as
    the objects, which the network put at 0.015, have strong edges of their own, and when they
    counted the flux took the grid's lowest threshold to take them in."""
    img, region, others, prob = _gland_among_other_dark_nuclei()
    lap, valid = _plane_laplacian(img[None]), np.ones((1,) + img.shape, bool)
    w = contrast_weights(prob[None], img[None], -1.0)
    iou = _iou_at(prob, region)
    th = choose_threshold(flux_scores(prob[None], lap, valid, -1.0, weights=w))
    assert 0.015 < th < 0.5 and iou(th) > 0.99 > 0.9 > iou(0.5)
    monkeypatch.setattr(calibration, "EDGE_NEW_OBJECTS", True)      # as up to the twenty-seventh session
    taken = choose_threshold(flux_scores(prob[None], lap, valid, -1.0, weights=w))
    assert taken < 0.015 and (prob[others] > taken).all() and iou(taken) < 0.85


def test_an_objects_dim_caps_in_a_stack_are_its_growth_not_new_objects():
    """In a stack ``(N, Z, Y, X)`` the planes a lower threshold adds above and below an object
    grow it (one object along Z, as its contrast counts); crops ``(N, Y, X)`` never join."""
    from napari_unet.core.train.flux_regions import grown_only

    fg = np.zeros((1, 7, 16, 32), bool)
    fg[0, 1:6, 4:12, 2:10] = True                  # an object, its caps at planes 1 and 5
    fg[0, 3, 4:12, 20:28] = True                   # another only the lower threshold makes
    core = np.zeros_like(fg)
    core[0, 2:5, 5:11, 3:9] = True                 # the object at 0.5
    kept = grown_only(fg, core)
    assert kept[0, 1:6, 4:12, 2:10].all() and not kept[..., 16:].any()
    crops = np.stack([fg[0, 3], fg[0, 3]])         # the same pixels in a second crop, without a core
    kept = grown_only(crops, np.stack([core[0, 3], np.zeros_like(core[0, 3])]))
    assert kept[0, 4:12, 2:10].all() and not kept[1].any() and not kept[0, :, 16:].any()


class _FixedOdds(torch.nn.Module):
    """A 'model' whose foreground probability on every crop is ``prob`` (logits of two classes)."""

    def __init__(self, prob):
        super().__init__()
        p = torch.as_tensor(prob).clamp(1e-4, 1 - 1e-4)
        self.register_buffer("logit", torch.log(p / (1 - p)))

    def forward(self, x):
        lg = self.logit.expand(x.shape[0], *self.logit.shape)
        return torch.stack([torch.zeros_like(lg), lg], 1)


def _nuclei_seen_two_ways(n=128):
    """Blurred discs as fluorescence (brighter than the background) and as DIC relief (the
    difference of the blurred discs across a diagonal shear: one side lit, the other shaded, the
    interior at the background's grey); a probability whose 0.5 lies 2 px outside each disc
    (the gap the strokes left); strokes along each disc's middle and in the far background."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    sd = np.full((n, n), np.inf, np.float32)
    for cy, cx in [(32, 32), (32, 96), (96, 32), (96, 96)]:
        sd = np.minimum(sd, np.hypot(yy - cy, xx - cx) - 15)
    fluo = ndi.gaussian_filter((sd < 0).astype(np.float32), 1.5)
    relief = 0.5 + ndi.shift(fluo, (1, 1), order=1) - ndi.shift(fluo, (-1, -1), order=1)
    prob = (1 / (1 + np.exp(sd - 2.0))).astype(np.float32)
    paint = np.zeros((n, n), np.uint8)
    paint[(sd < -4) & (np.abs(yy % 64 - 32) <= 1)] = 2
    paint[(sd > 10) & (np.abs(xx - 64) <= 1)] = 1
    return fluo, relief.astype(np.float32), prob, paint


def test_objects_neither_brighter_nor_darker_get_no_flux(monkeypatch):
    """The flux is signed by the objects' polarity. DIC relief has none (a painted object pixel
    is brighter than a painted background pixel about half the time): its Laplacian's zero
    crossings are not the objects' boundaries, and no flux scores it (with the fallback off, the
    calibration keeps 0.5). The same discs in fluorescence are calibrated as before."""
    from napari_unet.core.train.calibration import MIN_POLARITY, brighter_share, edge_threshold

    fluo, relief, prob, paint = _nuclei_seen_two_ways()
    obj, bg = paint == 2, paint == 1
    assert brighter_share(fluo[obj], fluo[bg]) > 0.99 and brighter_share(fluo[bg], fluo[obj]) < 0.01
    assert abs(brighter_share(relief[obj], relief[bg]) - 0.5) < MIN_POLARITY
    model = _FixedOdds(prob)
    kw = dict(to_dev=lambda t: t, autocast=dict(device_type="cpu", enabled=False), batch=1)
    y = torch.as_tensor(paint[None].astype(np.int64))
    th, scores = edge_threshold(model, torch.as_tensor(fluo[None, None]), y, **kw)
    assert len(scores) == len(THRESHOLDS) and th > 0.5          # fluorescence: moved onto the edge
    monkeypatch.setattr(calibration, "NO_POLARITY", "keep")
    th, scores = edge_threshold(model, torch.as_tensor(relief[None, None]), y, **kw)
    assert (th, scores) == (0.5, [])                            # relief: no polarity, no flux


def _large_cells_in_phase_contrast(n=160):
    """Four large discs as phase contrast shows them: a dark band inside the edge, a bright halo
    outside it, the interior back at the background's grey (the shade-off); a probability whose
    0.5 lies 3 px outside each disc; strokes across the interiors and in the far background."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    sd = np.full((n, n), np.inf, np.float32)
    for cy, cx in [(40, 40), (40, 120), (120, 40), (120, 120)]:
        sd = np.minimum(sd, np.hypot(yy - cy, xx - cx) - 22)
    img = 0.5 - 0.35 * ((sd < 0) & (sd > -4)) + 0.35 * ((sd >= 0) & (sd < 4))
    paint = np.zeros((n, n), np.uint8)
    paint[(sd < -8) & (np.abs(yy % 80 - 40) <= 1)] = 2
    paint[(sd > 10) & (np.abs(xx - 80) <= 1)] = 1
    prob = (1 / (1 + np.exp(sd - 3.0))).astype(np.float32)
    return ndi.gaussian_filter(img.astype(np.float32), 1.0), sd < 0, prob, paint


def test_objects_without_polarity_are_moved_onto_their_strongest_edges(monkeypatch):
    """No flux without a polarity, but the mean gradient magnitude along the contour needs none:
    large cells in phase contrast, whose interior is the background's grey, get their boundary
    on the dark-to-halo edge instead of the 3 px the strokes left open (IoU 0.78 -> 0.99)."""
    from napari_unet.core.train.calibration import MIN_POLARITY, brighter_share, edge_threshold

    img, truth, prob, paint = _large_cells_in_phase_contrast()
    assert abs(brighter_share(img[paint == 2], img[paint == 1]) - 0.5) < MIN_POLARITY
    kw = dict(to_dev=lambda t: t, autocast=dict(device_type="cpu", enabled=False), batch=1)
    args = (_FixedOdds(prob), torch.as_tensor(img[None, None]), torch.as_tensor(paint[None].astype(np.int64)))
    th, scores = edge_threshold(*args, **kw)
    iou = _iou_at(prob, truth)
    assert len(scores) == len(THRESHOLDS) and th > 0.5 and iou(th) > iou(0.5) + 0.15
    no_background = torch.as_tensor(np.where(paint == 1, 0, paint)[None].astype(np.int64))
    assert edge_threshold(*args[:2], no_background, **kw) == (0.5, [])   # no polarity to read
    monkeypatch.setattr(calibration, "NO_POLARITY", "keep")    # the nineteenth session's rule
    assert edge_threshold(*args, **kw) == (0.5, [])


def test_polarity_is_read_per_object_class():
    """Each painted object class against the painted background: all brighter +1, all darker -1;
    a class with no polarity, or classes on both sides (bright nuclei and dark vacuoles), give
    None, so one sign of the flux never moves the boundary of a class it does not fit."""
    from napari_unet.core.train.calibration import class_contrasts, paint_polarity

    rng = np.random.default_rng(0)
    paint = np.repeat(np.array([1, 2, 3], np.uint8), 500)
    bg = rng.normal(0.5, 0.05, 500)
    def img(c2, c3):
        return np.concatenate([bg, rng.normal(c2, 0.05, 500), rng.normal(c3, 0.05, 500)])
    assert paint_polarity(img(0.9, 0.7), paint) == 1.0
    assert paint_polarity(img(0.1, 0.3), paint) == -1.0
    assert paint_polarity(img(0.9, 0.1), paint) is None                # both sides
    assert paint_polarity(img(0.9, 0.5), paint) is None                # class 3: no polarity
    shares = class_contrasts(img(0.9, 0.1), paint)
    assert shares[0] > 0.99 and shares[1] < 0.01
    assert class_contrasts(img(0.9, 0.1), np.where(paint == 1, 0, paint)) == []   # no background paint


def _small_nuclei(n=96, inside=3.0):
    """Sixteen bright nuclei 9-11 px across with sharp edges, two of them 2 px apart, and a
    probability whose 0.5 stops ``inside`` px short of every edge (a network that left their rims
    out, as on BBBC039 at a third of its magnification)."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    img = np.full((n, n), 0.1, np.float32)
    sd = np.full((n, n), np.inf, np.float32)
    centres = [(12 + 24 * i, 12 + 24 * j) for i in range(4) for j in range(4)]
    centres[10] = (60, 49)                       # 2 px from its neighbour at (60, 60)
    for k, (cy, cx) in enumerate(centres):
        d = np.hypot(yy - cy, xx - cx) - (4.5 + (k % 3) * 0.5)
        sd = np.minimum(sd, d)
        img[d < 0] = 0.9
    prob = 1 / (1 + np.exp(sd + inside))
    return ndi.gaussian_filter(img, 0.7), sd < 0, prob.astype(np.float32)


@pytest.mark.parametrize("inside, lowest", [(2.0, 0.1), (3.0, 0.05)])
def test_small_objects_grow_as_far_as_their_edges_and_no_further(inside, lowest):
    """On small objects a rim the network left out is a large share of each, and the threshold
    that gives it back can lie under 0.1 (nuclei ~10 px across: 0.02, twenty-first session); the
    flux goes that far, and stops at the edge when the network stops nearer to it."""
    from scipy import ndimage as ndi

    img, truth, prob = _small_nuclei(inside=inside)
    valid = np.ones((1,) + img.shape, bool)
    w = contrast_weights(prob[None], img[None], 1.0)
    th = choose_threshold(flux_scores(prob[None], _plane_laplacian(img[None]), valid, 1.0, weights=w))
    iou = _iou_at(prob, truth)
    assert th == lowest and iou(th) > 0.9 > iou(0.5) + 0.3
    assert iou(th) >= max(iou(t) for t in THRESHOLDS) - 1e-9
    assert ndi.label(prob > th)[1] == ndi.label(truth)[1] == 16     # the close pair stays two


def test_a_confident_swell_beyond_0_99_is_trimmed_to_the_edge():
    """Small nuclei that the network swells 3 px into the unpainted gap so confidently that
    even 0.99 keeps the swell (real H&E, CPM-15 image03: 0.99 chosen, 22,305 false positives
    against 1,801 false negatives): the grid reaches above 0.99, and the edges choose there."""
    from scipy import ndimage as ndi

    img, sd = _discs(96, [(20, 20, 6), (20, 60, 5), (60, 24, 6), (64, 70, 7)], lambda d, r: 0.9)
    img = ndi.gaussian_filter(img, 1.0)
    truth = sd < 0
    prob = (1 / (1 + np.exp(2.0 * (sd - 3.0)))).astype(np.float32)   # 0.9975 at the true edge
    iou = _iou_at(prob, truth)
    assert max(THRESHOLDS) > 0.99 and iou(0.99) < 0.8
    th = choose_threshold(flux_scores(prob[None], _plane_laplacian(img[None]),
                                      np.ones((1,) + img.shape, bool), polarity=1.0))
    assert th > 0.99 and iou(th) > iou(0.99) + 0.1 and iou(th) > 0.85


def _dark_rods(halo: bool, n=160, short=0.0):
    """Four dark rods 10 px wide. ``halo``: as phase contrast shows bacteria, the intensity rises
    over the 3 px inside the edge to a bright halo 3 px wide outside it, then falls back to the
    background; the probability's 0.5 lies on the edge (where the network put it), or ``short`` px
    inside it. Otherwise a blurred step, the probability's 0.5 2 px outside the edge (the gap the
    strokes left). Strokes along each rod's middle and across the far background."""
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:n, :n]
    sd = np.full((n, n), np.inf, np.float32)
    for cy, cx in [(40, 40), (40, 120), (120, 40), (120, 120)]:
        along = np.clip(yy - cy, -16, 16)
        sd = np.minimum(sd, np.hypot(yy - cy - along, xx - cx) - 5)
    if halo:
        img = np.where(sd < 0, 0.15 + 0.75 * np.clip((sd + 3) / 3, 0, 1), np.where(sd < 3, 0.9, 0.5))
    else:
        img = np.where(sd < 0, 0.15, 0.5)
    paint = np.zeros((n, n), np.uint8)
    paint[(sd < -2) & (np.abs(xx % 80 - 40) <= 1)] = 2
    paint[(sd > 10) & (np.abs(yy - 80) <= 1)] = 1
    prob = (1 / (1 + np.exp((sd - (-short if halo else 2.0)) / 1.5))).astype(np.float32)
    return ndi.gaussian_filter(img.astype(np.float32), 1.0), sd < 0, prob, paint


def test_a_halo_around_the_objects_keeps_the_networks_boundary(monkeypatch):
    """The flux's zero crossing is a blurred step's edge. Phase contrast rings dark cells with a
    bright halo: there the crossing lies inside the cell, and the flux cut 1-2 px off every rod
    (a real E. coli image: 0.98 chosen, IoU 0.862 where 0.5 gives 0.914; docs/quality.md). Where
    the ring just outside the network's objects lies past the painted background by more than
    HALO_MAX of the objects' contrast, the calibration keeps 0.5; a blurred step, whose ring lies
    between object and background, is calibrated as before."""
    from napari_unet.core.train.calibration import HALO_MAX, edge_threshold
    from napari_unet.core.train.edge_evidence import halo_overshoot

    kw = dict(to_dev=lambda t: t, autocast=dict(device_type="cpu", enabled=False), batch=1)
    for halo in (True, False):
        img, truth, prob, paint = _dark_rods(halo)
        iou = _iou_at(prob, truth)
        over = halo_overshoot(prob[None], img[None], np.ones((1,) + img.shape, bool), -1.0,
                              (paint == 2)[None], (paint == 1)[None])
        args = (_FixedOdds(prob), torch.as_tensor(img[None, None]), torch.as_tensor(paint[None].astype(np.int64)))
        notes = []
        th, scores = edge_threshold(*args, **kw, notes=notes)
        assert (len(notes) == 1 and "a bright halo rings the objects" in notes[0]) == halo
        monkeypatch.setattr(calibration, "HALO_MAX", float("inf"))     # the rule before
        th_before, _ = edge_threshold(*args, **kw)
        monkeypatch.setattr(calibration, "HALO_MAX", HALO_MAX)
        if halo:
            assert over > HALO_MAX and (th, scores) == (0.5, []) and iou(0.5) > 0.95
            assert th_before > 0.5 and iou(th_before) < iou(0.5) - 0.1   # what the flux did
        else:
            assert over < 0 and th == th_before > 0.5 and iou(th) > iou(0.5) + 0.1


@pytest.mark.parametrize("short", [1.0, 1.5])
def test_under_a_halo_a_boundary_that_stops_short_goes_out_to_the_crest(short, monkeypatch):
    """The network sees a halo as bright as the background or brighter and can stop short of it,
    inside the dark-to-halo ramp (Omnipose's phase-contrast colonies, where the gaps between
    touching cells stayed open: 0.74-0.82 at 0.5). Under a halo the boundary goes out until the
    ring just outside the objects lies within HALO_RIDGE of the objects' contrast of the halo's
    crest, and no further; with the rule off (HALO_RIDGE inf) 0.5 stays, as before."""
    from scipy import ndimage as ndi

    from napari_unet.core.train.calibration import edge_threshold

    kw = dict(to_dev=lambda t: t, autocast=dict(device_type="cpu", enabled=False), batch=1)
    img, truth, prob, paint = _dark_rods(True, short=short)
    iou = _iou_at(prob, truth)
    args = (_FixedOdds(prob), torch.as_tensor(img[None, None]), torch.as_tensor(paint[None].astype(np.int64)))
    notes = []
    th, scores = edge_threshold(*args, **kw, notes=notes)
    assert scores == [] and len(notes) == 1 and "a bright halo rings the objects" in notes[0]
    assert th < 0.5 and iou(th) > iou(0.5) + 0.1 and iou(th) > 0.9
    halo = ndi.binary_dilation(truth, iterations=3) & ~truth
    assert not ((prob > th) & ~truth & ~halo).any()              # no further than the halo
    monkeypatch.setattr(calibration, "HALO_RIDGE", float("inf"))
    assert edge_threshold(*args, **kw) == (0.5, [])


def test_the_training_message_says_when_a_halo_keeps_the_boundary(monkeypatch):
    """Through ``iter_train``: when the halo rule keeps the network's boundary, the run's final
    message says so (the user otherwise sees no calibration note and cannot tell why); without a
    halo it does not."""
    import napari_unet.core.train as T
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    monkeypatch.setattr(calibration, "HALO_RIDGE", float("inf"))   # (no halo here to go out to)
    for over in (2.0, -0.2):
        monkeypatch.setattr(calibration, "halo_overshoot", lambda *a, o=over, **k: o)
        done = list(T.iter_train(img, sparse, steps=4, device="cpu", seed=0, base_channels=4, depth=2))[-1]
        said = "boundary kept where the network put it: a" in done.message and "halo rings the objects" in done.message
        assert said == (over > calibration.HALO_MAX), done.message
        if said:
            assert done.model.meta["training"]["edge_threshold"] == 0.5
    # a continued model keeps its own threshold under a halo, and the message names it
    monkeypatch.setattr(T, "EDGE_CALIBRATION", False)
    m = train(img, sparse, steps=4, device="cpu", seed=0, base_channels=4, depth=2)
    monkeypatch.setattr(T, "EDGE_CALIBRATION", True)
    shift_head(m, 0.8)
    m.meta["edge_threshold"] = 0.8
    monkeypatch.setattr(calibration, "halo_overshoot", lambda *a, **k: 2.0)
    done = list(T.iter_train(img, sparse, model=m, steps=2, device="cpu", seed=0))[-1]
    assert done.model.meta["training"]["edge_threshold"] == 0.8
    assert ("boundary kept where the network put it (class 2 above 0.8 of the trained probability: the "
            "continued model's own): a dark halo rings the objects") in done.message, done.message
    # with the crest rule, the boundary that moves says where it went
    monkeypatch.setattr(calibration, "HALO_RIDGE", 0.25)
    done = list(T.iter_train(img, sparse, model=m, steps=2, device="cpu", seed=0))[-1]
    t = done.model.meta["training"]["edge_threshold"]
    assert t < 0.8 and (f"boundary moved out to the halo's crest (class 2 above {t:g} of the trained "
                        "probability): a dark halo rings the objects") in done.message, done.message


def test_a_halo_seen_during_training_gates_the_appearance_priors_objects(monkeypatch):
    """Through ``iter_train``: the run reads the halo on its calibration crops (at READ_MAPS_AT
    steps, then twice as far, ...); once seen twice in a row (a young map alone does not decide),
    the appearance prior gates the object classes as it
    does the background for the rest of the run (the halo between touching cells looks like
    background, and charged at any width it was carved out of every colony), the model's record
    says from which step, and the end-of-run calibration takes it as a halo. Without one, or with
    ``HALO_GATE`` off, nothing changes."""
    import napari_unet.core.train as T
    from napari_unet.core.synthetic import make_nuclei
    from napari_unet.core.train import validation

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    monkeypatch.setattr(T, "READ_MAPS_AT", 2)
    monkeypatch.setattr(T, "SWELL_GUARD", False)   # its readings: tests/core/test_swell_guard.py
    readings = []
    real = validation.ValidationMixin._read_maps

    def spy(self, step):
        nxt = real(self, step)
        readings.append((step, nxt, self.appearance.gate_objects))
        return nxt

    monkeypatch.setattr(validation.ValidationMixin, "_read_maps", spy)
    opts = dict(steps=9, device="cpu", seed=0, base_channels=4, depth=2)
    for over, gate in ((2.0, True), (-0.2, True), (2.0, False)):
        monkeypatch.setattr(T, "HALO_GATE", gate)
        monkeypatch.setattr(calibration, "halo_overshoot", lambda *a, o=over, **k: o)
        readings.clear()
        done = list(T.iter_train(img, sparse, **opts))[-1]
        seen = done.model.meta["training"]["regulariser"]["halo_seen_at_step"]
        if over > calibration.HALO_MAX and gate:   # two readings in a row (HALO_READINGS)
            assert readings == [(2, 4, False), (4, float("inf"), True)] and seen == 4
            assert "halo rings the objects" in done.message, done.message
            assert ("a halo read from step 4: from there the objects were not charged for covering "
                    "what looks like background") in done.message, done.message
        else:
            assert seen is None and ("halo rings" in done.message) == (over > calibration.HALO_MAX)
            assert "a halo read from step" not in done.message
            assert all(not g for _, _, g in readings)
            assert [s for s, _, _ in readings] == ([2, 4, 8] if gate else [2])   # doubling; off: once
