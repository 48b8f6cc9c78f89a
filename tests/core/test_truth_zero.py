"""A complete ground-truth mask (0 = background) is scored as such, never as 'unlabeled'."""
import numpy as np
import pytest

from napari_unet import error_map, evaluate
from napari_unet.core.metrics import ERR_FP, per_slice_scores


def _blob_truth(value, dtype=np.uint8):
    truth = np.zeros((40, 40), dtype)
    truth[10:20, 10:20] = value  # 100 foreground px of 1600
    return truth


ALL_FOREGROUND = np.full((40, 40), 2, np.uint8)


@pytest.mark.parametrize("truth", [_blob_truth(255), _blob_truth(1), _blob_truth(True, bool),
                                   _blob_truth(7, np.uint16)])
def test_all_foreground_prediction_does_not_score_well_on_a_binary_truth(truth):
    s = evaluate(ALL_FOREGROUND, truth)
    assert s["truth_zero"] == "background" and "background" in s["truth_note"]
    assert s["foreground_iou"] == pytest.approx(100 / 1600)
    assert s["classes"][2]["fp"] == 1500 and s["ignored"] == 0
    assert s["mean_iou"] < 0.1
    assert (error_map(ALL_FOREGROUND, truth) == ERR_FP).sum() == 1500


def test_a_perfect_prediction_of_a_binary_truth_scores_one():
    truth = _blob_truth(255)
    pred = np.where(truth > 0, 2, 1).astype(np.uint8)
    s = evaluate(pred, truth)
    assert s["mean_iou"] == 1.0 and s["pixels"] == 1600
    # a binary prediction (0/255, e.g. from another tool) is read the same way
    s2 = evaluate(truth.copy(), truth)
    assert s2["mean_iou"] == 1.0 and "prediction holds 0" in s2["truth_note"]


def test_instance_ids_are_foreground():
    truth = np.zeros((30, 30), np.uint16)
    for i in range(20):
        truth[i, :10] = 300 + i
    s = evaluate(ALL_FOREGROUND[:30, :30], truth)
    assert s["truth_zero"] == "background" and "instance" in s["truth_note"]
    assert s["foreground_iou"] == pytest.approx(200 / 900)


def test_a_painting_keeps_zero_as_unlabeled_and_says_so():
    truth = np.zeros((10, 10), np.uint8)
    truth[0, :5], truth[9, :5] = 1, 2
    s = evaluate(ALL_FOREGROUND[:10, :10], truth)
    assert s["truth_zero"] == "unlabeled" and s["ignored"] == 90
    assert "unlabeled" in s["truth_note"] and "90 pixels ignored" in s["truth_note"]


def test_explicit_choice_overrides_auto():
    truth = _blob_truth(255)
    s = evaluate(ALL_FOREGROUND, truth, truth_zero="unlabeled")
    assert s["truth_zero"] == "unlabeled" and s["ignored"] == 1500
    painting = np.zeros((40, 40), np.uint8)
    painting[:2], painting[-2:] = 1, 2
    s = evaluate(ALL_FOREGROUND, painting, truth_zero="background")
    assert s["truth_zero"] == "background" and s["ignored"] == 0
    with pytest.raises(ValueError, match="truth_zero"):
        evaluate(ALL_FOREGROUND, truth, truth_zero="maybe")


def test_truth_without_zero_is_unchanged():
    truth = np.ones((8, 8), np.uint8)
    truth[:4] = 2
    s = evaluate(ALL_FOREGROUND[:8, :8], truth)
    assert s["classes"][2]["iou"] == pytest.approx(0.5) and "no 0" in s["truth_note"]


def test_per_slice_scores_read_the_stack_once():
    truth = np.zeros((2, 20, 20), np.uint8)
    truth[0, 5:10, 5:10] = 255  # slice 1 is all 0: still background, as in the whole stack
    pred = np.full(truth.shape, 2, np.uint8)
    scores = per_slice_scores(pred, truth)
    assert all(s["truth_zero"] == "background" for s in scores)
    assert scores[1]["classes"][2]["fp"] == 400
