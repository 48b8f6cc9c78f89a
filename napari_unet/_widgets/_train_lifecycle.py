"""The Train widget's training around one run (a mixin and helpers): Stop, the buttons while
it runs, its end, one run at a time per viewer (``ModelState.training`` holds the running
run's stop event, whichever Train widget started it), napari's task status (the viewer's close
dialog knows a training runs, and can stop it), stopping the worker cleanly when the widget or
the viewer goes away, and the warm training process started when the dock opens.

Expects ``self.viewer``, ``self.state``, ``self.worker``, ``self._stop``, ``self._task_id``,
``self._device_before`` and the widget's buttons and labels."""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

STARTING = "device: starting…"   # the device line until the engine's TrainStarted


class TrainLifecycle:
    def stop(self, *_: Any) -> bool:
        """Ask training to stop (within a second); the model trained so far is kept."""
        if self._stop is not None:
            self._stop.set()
            self.status.setText("stopping…")
        return True

    def _set_running(self, running: bool) -> None:
        for w in (self.train_btn, self.save_btn, self.load_btn, self.pairs, self.dims,
                  self.start_from, self.init_row, self.limit, self.limit_kind):
            w.setEnabled(not running)
        self.revert_btn.setEnabled(not running and self.state.previous is not None)
        self.stop_btn.setEnabled(running)

    def _on_finished(self) -> None:
        _release(self.state, self._stop)
        self.worker = None
        self._stop = None
        self._set_running(False)
        self._unregister_task()
        if self.finished_reason is None:
            self.status.setText("training ended without a model (see the message)")
        if self.device_label.text() == STARTING:   # refused or failed before it started
            self.device_label.setText(self._device_before or "device: –")
        empty, self._empty_preview = self._empty_preview, None
        if empty is not None and empty in self.viewer.layers and not np.any(empty.data):
            self.viewer.layers.remove(empty)  # made for this run, which never previewed

    def shutdown(self) -> bool:
        """Stop and wait for the training thread (the viewer is closing)."""
        shutdown(self.worker, self._stop)
        _release(self.state, self._stop)
        self.worker, self._stop = None, None
        self._unregister_task()
        return True

    def _register_task(self) -> None:
        try:
            from napari.utils.task_status import Status

            mgr = _unwrap(self.viewer).window._task_status_manager
            self._task_id = mgr.register_task_status("napari-unet", Status.BUSY, "training a U-Net",
                                                     cancel_callback=self.shutdown)
        except Exception:
            self._task_id = None

    def _unregister_task(self) -> None:
        if self._task_id is None:
            return
        try:
            from napari.utils.task_status import Status

            _unwrap(self.viewer).window._task_status_manager.update_task_status(self._task_id, Status.COMPLETED)
        except Exception:
            pass
        self._task_id = None


def _unwrap(obj: Any) -> Any:
    """The object behind napari's public-only plugin proxy (for napari's task-status API)."""
    return getattr(obj, "__wrapped__", obj)


class _Closer:
    """Called when the widget is destroyed (e.g. the viewer closes): stop training cleanly and
    wait briefly for the thread, without touching the (deleted) widget's Qt side."""

    def __init__(self, widget: Any) -> None:
        self._widget = widget.__dict__  # plain attributes outlive the C++ object

    def __call__(self, *_: Any) -> None:
        shutdown(self._widget.get("worker"), self._widget.get("_stop"))
        _release(self._widget.get("state"), self._widget.get("_stop"))


def _release(state: Any, stop: threading.Event | None) -> None:
    """The run with this stop event is over: another Train widget of the viewer may start one."""
    if state is not None and stop is not None and state.training is stop:
        state.training = None


def _prestart() -> None:
    import os

    if not os.environ.get("NAPARI_UNET_NO_PRESTART"):
        from napari_unet.core.train_process import prestart

        prestart()


def shutdown(worker: Any, stop: threading.Event | None, timeout: float = 5.0) -> None:
    """Stop a training worker: set its stop event, detach its callbacks, wait for the thread."""
    if stop is not None:
        stop.set()
    if worker is None:
        return
    for sig in (worker.yielded, worker.returned, worker.finished):
        try:
            sig.disconnect()
        except (TypeError, RuntimeError):
            pass
    # no worker.quit(): abandoning the generator would skip its clean-up in that thread;
    # the stop event ends training within a second and the generator returns normally
    t0 = time.monotonic()
    while worker.is_running and time.monotonic() - t0 < timeout:
        time.sleep(0.02)
