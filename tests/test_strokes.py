"""The quality benchmark's simulated painting (benchmarks/strokes.py): strokes follow the truth,
keep their margins, and are reproducible."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import strokes as S  # noqa: E402

from napari_unet.core.synthetic import make_nuclei  # noqa: E402


@pytest.fixture(scope="module")
def nuclei():
    img, sem, inst = make_nuclei((160, 160), seed=3)
    return sem, inst.astype(np.int32)


@pytest.fixture(scope="module")
def network():
    """Cells separated by 3-px membranes (class 2, one connected network)."""
    truth = np.ones((120, 120), np.uint8)
    for k in (10, 45, 80, 110):
        truth[k:k + 3, :] = 2
        truth[:, k - 5:k - 2] = 2
    return truth


def _follows_truth(st, truth):
    p = st > 0
    assert p.any()
    assert np.array_equal(st[p], truth[p])


@pytest.mark.parametrize("margin", [2, 4, 8])
def test_lines_paint_the_truth_and_keep_the_margin(nuclei, margin):
    sem, inst = nuclei
    st = S.lines(sem, 0, margin=margin, instances=inst)
    _follows_truth(st, sem)
    assert set(np.unique(st)) == {0, 1, 2}
    assert (st > 0).mean() < 0.1
    # background strokes stay more than `margin` px from any object
    assert ndi.distance_transform_edt(sem == 1)[st == 1].min() > margin
    # object strokes stay off each object's border (eroded by 1 px)
    for i in np.unique(inst[st == 2]):
        inside = ndi.distance_transform_edt(np.pad(inst == i, 1))[1:-1, 1:-1]
        assert np.all(inside[(st == 2) & (inst == i)] > 1)
    # about 30% of the objects get a line
    n = len(np.unique(inst[inst > 0]))
    assert 0.15 * n <= len(np.unique(inst[st == 2])) <= 0.35 * n


def test_lines_are_seeded(nuclei):
    sem, inst = nuclei
    assert np.array_equal(S.lines(sem, 5, instances=inst), S.lines(sem, 5, instances=inst))
    assert not np.array_equal(S.lines(sem, 5, instances=inst), S.lines(sem, 6, instances=inst))


def test_thin_class_gets_skeleton_segments(network):
    assert S.is_thin(network == 2)
    st = S.lines(network, 0, margin=4)
    _follows_truth(st, network)
    assert ndi.distance_transform_edt(network == 1)[st == 1].min() > 4
    # short segments along the membranes, not a flood of them
    painted = (st == 2).sum()
    assert 0 < painted < 0.5 * (network == 2).sum()
    assert ndi.label(st == 2, np.ones((3, 3)))[1] >= 3


def test_blobs_paint_interiors_and_far_background(nuclei, network):
    sem, inst = nuclei
    st = S.blobs(sem, 0, instances=inst)
    _follows_truth(st, sem)
    assert ndi.distance_transform_edt(sem == 1)[st == 1].min() >= 4
    st = S.blobs(network, 0)
    _follows_truth(st, network)


def test_planes_paint_every_sixth_plane_only():
    _, sem, inst = make_nuclei((20, 96, 96), seed=1, radius=(7.0, 12.0))
    st = S.planes(sem, 0, step=6, margin=4, instances=inst.astype(np.int32))
    _follows_truth(st, sem)
    painted = np.nonzero((st > 0).any(axis=(1, 2)))[0]
    assert set(painted) <= {3, 9, 15} and len(painted) >= 2
    for z in painted:
        assert ndi.distance_transform_edt(sem[z] == 1)[st[z] == 1].min() > 4


def test_corrections_paint_the_true_class_in_the_largest_errors(nuclei):
    sem, inst = nuclei
    start = S.lines(sem, 0, fraction=0.1, instances=inst, n_background=3)
    pred = np.ones_like(sem)            # every nucleus missed
    pred[:20, :20] = 2                  # and one false positive block
    new, added = S.corrections(pred, sem, start, n=5)
    assert 1 <= added <= 5
    _follows_truth(new, sem)
    diff = (new != start)
    assert diff.any()
    # new paint lies only where the prediction was wrong, and keeps the old strokes
    assert np.all(pred[diff] != sem[diff])
    assert np.array_equal(new[start > 0], start[start > 0])


def test_corrections_skip_errors_too_thin_for_the_brush(nuclei):
    """A 1-px false-positive rim around every nucleus is not painted (a 3-px brush does not fit
    in it); a missed nucleus is."""
    sem, inst = nuclei
    start = np.zeros_like(sem)
    grown = ndi.binary_dilation(sem == 2)          # each nucleus 1 px too large ...
    pred = np.where(grown, 2, 1).astype(np.uint8)
    assert ((pred == 2) & (sem == 1)).sum() > 100
    new, added = S.corrections(pred, sem, start, n=5)
    assert added == 0 and not new.any()
    missed = inst == np.bincount(inst[inst > 0]).argmax()   # ... and the largest one missed
    pred[missed] = 1
    new, added = S.corrections(pred, sem, start, n=5)
    assert added == 1
    assert np.all(missed[new > 0]) and np.all(new[new > 0] == 2)


def test_corrections_go_to_the_next_errors_where_the_paint_is_still_wrong(nuclei):
    """A model that still gets a painted region wrong (a kept previous model, paint not yet
    learned): the next round does not repeat the stroke there; it paints the next errors, and
    every stroke it counts adds paint."""
    sem, inst = nuclei
    sizes = np.bincount(inst[inst > 0])
    two = np.argsort(sizes)[::-1][:2]
    pred = sem.copy()
    pred[np.isin(inst, two)] = 1                        # the two largest nuclei missed
    first, added = S.corrections(pred, sem, np.zeros_like(sem), n=1)
    assert added == 1
    hit = set(np.unique(inst[first > 0]))
    assert len(hit) == 1 and hit <= set(two)
    again, added = S.corrections(pred, sem, first, n=1)    # the same prediction again
    assert added == 1
    new = (again != first)
    assert new.any() and not np.any(new & (first > 0))      # nothing repainted
    assert set(np.unique(inst[new])) == set(two) - hit and np.all(again[new] == 2)
    assert np.array_equal(again[first > 0], first[first > 0])
    # a region painted all over adds nothing and is not counted
    full = np.where(inst > 0, 2, 0).astype(np.uint8)
    done, added = S.corrections(pred, sem, full, n=3)
    assert added == 0 and np.array_equal(done, full)
