"""One class per object: each connected object of a multi-class label image takes one class."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_unet import probabilities_to_labels
from napari_unet.core.errors import UserError
from napari_unet.core.postprocess import one_class_per_object


def _two_nuclei(shape=(40, 60)):
    """Background 1; nucleus A (left) painted half 'dim' (2), half 'bright' (3), more mass on
    'bright'; nucleus B (right) all 'dim'."""
    p = np.zeros((3,) + shape, np.float32)
    p[0] = 1.0
    yy, xx = np.indices(shape)
    a = (yy - 20) ** 2 + (xx - 15) ** 2 < 100
    b = (yy - 20) ** 2 + (xx - 45) ** 2 < 64
    p[:, a] = 0
    left = a & (xx < 13)
    p[1, left], p[2, left] = 0.6, 0.4          # 'dim' wins here by a little
    p[2, a & ~left], p[1, a & ~left] = 0.9, 0.1   # 'bright' wins the rest by a lot
    p[:, b] = 0
    p[1, b], p[2, b] = 0.7, 0.3
    return p, a, b


def test_each_object_takes_the_class_with_the_most_probability():
    p, a, b = _two_nuclei()
    plain = probabilities_to_labels(p)
    assert set(np.unique(plain[a])) == {2, 3}          # the pixel classifier splits nucleus A
    lab = probabilities_to_labels(p, one_class_per_object=True)
    assert np.all(lab[a] == 3) and np.all(lab[b] == 2)
    assert np.all(lab[~(a | b)] == 1)                 # the background is left alone
    # every connected object has one class
    pieces, n = ndi.label(lab > 1)
    for i in range(1, n + 1):
        assert len(np.unique(lab[pieces == i])) == 1


def test_in_3d_with_class_values_and_in_place():
    p2, a, _ = _two_nuclei()
    p = np.stack([p2] * 4, axis=1)                     # (3, 4, Y, X): a column through 4 planes
    labels = probabilities_to_labels(p, class_values=[1, 5, 9])
    out = one_class_per_object(p, labels, class_values=[1, 5, 9])
    assert out is labels
    assert np.all(labels[:, a] == 9)


def test_two_classes_and_empty_foreground_change_nothing():
    p = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    before = probabilities_to_labels(p)
    assert np.array_equal(probabilities_to_labels(p, one_class_per_object=True), before)
    bg = np.zeros((3, 8, 8), np.float32)
    bg[0] = 1
    assert np.all(probabilities_to_labels(bg, one_class_per_object=True) == 1)


def test_mismatched_shapes_are_named():
    p, _, _ = _two_nuclei()
    with pytest.raises(ValueError, match="do not match"):
        one_class_per_object(p, np.ones((10, 10), np.uint8))


def test_the_job_refuses_a_time_lapse_and_too_little_memory(monkeypatch):
    from napari_unet import build_model
    from napari_unet.core import jobs, predict as predict_mod

    model = build_model(dims=2, classes=3, base_channels=4, depth=2)
    movie = np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float32)   # (T, Z, Y, X)
    with pytest.raises(UserError, match="time-lapse"):
        list(jobs.iter_predict_job(model, [("movie", movie)], device="cpu", one_class_per_object=True))
    monkeypatch.setattr(predict_mod, "fits_in_ram", lambda nbytes, *a, **k: nbytes < 1000)
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with pytest.raises(UserError, match="needs .* GiB of memory"):
        list(jobs.iter_predict_job(model, [("img", img)], device="cpu", one_class_per_object=True))
