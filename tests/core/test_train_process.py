"""Training in a child process gives the same events and semantics as iter_train."""
import threading

import numpy as np
import pytest
import torch

from napari_unet import build_model
from napari_unet.core.events import Preview, TrainFinished, TrainStarted, TrainStep
from napari_unet.core.predict import predict
from napari_unet.core.synthetic import make_nuclei, make_strokes
from napari_unet.core.train_process import iter_train_process

TINY = dict(base_channels=4, depth=2, patch=32, batch_size=2)


@pytest.fixture(scope="module")
def data():
    img, sem, inst = make_nuclei((96, 96), seed=3)
    return img, make_strokes(sem, inst, seed=3)


def test_events_preview_and_in_place_continuation(data):
    img, strokes = data
    torch.manual_seed(0)
    model = build_model(dims=2, classes=2, **{k: TINY[k] for k in ("base_channels", "depth")})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events = list(iter_train_process([img], [strokes], model=model, steps=6, preview_every=0.01,
                                     preview=lambda: ("slice", img[:64, :64]), patch=32, batch_size=2))
    kinds = [type(e) for e in events]
    assert kinds[0] is TrainStarted and kinds[-1] is TrainFinished and TrainStep in kinds
    fin = events[-1]
    assert fin.model is model and fin.reason == "steps"  # continued in place
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    previews = [e for e in events if isinstance(e, Preview)]
    assert previews and previews[0].key == "slice" and previews[0].probabilities.shape == (2, 64, 64)
    # the last one, after the last step, is of the model handed back (here: continued in place)
    assert Preview in kinds[max(i for i, k in enumerate(kinds) if k is TrainStep):]
    want = predict(model, img[:64, :64], device="cpu")
    assert np.abs(previews[-1].probabilities - want).max() < 1e-4


def test_stop_event_stops_and_keeps_a_model(data):
    img, strokes = data
    stop = threading.Event()
    fin = None
    # a step limit far away: only the stop event ends this run early (behaviour, not speed)
    for ev in iter_train_process([img], [strokes], steps=100_000, stop=stop, **TINY):
        if isinstance(ev, TrainStep):
            stop.set()
        if isinstance(ev, TrainFinished):
            fin = ev
    assert fin is not None and fin.reason == "stopped" and fin.step < 100_000
    assert fin.model.meta["classes"] == 2


def test_closing_the_generator_stops_the_child(data):
    img, strokes = data
    gen = iter_train_process([img], [strokes], time_limit=120, **TINY)
    assert isinstance(next(gen), TrainStarted)
    gen.close()  # must not hang


def test_errors_keep_their_type(data):
    img, _ = data
    with pytest.raises(ValueError, match="paint|label"):
        list(iter_train_process([img], [np.zeros(img.shape, np.uint8)], steps=2, **TINY))
    with pytest.raises(ValueError, match="shape"):
        list(iter_train_process([img], [np.zeros((5, 5), np.uint8)], steps=2, **TINY))
