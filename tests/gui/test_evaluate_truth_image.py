"""Evaluate against a ground-truth mask opened with File > Open: napari makes it an Image layer
with an integer dtype; it is offered as truth and converted on use (0 = background, as the
command line reads a truth TIFF); a float image is refused with a message that says why."""
from __future__ import annotations

import numpy as np
import tifffile

from conftest import errors


def _pred_and_mask():
    pred = np.ones((32, 32), np.uint8)
    pred[8:16, 8:24] = 2                      # 8 x 16 = 128 px predicted foreground
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255                    # 64 px true foreground (0/255 from another tool)
    return pred, mask


def test_integer_image_opened_from_a_file_is_offered_as_truth(viewer, dock, tmp_path, notes, evaluated):
    pred, mask = _pred_and_mask()
    path = tmp_path / "gt_mask.tif"
    tifffile.imwrite(path, mask)
    viewer.add_labels(pred, name="prediction")
    raw = viewer.add_image(np.random.default_rng(0).integers(0, 4000, (32, 32), dtype=np.uint16), name="raw")
    raw.metadata["napari_unet"] = {"role": "image"}
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="raw paint",
                      metadata={"napari_unet": {"role": "paint", "image": "raw"}})
    [opened] = viewer.open(str(path), plugin="napari")  # what File > Open does
    assert type(opened).__name__ == "Image" and opened.dtype == np.uint8

    w = dock("Evaluate")
    offered = [w.truth_combo.itemText(i) for i in range(w.truth_combo.count())]
    assert "gt_mask" in offered
    assert "raw" not in offered           # the image being painted on is not a truth
    assert "raw paint" not in offered     # nor is a painting
    w.pred_combo.set_layer("prediction")
    w.truth_combo.set_layer("gt_mask")
    result = evaluated(w)
    assert not errors(notes)
    assert result["truth_zero"] == "background"          # 0/255: a complete mask, 0 = background
    fg = result["classes"][2]
    assert (fg["tp"], fg["fp"], fg["fn"]) == (64, 64, 0)
    assert result["classes"][1]["fp"] == 0 and result["classes"][1]["fn"] == 64
    assert "read as background" in w.summary.text()
    assert opened.dtype == np.uint8 and type(opened).__name__ == "Image"  # the layer is left as it was
    res = evaluated(w.objects)                             # object scores take it too
    assert res["n_true"] == 1 and res["n_pred"] == 1


def test_float_image_is_not_a_truth_and_the_message_says_why(viewer, dock, notes):
    pred, mask = _pred_and_mask()
    viewer.add_labels(pred, name="prediction")
    viewer.add_image(mask.astype(np.float32) / 255, name="float mask")
    w = dock("Evaluate")
    assert w.truth_combo.findText("float mask") < 0
    w.pred_combo.set_layer("prediction")
    assert w.truth_combo.currentText() == "prediction"    # the only labels layer
    assert w.run() is None
    [msg] = errors(notes)
    assert "same layer" in msg
    assert "'float mask' is a float image (float32)" in msg and "Convert to Labels" in msg


def test_boolean_and_instance_images_are_converted(viewer, dock, notes, evaluated):
    pred, mask = _pred_and_mask()
    viewer.add_labels(pred, name="prediction")
    viewer.add_image(mask > 0, name="bool mask")
    ids = np.zeros((32, 32), np.uint16)
    ids[8:16, 8:12], ids[8:16, 12:16] = 101, 102          # two touching objects, instance ids
    viewer.add_image(ids, name="instances")
    w = dock("Evaluate")
    w.pred_combo.set_layer("prediction")
    for name in ("bool mask", "instances"):
        w.truth_combo.set_layer(name)
        assert w.truth_combo.currentText() == name
        result = evaluated(w)
        assert result["truth_zero"] == "background", name
        assert result["classes"][2]["tp"] == 64
    assert not errors(notes)
