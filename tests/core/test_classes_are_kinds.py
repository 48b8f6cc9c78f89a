"""More than two classes: training reads from the paint whether the classes are kinds of object
(each object one class: dim and bright nuclei) or parts of one (a nucleus in its cell), records
it in the model, and predictions then give each object one class by default."""
import json

import numpy as np
import pytest
import tifffile

from napari_unet import probabilities_to_labels, train
from napari_unet.core.postprocess import classes_are_kinds, object_class_evidence, suggests_one_class_per_object

TINY = dict(base_channels=8, depth=2, patch=64, batch_size=4, device="cpu", seed=0)
CENTRES = [(16, 16), (16, 48), (16, 80), (48, 16), (48, 48), (48, 80), (80, 16), (80, 48), (80, 80)]


def _disks(radius: int, shape=(96, 96)) -> list[np.ndarray]:
    yy, xx = np.indices(shape)
    return [(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2 for y, x in CENTRES]


def _kinds_scene():
    """Nine nuclei, dim (class 2) and bright (class 3) in turn; a short stroke inside each, of
    its class, and background strokes between them."""
    disks = _disks(9)
    img = np.full((96, 96), 0.05, np.float32)
    truth = np.ones((96, 96), np.uint8)
    paint = np.zeros((96, 96), np.uint8)
    for i, (d, (y, x)) in enumerate(zip(disks, CENTRES)):
        c = 2 + i % 2
        img[d] = 0.35 if c == 2 else 0.9
        truth[d] = c
        paint[y, x - 4:x + 5] = c
    paint[[3, 32, 64, 92], 4:92] = 1
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    return img, paint, truth


def _parts_scene(painted_apart: bool):
    """Nine cells: a cytoplasm ring (class 2) around a nucleus (class 3). Painted in the same
    cells (a stroke of each in every cell), or apart (the nucleus in some cells, the cytoplasm
    in the others)."""
    cells, nuclei = _disks(13), _disks(5)
    img = np.full((96, 96), 0.05, np.float32)
    truth = np.ones((96, 96), np.uint8)
    paint = np.zeros((96, 96), np.uint8)
    for i, (c, n, (y, x)) in enumerate(zip(cells, nuclei, CENTRES)):
        img[c], img[n] = 0.4, 0.9
        truth[c], truth[n] = 2, 3
        if not painted_apart or i % 2 == 0:
            paint[y, x - 2:x + 3] = 3
        if not painted_apart or i % 2 == 1:
            paint[y - 10, x - 3:x + 4] = 2
    paint[[0, 31, 63, 95], :] = np.where(truth[[0, 31, 63, 95], :] == 1, 1, 0)
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    return img, paint, truth


def test_the_evidence_tells_kinds_of_object_from_parts_of_one():
    _, paint, truth = _kinds_scene()
    ev = object_class_evidence(truth[None], paint[None])
    assert ev["pure"] == {2: 5, 3: 4} and ev["mixed"] == 0 and classes_are_kinds(ev)
    # parts of one object painted in the same cells: every painted object holds two classes
    _, paint, truth = _parts_scene(painted_apart=False)
    ev = object_class_evidence(truth[None], paint[None])
    assert ev["mixed"] == 9 and not classes_are_kinds(ev)
    # painted apart, the paint alone looks like kinds; the objects nest one class in the other
    _, paint, truth = _parts_scene(painted_apart=True)
    ev = object_class_evidence(truth[None], paint[None])
    assert ev["mixed"] == 0 and ev["pure"] == {2: 4, 3: 5}
    assert ev["multi"] == 9 and ev["enclosed"] == 9 and not classes_are_kinds(ev)
    # a model that splits nuclei side by side (unsure of the kind) is still read as kinds
    _, paint, truth = _kinds_scene()
    split = truth.copy()
    split[:, 40:48][split[:, 40:48] > 1] = 5 - split[:, 40:48][split[:, 40:48] > 1]
    ev = object_class_evidence(split[None], paint[None])
    assert ev["multi"] >= 3 and ev["enclosed"] == 0 and classes_are_kinds(ev)
    # one class painted alone is no evidence of kinds
    only = np.where(paint == 3, 0, paint).astype(np.uint8)
    assert not classes_are_kinds(object_class_evidence(truth[None], only[None]))
    with pytest.raises(ValueError, match="differ"):
        object_class_evidence(truth[None], paint[None, :10])


def test_training_records_kinds_and_predict_gives_each_object_one_class(tmp_path, capsys):
    from napari_unet import iter_train
    from napari_unet.cli import main
    from napari_unet.core.events import TrainFinished

    img, paint, _ = _kinds_scene()
    done = [ev for ev in iter_train(img, paint, steps=40, **TINY) if isinstance(ev, TrainFinished)][-1]
    model = done.model
    assert model.meta["one_class_per_object"] is True
    # the widget's status line (detail) says so, as it changes what Predict does by default
    assert "each painted object holds one class" in done.detail
    kinds = model.meta["training"]["kinds"]
    assert kinds["one_class_per_object"] is True and kinds["mixed"] == 0
    assert suggests_one_class_per_object(model.meta)
    # the command line follows the model, says so, and --no-one-class-per-object overrides it
    from napari_unet import save_model

    save_model(model, tmp_path / "m.pt")
    tifffile.imwrite(tmp_path / "img.tif", img)
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--out-dir", str(tmp_path / "a"),
                 "--quiet", str(tmp_path / "img.tif")]) == 0
    assert "each object takes one class" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--out-dir", str(tmp_path / "b"),
                 "--quiet", "--no-one-class-per-object", str(tmp_path / "img.tif")]) == 0
    probs = tifffile.imread(tmp_path / "a" / "img_probs.tif")
    auto = tifffile.imread(tmp_path / "a" / "img_labels.tif")
    plain = tifffile.imread(tmp_path / "b" / "img_labels.tif")
    assert np.array_equal(auto, probabilities_to_labels(probs, one_class_per_object=True))
    assert np.array_equal(plain, probabilities_to_labels(probs))


def test_parts_of_one_object_keep_the_class_of_each_pixel(tmp_path):
    img, paint, _ = _parts_scene(painted_apart=False)
    model = train(img, paint, steps=40, **TINY)
    assert model.meta["one_class_per_object"] is False
    assert model.meta["training"]["kinds"]["mixed"] > 0
    assert not suggests_one_class_per_object(model.meta)
    # two classes: nothing is decided, and an old model's record without the key suggests nothing
    two = train(img, np.minimum(paint, 2), steps=2, **TINY)
    assert "one_class_per_object" not in two.meta and two.meta["training"]["kinds"] is None
    assert not suggests_one_class_per_object({"classes": 3})
    json.dumps(model.meta["training"]["kinds"])   # the record is plain JSON
