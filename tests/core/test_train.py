"""Training engine: learning from sparse strokes, stopping, checkpoints, fine-tuning, bad input.

Tiny networks (base 8, depth 2) and 64 px patches keep this fast on 2 CPU cores.
"""
from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
import torch

from napari_unet.core.events import (Checkpoint, Preview, TrainFinished, TrainStarted, TrainStep,
                                     Validation)
from napari_unet.core.io import load_model, save_model
from napari_unet.core.metrics import evaluate
from napari_unet.core.predict import predict, probabilities_to_labels
from napari_unet.core.synthetic import make_nuclei, make_strokes
from napari_unet.core.train import iter_train, train

TINY = dict(base_channels=8, depth=2, patch=64, batch_size=4, device="cpu")


@pytest.fixture(scope="module")
def data2d():
    img, sem, inst = make_nuclei((160, 160), seed=3)
    strokes = make_strokes(sem, inst, seed=3)
    return img, sem, strokes


@pytest.fixture(scope="module")
def data3d():
    img, sem, inst = make_nuclei((16, 96, 96), seed=4, radius=(7.0, 11.0))
    strokes = make_strokes(sem, inst, seed=4, plane_step=4)
    return img, sem, strokes


def run(gen):
    events = list(gen)
    assert isinstance(events[0], TrainStarted)
    assert isinstance(events[-1], TrainFinished)
    return events


def fg_iou(model, img, sem):
    lab = probabilities_to_labels(predict(model, img, device="cpu"))
    return evaluate(lab, sem)["foreground_iou"]


# ----------------------------------------------------------------------------- learning

def test_learns_2d_from_sparse_strokes(data2d):
    img, sem, strokes = data2d
    assert 0 < (strokes > 0).mean() < 0.1
    before = strokes.copy()
    events = run(iter_train(img, strokes, steps=120, seed=0, **TINY))
    assert np.array_equal(strokes, before)  # the validation split works on a copy
    fin = events[-1]
    assert fin.reason == "steps" and fin.step == 120
    steps = [e for e in events if isinstance(e, TrainStep)]
    assert steps and all(math.isfinite(e.loss) for e in steps)
    assert steps[-1].fraction == pytest.approx(1.0)
    assert any(isinstance(e, Validation) for e in events)
    model = fin.model
    assert not model.training and next(model.parameters()).device.type == "cpu"
    # unseen image of the same kind (never painted)
    held_img, held_sem, _ = make_nuclei((160, 160), seed=11)
    assert fg_iou(model, held_img, held_sem) > 0.6
    tr = model.meta["training"]
    assert tr["steps"] == 120 and tr["device"].startswith("cpu")
    assert tr["data"][0]["painted"]["2"] > 0 and tr["patch"] == [64, 64]
    assert tr["validation"] is not None and tr["stop_reason"] == "steps"


def test_learns_3d_volumetric(data3d):
    img, sem, strokes = data3d
    model = train(img, strokes, dims=3, steps=80, seed=0, base_channels=8, depth=2,
                  patch=(16, 48, 48), batch_size=2, device="cpu")
    assert model.meta["dims"] == 3
    held_img, held_sem, _ = make_nuclei((16, 96, 96), seed=12, radius=(7.0, 11.0))
    assert fg_iou(model, held_img, held_sem) > 0.5


def test_2d_model_on_stack_uses_painted_slices(data3d):
    img, sem, strokes = data3d
    events = run(iter_train(img, strokes, dims=2, steps=3, val_fraction=0, **TINY))
    started = events[0]
    assert started.dims == 2 and started.train_pixels == int((strokes > 0).sum())
    assert started.val_pixels == 0
    assert not any(isinstance(e, Validation) for e in events)


def test_several_pairs_of_different_sizes_and_small_images():
    pairs = [make_nuclei(s, seed=i) for i, s in enumerate([(96, 120), (40, 50)])]
    imgs = [p[0] for p in pairs]
    labs = [make_strokes(p[1], p[2], seed=i) for i, p in enumerate(pairs)]
    labs[1][:5, :5] = 1  # make sure the small image is painted too
    events = run(iter_train(imgs, labs, steps=4, **TINY))
    assert events[-1].reason == "steps"
    assert len(events[-1].model.meta["training"]["data"]) == 2


