"""The Train widget's training beyond one run (a mixin and helpers): napari's task status (the
viewer's close dialog knows a training runs, and can stop it), stopping the worker cleanly when
the widget or the viewer goes away, and the warm training process started when the dock opens.

Expects ``self.viewer``, ``self.worker``, ``self._stop`` and ``self._task_id`` from the widget."""
from __future__ import annotations

import threading
import time
from typing import Any


class TrainLifecycle:
    def shutdown(self) -> bool:
        """Stop and wait for the training thread (the viewer is closing)."""
        shutdown(self.worker, self._stop)
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
