"""The prediction job in core (no Qt): what Predict and Batch run, with one cancel mechanism."""
from __future__ import annotations

import threading

import numpy as np
import tifffile

from napari_unet.core.jobs import Progress, Result, iter_predict_job, safe_stem
from napari_unet.core.model import build_model
from napari_unet.core.predict import predict, probabilities_to_labels


def _model():
    return build_model(dims=2, classes=2, base_channels=4, depth=2, class_names=["background", "nucleus"])


def test_job_predicts_writes_and_matches_predict(tmp_path):
    model = _model()
    rng = np.random.default_rng(0)
    items = [("a b", rng.random((40, 48)).astype(np.float32)), ("c", rng.random((3, 32, 32)).astype(np.float32))]
    events = list(iter_predict_job(model, items, tile=None, out_dir=tmp_path))
    results = [e for e in events if isinstance(e, Result)]
    assert [r.image for r in results] == ["a b", "c"]
    assert any(isinstance(e, Progress) for e in events)
    for (name, image), r in zip(items, results):
        probs = predict(model, image, tile=None)
        np.testing.assert_allclose(r.probabilities, probs, atol=1e-5)
        np.testing.assert_array_equal(r.labels, probabilities_to_labels(probs))
        assert r.uncertainty is not None and r.uncertainty.shape == image.shape
        probs_file, labels_file = (tmp_path / f"{safe_stem(name)}{s}.tif" for s in ("_probs", "_labels"))
        assert r.files == (str(probs_file), str(labels_file))
        np.testing.assert_array_equal(tifffile.imread(labels_file), r.labels)


def test_job_cancel_event_stops_before_the_next_result():
    model = _model()
    cancel = threading.Event()
    items = [(f"im{i}", np.zeros((64, 64), np.float32)) for i in range(3)]
    seen = []
    for ev in iter_predict_job(model, items, tile=32, cancel=cancel, uncertainty=False):
        seen.append(ev)
        cancel.set()  # after the first progress event
    assert seen and not any(isinstance(e, Result) for e in seen)