def test_three_classes_and_class_names(data2d):
    img, sem, strokes = data2d
    lab = strokes.copy()
    lab[:10, :40] = 3
    model = train(img, lab, steps=3, class_names=["bg", "nucleus", "edge"], **TINY)
    assert model.meta["classes"] == 3 and model.meta["class_names"] == ["bg", "nucleus", "edge"]
    assert predict(model, img[:64, :64], device="cpu").shape == (3, 64, 64)


def test_unpainted_is_background(data2d):
    img, sem, _ = data2d
    full = np.where(sem == 2, 2, 0).astype(np.uint8)
    events = run(iter_train(img, full, steps=3, unpainted_is_background=True, **TINY))
    assert events[0].train_pixels + events[0].val_pixels == img.size
    with pytest.raises(ValueError, match="only one class"):
        iter_train(img, full, steps=3, **TINY) if False else None
        iter_train(img, np.where(sem == 2, 1, 0).astype(np.uint8), steps=3,
                   unpainted_is_background=True, **TINY)


def test_separate_validation_images(data2d):
    img, sem, strokes = data2d
    vimg, vsem, vinst = make_nuclei((96, 96), seed=9)
    events = run(iter_train(img, strokes, steps=3, val_images=[vimg], val_labels=[vsem], **TINY))
    assert events[0].val_pixels == vsem.size
    assert events[0].train_pixels == int((strokes > 0).sum())
    vals = [e for e in events if isinstance(e, Validation)]
    assert vals and set(vals[-1].iou) == {1, 2}


def test_preview_events(data2d):
    img, sem, strokes = data2d
    calls = []

    def preview():
        calls.append(threading.current_thread())
        return ("slice-0", img[:80, :96])

    events = run(iter_train(img, strokes, steps=6, preview=preview, preview_every=1e-3, **TINY))
    prev = [e for e in events if isinstance(e, Preview)]
    assert prev and prev[0].key == "slice-0"
    assert prev[0].probabilities.shape == (2, 80, 96)
    assert np.allclose(prev[0].probabilities.sum(0), 1, atol=1e-4)


def test_a_slow_preview_never_takes_most_of_the_run(data2d):
    """A preview that costs more than a step many times over (a 3D model's slab of a big stack)
    waits three times its cost before the next one, whatever ``preview_every`` asks: here every
    step asks for one, and each costs 0.6 s (slept in the callable)."""
    img, sem, strokes = data2d
    calls = []

    def preview():
        calls.append(time.perf_counter())
        time.sleep(0.6)
        return ("k", img[:32, :32])

    events = run(iter_train(img, strokes, steps=24, preview=preview, preview_every=1e-3, **TINY))
    assert isinstance(events[-1], TrainFinished) and events[-1].step == 24
    gaps = np.diff(calls)
    # every gap but the last (the final preview of the model handed back) spans 3 x 0.6 s of training
    assert len(calls) >= 2 and all(g >= 0.6 * 4 - 0.05 for g in gaps[:-1])
    assert len(calls) < 24 // 2, f"{len(calls)} previews in 24 steps"


def _last_preview_matches_the_model(events, image):
    """The last Preview comes after the last training step and is the handed-back model's
    prediction of the preview image (not the last step's weights, before averaging and the
    edge calibration, or the weights keep-better set aside)."""
    last = max(i for i, e in enumerate(events) if isinstance(e, Preview))
    assert last > max(i for i, e in enumerate(events) if isinstance(e, TrainStep))
    want = predict(events[-1].model, image, tile=256, device="cpu")
    assert np.abs(events[last].probabilities - want).max() < 1e-4
    return events[last]


def test_the_last_preview_shows_the_model_handed_back(data2d):
    img, sem, strokes = data2d
    image = img[:80, :96]
    events = run(iter_train(img, strokes, steps=8, preview=lambda: ("k", image), preview_every=1e-3,
                            **TINY))
    # previews after each step, then one of the result
    assert sum(isinstance(e, Preview) for e in events) > 2
    assert _last_preview_matches_the_model(events, image).step == 8
    first = events[-1].model
    # continued with keep-better, whichever weights it keeps
    events = run(iter_train(img, strokes, steps=6, model=first, keep_better=True,
                            preview=lambda: ("k", image), preview_every=1e6, **TINY))
    _last_preview_matches_the_model(events, image)


