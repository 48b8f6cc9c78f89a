import numpy as np
import pytest

from napari_unet import error_map, evaluate
from napari_unet.core.metrics import ERR_FN, ERR_FP, ERR_TP, ERR_WRONG, per_slice_scores


def test_hand_computed_scores():
    truth = np.zeros((10, 10), np.uint8)
    truth[:5] = 2
    truth[5:] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[:4] = 2
    pred[4:] = 1
    s = evaluate(pred, truth)
    c2, c1 = s["classes"][2], s["classes"][1]
    assert (c2["tp"], c2["fp"], c2["fn"]) == (40, 0, 10)
    assert c2["iou"] == pytest.approx(0.8) and c2["dice"] == pytest.approx(80 / 90)
    assert (c1["tp"], c1["fp"], c1["fn"]) == (50, 10, 0)
    assert c1["iou"] == pytest.approx(50 / 60) and c1["dice"] == pytest.approx(100 / 110)
    assert s["mean_iou"] == pytest.approx((0.8 + 50 / 60) / 2)
    assert s["foreground_iou"] == pytest.approx(0.8)
    assert s["pixels"] == 100 and s["ignored"] == 0


def test_unlabeled_truth_is_ignored_and_pred_zero_is_a_miss():
    truth = np.array([[0, 0, 2, 2], [1, 1, 2, 0]])
    pred = np.array([[2, 2, 2, 0], [1, 2, 2, 1]])
    s = evaluate(pred, truth)
    assert s["pixels"] == 5 and s["ignored"] == 3
    c2 = s["classes"][2]
    assert (c2["tp"], c2["fp"], c2["fn"]) == (2, 1, 1)
    c1 = s["classes"][1]
    assert (c1["tp"], c1["fp"], c1["fn"]) == (1, 0, 1)


def test_three_classes_and_chunking():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (3, 50, 60))
    pred = rng.integers(1, 4, (3, 50, 60))
    s = evaluate(pred, truth)
    for v in (1, 2, 3):
        m = truth != 0
        tp = int(((pred == v) & (truth == v) & m).sum())
        fp = int(((pred == v) & (truth != v) & m).sum())
        fn = int(((pred != v) & (truth == v)).sum())
        assert (s["classes"][v]["tp"], s["classes"][v]["fp"], s["classes"][v]["fn"]) == (tp, fp, fn)
    from napari_unet.core.metrics import confusion
    _, small = confusion(pred, truth, chunk=1000)
    _, big = confusion(pred, truth)
    assert (small == big).all()
    assert len(per_slice_scores(pred, truth)) == 3


def test_error_map_codes_and_counts():
    truth = np.array([[0, 1, 1, 2, 2, 3]])
    pred = np.array([[2, 1, 2, 2, 1, 2]])
    e = error_map(pred, truth)
    np.testing.assert_array_equal(e, [[0, 0, ERR_FP, ERR_TP, ERR_FN, ERR_WRONG]])
    e2 = error_map(pred, truth, class_value=2)
    np.testing.assert_array_equal(e2, [[0, 0, ERR_FP, ERR_TP, ERR_FN, ERR_FP]])


@pytest.mark.parametrize("pred,truth,err", [
    (np.zeros((3, 3), int), np.zeros((3, 4), int), ValueError),
    (np.zeros((3, 3), float) + 0.5, np.zeros((3, 3), int), TypeError),
    (np.zeros((3, 3), int) - 1, np.zeros((3, 3), int), ValueError),
    (np.zeros((3, 3), complex), np.zeros((3, 3), int), TypeError),
])
def test_bad_labels(pred, truth, err):
    with pytest.raises(err):
        evaluate(pred, truth)


def test_all_unlabeled_truth_gives_no_classes():
    s = evaluate(np.ones((4, 4), int), np.zeros((4, 4), int))
    assert s["classes"] == {} and s["pixels"] == 0 and np.isnan(s["mean_iou"])


def test_background_only_on_both_sides_is_not_a_perfect_score():
    """All background against all background: the object class is 0/0, so the means are NaN,
    not 1.0 from the background alone, and the result says why."""
    s = evaluate(np.ones((8, 8), np.uint8), np.ones((8, 8), np.uint8))
    assert s["classes"][1]["iou"] == 1.0  # the background itself is right
    assert np.isnan(s["mean_iou"]) and np.isnan(s["mean_dice"])
    assert np.isnan(s["foreground_iou"]) and np.isnan(s["foreground_dice"])
    assert "neither the truth nor the prediction holds a class above 1" in s["note"]
    # a truth whose 0 means background, all 0: the same
    s = evaluate(np.ones((8, 8), np.uint8), np.zeros((8, 8), np.uint8), truth_zero="background")
    assert np.isnan(s["mean_iou"]) and "note" in s
    # one false positive pixel of class 2 makes the scores defined (and not perfect)
    pred = np.ones((8, 8), np.uint8)
    pred[0, 0] = 2
    s = evaluate(pred, np.ones((8, 8), np.uint8))
    assert s["foreground_iou"] == 0.0 and s["mean_iou"] < 1 and "note" not in s


def test_format_score_shows_undefined_as_n_a():
    from napari_unet.core.metrics import format_score

    assert format_score(0.25) == "0.250" and format_score(0.25, "7.4f") == " 0.2500"
    assert format_score(float("nan")) == "n/a" and format_score(np.float32("nan"), "7.4f") == "    n/a"
    assert format_score(None, "6.3f") == "   n/a" and format_score(3) == "3.000"


def test_the_evaluate_jobs_give_the_widgets_undefined_scores_they_can_show():
    """What the Evaluate widget's table and the object panel format (with format_score): NaN
    where nothing but background exists, never 1.0, and the note to show with them."""
    from napari_unet.core.evaluate_job import ObjectResult, Scores, iter_evaluate_job, iter_object_job
    from napari_unet.core.metrics import format_score

    ones = np.ones((2, 8, 8), np.uint8)
    scores = [e for e in iter_evaluate_job(ones, ones) if isinstance(e, Scores)][0]
    mean = [r for r in scores.rows if r[1] == "mean"][0]
    assert [format_score(v) for v in mean[2:4]] == ["n/a", "n/a"] and scores.result["note"]
    objects = [e for e in iter_object_job(ones, ones) if isinstance(e, ObjectResult)][0]
    assert format_score(objects.result["mean_ap"]) == "n/a" and objects.result["note"]
