"""Object matching (napari_unet.core.objects) against hand-computed cases, and measurements."""
import numpy as np
import pytest

from napari_unet.core.measure import measure_objects, objects_csv
from napari_unet.core.objects import (OBJ_FALSE, OBJ_MATCHED, OBJ_MISSED, THRESHOLDS, as_objects,
                                      label_kind, match_objects, object_overlay)


def _case():
    """Four 4x4 true objects; predictions: exact (IoU 1), trimmed (12/16 = 0.75), a split of
    truth 3 into 12 px (IoU 0.75) + 4 px (0.25), nothing on truth 4, one false 2x2 object."""
    t = np.zeros((10, 10), np.uint16)
    t[0:4, 0:4] = 1
    t[0:4, 6:10] = 2
    t[6:10, 0:4] = 3
    t[6:10, 6:10] = 4
    p = np.zeros((10, 10), np.uint16)
    p[0:4, 0:4] = 7
    p[0:4, 6:9] = 3
    p[6:9, 0:4] = 5
    p[9, 0:4] = 9
    p[4:6, 4:6] = 2
    return p, t


def _row(res, thr):
    return next(r for r in res["thresholds"] if abs(r["threshold"] - thr) < 1e-9)


def test_hand_computed_matching():
    p, t = _case()
    res = match_objects(p, t)
    assert [r["threshold"] for r in res["thresholds"]] == list(THRESHOLDS)
    assert (res["n_true"], res["n_pred"]) == (4, 5)
    r = _row(res, 0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (3, 2, 1)
    assert r["precision"] == pytest.approx(3 / 5)
    assert r["recall"] == pytest.approx(3 / 4)
    assert r["f1"] == pytest.approx(2 / 3)
    assert r["ap"] == pytest.approx(3 / 6)
    assert r["mean_matched_iou"] == pytest.approx((1 + 0.75 + 0.75) / 3)
    assert _row(res, 0.75)["tp"] == 3  # IoU >= threshold counts
    r = _row(res, 0.8)
    assert (r["tp"], r["fp"], r["fn"]) == (1, 4, 3)
    assert r["ap"] == pytest.approx(1 / 8)
    assert r["f1"] == pytest.approx(2 / 9)
    assert _row(res, 0.95)["tp"] == 1
    assert res["f1_50"] == pytest.approx(2 / 3)
    assert res["mean_ap"] == pytest.approx(np.mean([r["ap"] for r in res["thresholds"]]))
    assert sorted(res["matches"]) == [(1, 7, 1.0), (2, 3, 0.75), (3, 5, 0.75)]
    assert (res["splits"], res["merges"]) == (1, 0)


def test_merge_and_symmetry():
    t = np.zeros((4, 9), np.uint8)
    t[:, 0:4] = 1
    t[:, 5:9] = 2
    p = np.zeros((4, 9), np.uint8)
    p[:, 0:9] = 1  # one object over both (IoU 16/36 each)
    res = match_objects(p, t, truth_kind="instance", pred_kind="instance")
    r = _row(res, 0.5)
    assert (r["tp"], r["fp"], r["fn"]) == (0, 1, 2)
    assert (res["splits"], res["merges"]) == (0, 1)
    swapped = match_objects(t, p, truth_kind="instance", pred_kind="instance")
    assert (swapped["splits"], swapped["merges"]) == (1, 0)


def test_perfect_and_empty():
    p, t = _case()
    res = match_objects(t, t)
    assert all(r["tp"] == 4 and r["fp"] == 0 and r["ap"] == 1.0 for r in res["thresholds"])
    empty = match_objects(np.zeros_like(t), t)
    assert _row(empty, 0.5)["fn"] == 4 and empty["f1_50"] == 0.0


def test_semantic_truth_becomes_connected_components():
    inst = np.zeros((12, 12), np.uint16)
    inst[1:5, 1:5] = 1
    inst[1:5, 5:9] = 2  # touches object 1: two objects as an instance mask, one as semantic
    inst[8:11, 8:11] = 3
    binary = np.where(inst > 0, 255, 0).astype(np.uint8)
    assert label_kind(inst) == "instance" and label_kind(binary) == "semantic"
    assert as_objects(binary).max() == 2
    assert as_objects(inst).max() == 3  # used as is
    # napari-unet class labels (1 = background, 2 = nucleus): components of class 2
    classes = np.where(inst > 0, 2, 1).astype(np.uint8)
    assert label_kind(classes) == "semantic"
    res = match_objects(classes, binary)
    assert _row(res, 0.5)["tp"] == 2 and res["n_true"] == 2
    res = match_objects(classes, inst)  # the two touching truths are merged by the prediction
    assert (res["n_true"], res["n_pred"], res["merges"]) == (3, 2, 1)
    # 0/1 masks: 1 is the foreground when the image holds a 0
    assert as_objects((inst > 0).astype(np.uint8)).max() == 2


def test_overlay_codes():
    p, t = _case()
    ov = object_overlay(p, t)
    assert ov[0, 0] == OBJ_MATCHED and ov[7, 0] == OBJ_MATCHED
    assert ov[9, 0] == OBJ_FALSE and ov[4, 4] == OBJ_FALSE
    assert ov[7, 7] == OBJ_MISSED
    assert ov[0, 9] == 0  # truth 2's pixel that the matched prediction left out
    assert ov[5, 0] == 0


def test_bad_input():
    with pytest.raises(ValueError, match="shape"):
        match_objects(np.zeros((3, 3), int), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="kind"):
        as_objects(np.zeros((3, 3), int), kind="blobs")
    with pytest.raises(TypeError):
        match_objects(np.zeros((3, 3)) + 0.5, np.zeros((3, 3), int))


def test_measurements_physical_units():
    lab = np.zeros((4, 10, 10), np.uint16)
    lab[1:3, 2:4, 2:7] = 1  # 2 x 2 x 5 = 20 voxels
    lab[0, 8:10, 8:10] = 4
    img = np.zeros(lab.shape, np.float32)
    img[lab == 1] = 3.0
    classes = np.where(lab > 0, 2, 1)
    rows = measure_objects(lab, image=img, classes=classes, spacing=(2.0, 0.5, 0.5),
                           class_names=["background", "nucleus"])
    assert [r["label"] for r in rows] == [1, 4]
    r = rows[0]
    assert r["volume"] == pytest.approx(20 * 2.0 * 0.25) and r["pixels"] == 20
    assert r["mean_intensity"] == pytest.approx(3.0)
    assert (r["centroid_z"], r["centroid_y"], r["centroid_x"]) == (1.5, 2.5, 4.0)
    assert (r["bbox_min_z"], r["bbox_max_z"], r["bbox_min_x"], r["bbox_max_x"]) == (1, 3, 2, 7)
    assert r["class"] == "nucleus"
    text = objects_csv(rows)
    assert text.splitlines()[0].startswith("label,volume,pixels,mean_intensity,centroid_z")
    assert len(text.splitlines()) == 3


def test_object_api_is_torch_free():
    import subprocess
    import sys

    code = ("import sys, napari_unet as n\n"
            "n.instance_labels; n.match_objects; n.measure_objects\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_no_object_on_either_side_is_undefined_not_perfect():
    """0 true and 0 predicted objects: precision, recall, F1 and AP are 0/0, NaN (never 1.0)."""
    from napari_unet.core.objects import format_object_scores

    res = match_objects(np.ones((8, 8), np.uint8), np.ones((8, 8), np.uint8))
    assert (res["n_true"], res["n_pred"]) == (0, 0)
    for r in res["thresholds"]:
        assert all(np.isnan(r[k]) for k in ("precision", "recall", "f1", "ap", "mean_matched_iou"))
    assert np.isnan(res["mean_ap"]) and np.isnan(res["f1_50"])
    assert "neither the truth nor the prediction holds an object" in res["note"]
    assert "of class 2" in match_objects(np.ones((8, 8), np.uint8), np.ones((8, 8), np.uint8),
                                         class_value=2)["note"]
    text = format_object_scores(res)
    assert "1.000" not in text and "nan" not in text and "mean AP over IoU 0.50..0.95: n/a" in text


def test_one_empty_side_leaves_only_its_ratio_undefined():
    _, t = _case()
    res = match_objects(np.zeros_like(t), t)  # no predicted object: precision 0/0, recall 0
    r = _row(res, 0.5)
    assert np.isnan(r["precision"]) and r["recall"] == 0.0 and r["f1"] == 0.0 and r["ap"] == 0.0
    assert res["mean_ap"] == 0.0 and "precision is undefined" in res["note"]
    res = match_objects(t, np.zeros_like(t))  # no true object: recall 0/0, precision 0
    r = _row(res, 0.5)
    assert np.isnan(r["recall"]) and r["precision"] == 0.0 and r["ap"] == 0.0
    assert "recall is undefined" in res["note"]
    assert "note" not in match_objects(t, t)
