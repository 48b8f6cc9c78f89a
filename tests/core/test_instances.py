"""Instance labels from a foreground probability (napari_unet.core.instances)."""
import numpy as np
import pytest

from napari_unet.core.instances import instance_labels
from napari_unet.core.objects import match_objects


def _disks(shape, disks):
    grid = np.ogrid[tuple(slice(0, s) for s in shape)]
    prob = np.zeros(shape, np.float32)
    for *c, r in disks:
        prob[sum((g - ci) ** 2 for g, ci in zip(grid, c)) <= r * r] = 0.9
    return prob


def test_touching_disks_are_split():
    disks = [(50, 40, 15), (50, 68, 15), (50, 140, 20), (20, 180, 5)]
    prob = _disks((100, 200), disks)
    lab = instance_labels(prob, seed_distance=8)
    assert lab.dtype == np.uint16 and lab.max() == 4
    ids = [int(lab[y, x]) for y, x, _ in disks]
    assert len(set(ids)) == 4 and 0 not in ids
    assert lab[0, 0] == 0
    # with a seed separation wider than the two touching disks, they stay one object
    assert instance_labels(prob, seed_distance=60).max() == 3
    # min_size removes the small disk (~80 px)
    assert instance_labels(prob, seed_distance=8, min_size=200).max() == 3


def test_3d_anisotropic_spacing():
    z, y, x = np.ogrid[:20, :64, :64]
    prob = np.zeros((20, 64, 64), np.float32)
    for cx in (20, 42):  # two spheres of radius 12 um, voxel 3 x 1 x 1 um, touching in x
        prob[((z - 10) * 3) ** 2 + (y - 32) ** 2 + (x - cx) ** 2 <= 144] = 1
    lab = instance_labels(prob, spacing=(3, 1, 1), seed_distance=6, method="distance")
    assert lab.max() == 2 and lab[10, 32, 20] != lab[10, 32, 42]
    lab_p = instance_labels(prob, spacing=(3, 1, 1), seed_distance=6, method="probability", sigma=2)
    assert lab_p.max() >= 1


def test_blocks_are_seamless():
    rng = np.random.default_rng(0)
    disks = [(int(rng.integers(10, 390)), int(rng.choice([rng.integers(10, 42), rng.integers(76, 110)])),
              int(rng.integers(4, 9))) for _ in range(40)]
    prob = _disks((400, 120), disks)
    # a long object crossing every block border, brightest in its middle (one seed)
    prob[20:380, 55:62] = (0.6 + 0.3 * (1 - np.abs(np.arange(20, 380) - 200) / 180))[:, None]
    kw = dict(seed_distance=6, method="probability", sigma=1.0)
    whole = instance_labels(prob, **kw)
    assert len(np.unique(whole[25:375, 58])) == 1
    blocks = instance_labels(prob, block=50, overlap=40, **kw)
    long_ids = np.unique(blocks[25:375, 58])
    assert len(long_ids) == 1 and long_ids[0] > 0  # one id across all 8 blocks
    res = match_objects(blocks, whole, pred_kind="instance", truth_kind="instance")
    r50 = res["thresholds"][0]
    assert res["n_pred"] == res["n_true"] and r50["fp"] == 0 and r50["fn"] == 0
    assert r50["mean_matched_iou"] > 0.98
    # into a memory map, as for stacks larger than RAM
    out = np.zeros(prob.shape, np.uint32)
    instance_labels(prob, block=50, overlap=40, out=out, **kw)
    assert np.array_equal(out, blocks)
    # the distance relief too: objects smaller than the overlap come out the same
    disks_only = _disks(prob.shape, disks)
    a = instance_labels(disks_only, seed_distance=6)
    b = instance_labels(disks_only, seed_distance=6, block=50, overlap=40)
    res = match_objects(b, a, pred_kind="instance", truth_kind="instance")
    assert res["n_pred"] == res["n_true"] and res["thresholds"][0]["tp"] == res["n_true"]


def test_blocks_3d_across_slabs():
    prob = _disks((40, 40, 40), [(20, 20, 12, 8), (5, 10, 10, 4)])
    a = instance_labels(prob, seed_distance=4)
    b = instance_labels(prob, seed_distance=4, block=7, overlap=6)
    assert a.max() == b.max() == 2
    assert len(np.unique(b[b > 0][a[a > 0] == a[20, 20, 12]])) == 1


def test_bad_input():
    with pytest.raises(ValueError, match="2D"):
        instance_labels(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="spacing"):
        instance_labels(np.zeros((5, 5), np.float32), spacing=(1, 2, 3))
    with pytest.raises(ValueError, match="method"):
        instance_labels(np.zeros((5, 5), np.float32), method="magic")
    assert instance_labels(np.zeros((5, 5), np.float32)).max() == 0


def test_big_inputs_go_blockwise_by_themselves(monkeypatch):
    from napari_unet.core import instances

    prob = _disks((30, 60, 60), [(8, 20, 20, 6), (8, 20, 31, 6), (22, 40, 40, 7)])
    whole = instance_labels(prob, seed_distance=4)
    monkeypatch.setattr(instances, "WHOLE_LIMIT", 60 * 60 * 8)  # slabs of 8 planes
    auto = instance_labels(prob, seed_distance=4)
    assert whole.max() == auto.max() == 3
    res = match_objects(auto, whole, pred_kind="instance", truth_kind="instance")
    assert res["thresholds"][-1]["tp"] == 3  # the same objects (IoU >= 0.95)