def test_a_preview_that_fails_never_costs_the_run(data2d, monkeypatch):
    """The preview image cannot be predicted (here: out of memory), the final one included:
    a warning, and the run still ends with its model."""
    import napari_unet.core.predict as predict_module

    img, sem, strokes = data2d

    def no_memory(*args, **kwargs):
        raise MemoryError("the probabilities do not fit in RAM")

    monkeypatch.setattr(predict_module, "iter_predict", no_memory)
    with pytest.warns(RuntimeWarning, match="preview image cannot be predicted"):
        events = run(iter_train(img, strokes, steps=4, preview=lambda: ("k", img), preview_every=1e-3,
                                **TINY))
    assert events[-1].reason == "steps" and events[-1].model is not None
    assert not any(isinstance(e, Preview) for e in events)


def test_a_stopped_run_still_previews_the_model_it_keeps(data2d):
    img, sem, strokes = data2d
    image = img[:64, :64]
    stop = threading.Event()
    gen = iter_train(img, strokes, steps=400, stop=stop, preview=lambda: ("k", image), preview_every=1e6,
                     **TINY)
    events = []
    for ev in gen:
        events.append(ev)
        if isinstance(ev, TrainStep) and ev.step >= 3:
            stop.set()
    assert events[-1].reason == "stopped" and events[-1].step < 400
    _last_preview_matches_the_model(events, image)


# ----------------------------------------------------------------------------- stopping

def test_stop_event_stops_at_the_next_step_and_keeps_weights(data2d):
    img, sem, strokes = data2d
    stop = threading.Event()
    # a step limit far away: only the stop event ends this run early (behaviour, not speed)
    gen = iter_train(img, strokes, steps=400, stop=stop, **TINY)
    asked_at = None
    for ev in gen:
        if isinstance(ev, TrainStep) and ev.step >= 3 and asked_at is None:
            setter = threading.Thread(target=stop.set)  # from another thread, as the widget does
            setter.start()
            setter.join()
            asked_at = ev.step
        if isinstance(ev, TrainFinished):
            break
    assert ev.reason == "stopped" and 3 <= ev.step <= asked_at + 2
    assert ev.model.meta["training"]["stop_reason"] == "stopped"


def test_close_generator_stops_and_checkpoints(data2d, tmp_path):
    img, sem, strokes = data2d
    ck = tmp_path / "m.pt"
    model = None
    gen = iter_train(img, strokes, time_limit=math.inf, checkpoint=ck, **TINY)
    for ev in gen:
        if isinstance(ev, TrainStep) and ev.step >= 2:
            break
    gen.close()  # returns (a hang would hit the test timeout) and leaves a checkpoint
    assert ck.exists()
    model = load_model(ck)
    assert model.meta["training"]["stop_reason"] == "stopped"
    assert model.meta["training"]["steps"] >= 2


def test_same_seed_and_steps_give_the_same_model_on_a_busy_machine(data2d, monkeypatch):
    """A run of a fixed number of steps is reproducible from its seed whatever the load: the
    end (BatchNorm re-estimation) does not depend on how much time the machine gives it. A busy
    machine is a clock that runs ten times faster. The CPU thread tuner is off here: it picks
    one or two threads by timing, and a different thread count sums in a different order (the
    last bits of the weights differ), which is load-dependent by design."""
    monkeypatch.setenv("NAPARI_UNET_NO_THREAD_TUNING", "1")
    img, sem, strokes = data2d
    kw = dict(steps=40, seed=3, **TINY)
    calm = train(img, strokes, **kw)
    import napari_unet.core.train.loop as loop
    import napari_unet.core.train.validation as validation

    real = loop.time.perf_counter
    start = real()

    class Busy:
        def __getattr__(self, name):
            return getattr(__import__("time"), name)

        @staticmethod
        def perf_counter():
            return start + 10.0 * (real() - start)

    monkeypatch.setattr(loop, "time", Busy())          # the steps
    monkeypatch.setattr(validation, "time", Busy())    # the end (BatchNorm re-estimation)
    busy = train(img, strokes, **kw)
    a, b = calm.state_dict(), busy.state_dict()
    assert a.keys() == b.keys()
    assert any("running_var" in k for k in a)      # the statistics the end re-estimates
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_time_limit(data2d):
    img, sem, strokes = data2d
    events = run(iter_train(img, strokes, time_limit=1.0, **TINY))
    assert events[-1].reason == "time" and events[-1].step >= 1


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoints_resume_and_continue(data2d, tmp_path):
    img, sem, strokes = data2d
    ck = tmp_path / "ck.pt"
    events = run(iter_train(img, strokes, steps=6, checkpoint=ck, checkpoint_every=1e-3, **TINY))
    cks = [e for e in events if isinstance(e, Checkpoint)]
    assert len(cks) >= 2 and cks[-1].step == 6
    assert not list(tmp_path.glob("*.part"))
    m = load_model(ck)
    assert m.meta["training"]["steps"] == 6
    before = {k: v.clone() for k, v in m.state_dict().items()}
    events = run(iter_train(img, strokes, model=m, steps=4, **TINY))
    assert events[-1].model is m  # continued in place
    tr = m.meta["training"]
    assert tr["init"] == "continued" and tr["total_steps"] == 10 and len(tr["history"]) == 1
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dims", [2, 3])
def test_continuing_a_saved_model_on_a_gpu(dims, data2d, data3d, tmp_path):
    # a saved model loads on the CPU; continuing it on CUDA must put the anchor (the frozen copy
    # of the starting model) on the GPU too: it was copied before the move and stayed on the CPU
    img, sem, strokes = data2d if dims == 2 else data3d
    kw = dict(TINY, device="cuda") if dims == 2 else dict(
        base_channels=8, depth=2, patch=(16, 48, 48), batch_size=2, device="cuda")
    save_model(train(img, strokes, dims=dims, steps=3, seed=0, **kw), tmp_path / "m.pt")
    m = load_model(tmp_path / "m.pt")
    assert next(m.parameters()).device.type == "cpu"
    events = run(iter_train(img, strokes, dims=dims, model=m, steps=3, keep_better=True, **kw))
    assert events[-1].reason == "steps" and events[-1].step == 3
    assert m.meta["training"]["init"] == "continued"


