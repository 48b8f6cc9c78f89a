"""Training in a child process, with the same events as :func:`napari_unet.core.train.iter_train`.

A training thread shares the GIL with the GUI: torch's own calls release it, but the set-up
(hundreds of module imports when the optimizer first loads ``torch._dynamo``, data preparation)
holds it for 100-500 ms at a time, which freezes napari (measured by
``benchmarks/ui_responsiveness.py``). In a child process the viewer only ever unpickles small
events. The child is started with ``spawn`` (safe with Qt and CUDA), gets the images and the
model weights, and sends events back; the caller's ``stop`` event, ``preview`` callable and
``model`` (continued in place) behave as with ``iter_train``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from typing import Any, Callable, Iterator

from .events import TrainFinished

_ERRORS = {"ValueError": ValueError, "TypeError": TypeError, "FileNotFoundError": FileNotFoundError,
           "MemoryError": MemoryError}
POLL_S = 0.05


def _state_of(model) -> tuple[dict, dict]:
    """(meta, weights as numpy arrays): plain pickles, so they outlive the sending process
    (torch's own tensor pickling shares file descriptors that die with the child)."""
    return dict(model.meta), {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _from_state(meta: dict, state: dict):
    import torch

    from .model import model_from_state

    return model_from_state(meta, {k: torch.from_numpy(v) for k, v in state.items()})


def _child(images, labels, kwargs: dict, events: Any, previews: Any, stop: Any, nice: int) -> None:
    try:
        if nice and hasattr(os, "nice"):
            os.nice(nice)  # the viewer gets the CPU first when it needs it
        from .train import iter_train

        for key in ("model", "init"):
            if isinstance(kwargs.get(key), tuple):  # (meta, state) of a model object
                kwargs[key] = _from_state(*kwargs[key])
        latest: list = [None]

        def preview():
            try:
                while True:
                    latest[0] = previews.get_nowait()
            except queue.Empty:
                pass
            return latest[0]

        if not kwargs.pop("_has_preview"):
            preview = None  # type: ignore[assignment]
        for ev in iter_train(images, labels, stop=stop, preview=preview, **kwargs):
            if isinstance(ev, TrainFinished):
                meta, state = _state_of(ev.model)
                events.put(("finished", ev.reason, ev.step, meta, state, ev.message))
            else:
                events.put(("event", ev))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the caller
        events.put(("error", type(e).__name__, str(e), traceback.format_exc()))


def iter_train_process(images, labels, *, stop: threading.Event | None = None,
                       preview: Callable[[], Any] | None = None, preview_every: float = 5.0,
                       model: Any = None, init: Any = None, nice: int = 5, **kwargs: Any) -> Iterator:
    """Like ``iter_train`` (same arguments and events), with the training in a child process.

    ``model`` is continued in place: its weights are replaced by the trained ones when the
    child finishes. Closing the generator stops the child (within about a second, then kills it).
    Errors in the child are raised here with their type (ValueError/TypeError/MemoryError...) and message.
    ``nice``: the child's scheduling priority is lowered by this much (POSIX), so that on a
    busy machine the viewer, not the training, gets the CPU first.
    """
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    previews = ctx.Queue()
    # previews are best-effort: one the child never reads must not block this process's exit
    # (multiprocessing joins a queue's feeder thread at exit, and a full pipe never drains)
    previews.cancel_join_thread()
    child_stop = ctx.Event()
    kw = dict(kwargs, preview_every=preview_every, _has_preview=preview is not None)
    if model is not None:
        kw["model"] = _state_of(model)
    if init is not None:
        kw["init"] = init if isinstance(init, (str, os.PathLike)) else _state_of(init)
    proc = ctx.Process(target=_child, args=(images, labels, kw, events, previews, child_stop, nice),
                       daemon=True, name="napari-unet-train")
    proc.start()
    last_preview = -1e9
    last_key: Any = object()
    finished = False
    try:
        while True:
            if stop is not None and stop.is_set():
                child_stop.set()
            now = time.monotonic()
            if preview is not None and now - last_preview >= min(1.0, preview_every / 2):
                item = preview()
                # send a new view at once, the same view at the preview interval
                if item is not None and (item[0] != last_key or now - last_preview >= preview_every):
                    previews.put(item)
                    last_key, last_preview = item[0], now
            try:
                msg = events.get(timeout=POLL_S)
            except queue.Empty:
                if not proc.is_alive():
                    raise RuntimeError(f"the training process ended unexpectedly (exit code {proc.exitcode}); "
                                       "a checkpoint file, if one was set, holds the last saved model")
                continue
            kind = msg[0]
            if kind == "event":
                yield msg[1]
            elif kind == "finished":
                _, reason, step, meta, state, message = msg
                result = _from_state(meta, state)
                if model is not None:  # continued in place, as iter_train does
                    model.load_state_dict(result.state_dict())
                    model.meta = result.meta
                    model.eval()
                    result = model
                finished = True
                yield TrainFinished(reason, step, result, message)
                return
            else:
                _, name, text, tb = msg
                exc = _ERRORS.get(name)
                if exc is not None:
                    raise exc(text)
                raise RuntimeError(f"training failed: {name}: {text}\n{tb}")
    finally:
        if not finished:
            child_stop.set()
        # the child needs a moment to exit (interpreter and torch teardown); reap it in the
        # background so that the caller (e.g. a GUI worker) is done as soon as the model is here
        threading.Thread(target=_reap, args=(proc, events, previews), daemon=True,
                         name="napari-unet-train-reaper").start()


def _reap(proc: Any, events: Any, previews: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while proc.is_alive() and time.monotonic() < deadline:
        try:  # keep draining so the child's queue feeder can flush and exit
            events.get(timeout=POLL_S)
        except (queue.Empty, OSError, EOFError, ValueError):
            pass
    if proc.is_alive():
        proc.terminate()
        proc.join(2.0)
    events.close()
    previews.close()