def test_nan_loss_stops_and_keeps_last_good_weights(data2d, monkeypatch):
    import napari_unet.core.train as tr

    img, sem, strokes = data2d
    real = tr.sparse_loss
    calls = {"n": 0}

    def poisoned(logits, target, **kw):
        calls["n"] += 1
        loss = real(logits, target, **kw)
        return loss * float("nan") if calls["n"] > 4 else loss

    monkeypatch.setattr(tr, "sparse_loss", poisoned)
    events = run(iter_train(img, strokes, steps=20, val_fraction=0, **TINY))
    fin = events[-1]
    assert fin.reason == "nan" and "loss" in fin.message
    assert fin.detail.startswith("stopped and kept the weights of step") and fin.message.endswith(fin.detail)
    assert 1 <= fin.step <= 4  # the last step whose loss was checked (events are throttled)
    assert all(torch.isfinite(p).all() for p in fin.model.parameters())
    with pytest.warns(RuntimeWarning, match="loss"):
        calls["n"] = 0
        train(img, strokes, steps=20, val_fraction=0, **TINY)


def test_out_of_memory_halves_the_batch_then_says_so(data2d, monkeypatch):
    import napari_unet.core.train as tr

    img, sem, strokes = data2d
    real = tr.sparse_loss
    room = {"batch": 1}  # a device with room for this many patches per step

    def tight(logits, target, **kw):
        if logits.shape[0] > room["batch"]:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        return real(logits, target, **kw)

    monkeypatch.setattr(tr, "sparse_loss", tight)
    with pytest.warns(UserWarning, match="out of memory") as rec:
        events = run(iter_train(img, strokes, steps=6, val_fraction=0, **TINY))  # batch 4
    assert [str(w.message)[-12:] for w in rec] == ["batch size 2", "batch size 1"]
    fin = events[-1]
    assert fin.reason == "steps" and fin.step == 6
    assert all(torch.isfinite(p).all() for p in fin.model.parameters())
    room["batch"] = 0  # not even one patch fits: a clear error, not a loop
    with pytest.warns(UserWarning), pytest.raises(MemoryError, match="one patch.*smaller patch"):
        run(iter_train(img, strokes, steps=6, val_fraction=0, **{**TINY, "batch_size": 2}))


# ----------------------------------------------------------------------------- fine-tuning

def test_finetune_with_new_head(data2d, tmp_path):
    img, sem, strokes = data2d
    base = train(img, strokes, steps=2, **TINY)
    path = tmp_path / "base.pt"
    save_model(base, path)
    lab = strokes.copy()
    lab[:8, :30] = 3
    ft = train(img, lab, init=str(path), steps=2, **TINY)
    assert ft is not base and ft.meta["classes"] == 3
    assert ft.meta["training"]["init"] == str(path)
    assert base.meta["classes"] == 2 and base.head.out_channels == 2
    # same classes: head kept, a copy trained
    ft2 = train(img, strokes, init=base, steps=1, **TINY)
    assert ft2 is not base and ft2.meta["classes"] == 2
    # a 3-class init with only 2 painted keeps its 3 classes
    ft3 = train(img, strokes, init=ft, steps=1, **TINY)
    assert ft3.meta["classes"] == 3


def test_continue_with_more_classes_than_head_is_an_error(data2d):
    img, sem, strokes = data2d
    base = train(img, strokes, steps=1, **TINY)
    lab = strokes.copy()
    lab[:8, :30] = 3
    with pytest.raises(ValueError, match="only 2 classes"):
        iter_train(img, lab, model=base, steps=1, **TINY)
    with pytest.raises(ValueError, match="dims=3"):
        iter_train(img[None].repeat(8, 0), strokes[None].repeat(8, 0), model=base, dims=3, steps=1)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("case, exc, match", [
    ("shape", ValueError, "shape"),
    ("nopaint", ValueError, "no painted pixels"),
    ("oneclass", ValueError, "only one class"),
    ("float", TypeError, "integer"),
    ("negative", ValueError, "negative"),
    ("dims3_on_2d", ValueError, "dims=3"),
    ("nan", ValueError, "NaN"),
    ("no_limit", ValueError, "steps= or time_limit="),
    ("count", ValueError, "2 images but 1 labels"),
    ("classes_too_few", ValueError, "classes=2"),
    ("steps_zero", ValueError, "steps"),
    ("batch", ValueError, "batch_size"),
    ("patch", ValueError, "patch"),
    ("device", ValueError, "device"),
    ("both_model_init", ValueError, "not both"),
    ("image_type", TypeError, "numpy array"),
    ("val_fraction", ValueError, "val_fraction"),
    ("stop", TypeError, "stop"),
])
def test_bad_input(case, exc, match, data2d):
    img, sem, strokes = data2d
    kw = dict(steps=1, **TINY)
    lab = strokes
    im = img
    if case == "shape":
        lab = strokes[:-1]
    elif case == "nopaint":
        lab = np.zeros_like(strokes)
    elif case == "oneclass":
        lab = np.where(strokes == 2, 2, 0).astype(np.uint8)
    elif case == "float":
        lab = strokes.astype(np.float32)
    elif case == "negative":
        lab = strokes.astype(np.int16)
        lab[0, 0] = -1
    elif case == "dims3_on_2d":
        kw["dims"] = 3
    elif case == "nan":
        im = img.astype(np.float32)
        im[3, 3] = np.nan
    elif case == "no_limit":
        kw.pop("steps")
    elif case == "count":
        im = [img, img]
        lab = [strokes]
    elif case == "classes_too_few":
        lab = strokes.copy()
        lab[:5, :5] = 3
        kw["classes"] = 2
    elif case == "steps_zero":
        kw["steps"] = 0
    elif case == "batch":
        kw["batch_size"] = "big"
    elif case == "patch":
        kw["patch"] = (64, 64, 64)
    elif case == "device":
        kw["device"] = "tpu"
    elif case == "both_model_init":
        kw["model"] = kw["init"] = train(img, strokes, steps=1, **TINY)
    elif case == "image_type":
        im = "image.tif"
    elif case == "val_fraction":
        kw["val_fraction"] = 0.9
    elif case == "stop":
        kw["stop"] = True
    with pytest.raises(exc, match=match):
        iter_train(im, lab, **kw)  # raised at the call, before any training


def test_bad_input_names_which_pair(data2d):
    img, sem, strokes = data2d
    with pytest.raises(ValueError, match="labels 1 has shape"):
        iter_train([img, img], [strokes, strokes[:, :-3]], steps=1, **TINY)


def test_continuing_with_other_class_names_says_they_are_renamed():
    """The painting's class names win when a model is continued; a rename is said when the run
    starts (the widget's status note, the CLI's note line), not done silently."""
    import napari_unet as nu
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((64, 64), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::6] = sem[::6]
    opts = dict(steps=2, device="cpu", seed=0)
    model = nu.train(img, sparse, base_channels=4, depth=2, class_names=["background", "nucleus"], **opts)

    def advice(names):
        evs = list(nu.iter_train(img, sparse, model=model, class_names=names, **opts))
        return next(e.advice for e in evs if type(e).__name__ == "TrainStarted"), evs[-1].model

    said, out = advice(["background", "membrane"])
    assert "class 2 'nucleus' is now 'membrane'" in said, said
    assert out.meta["class_names"] == ["background", "membrane"]
    said, _ = advice(["background", "membrane"])
    assert "now" not in said
