"""The warm training process: at most one idle child per Python process, reused by the next
``core.train_process.iter_train_process`` run (no interpreter start, no torch import: the child
imported torch and the training code while it waited), and ``prestart`` to start it ahead of
the first run, in the background.

Thread-safe; nothing here imports torch. Starting a process is the caller's (``prestart``
gets a function that starts one), so this module imports core.train_children and never
core.train_process. The idle child ends with this process (the connection drops, and
train_children's atexit hook), after ``_train_child.IDLE_S`` idle, or when
replaced (a run with another interpreter or priority).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ._train_child import recv
from .train_children import _LIVE, _LIVE_LOCK, _running

STOPPED = object()  # take(): the stop event was set while waiting for a starting child
_LOCK = threading.Lock()
_idle: Any = None  # the idle train_children._Child
_starting: Any = None  # (key, threading.Event set when done) of a prestart under way
_starts = 0  # runs starting a process of their own (see starting)


def take(key: tuple, stop: threading.Event | None = None) -> Any:
    """The idle child for ``key`` if it is alive (it is then no longer idle), else None (the
    caller starts one). Waits for a prestart under way for the same key; STOPPED if ``stop``
    is set meanwhile."""
    while True:
        with _LOCK:
            global _idle
            pending = _starting
            if pending is None or pending[0] != key:
                child, _idle = _idle, None
                break
        while not pending[1].wait(0.05):
            if stop is not None and stop.is_set():
                return STOPPED
    if child is None:
        return None
    if child.key != key or not child.alive():
        child.end()  # died while idle (killed, idle timeout), or not the one asked for
        return None
    return _running(child)


class starting:
    """``with starting():`` around a run's own start of a process (a prestart then waits)."""

    def __enter__(self) -> None:
        global _starts
        with _LOCK:
            _starts += 1

    def __exit__(self, *exc: Any) -> None:
        global _starts
        with _LOCK:
            _starts -= 1


def wait_warm(timeout: float = 120.0) -> bool:
    """Wait until the idle child has done its imports and warm-up step (for benchmarks and
    tests: a run never waits for this). False if there is none, or it did not within timeout."""
    with _LOCK:
        child = _idle
    if child is None:
        return False
    deadline = time.monotonic() + timeout
    with child.lock:
        while not child.warm and time.monotonic() < deadline and child.alive():
            if child.conn.poll(0.05) and recv(child.conn)[0] == "warm":
                child.warm = True
    return child.warm


def give_back(child: Any) -> None:
    """A child whose run is over becomes the idle one (one already idle is ended)."""
    with _LIVE_LOCK:
        _LIVE.discard(child.proc)
    with _LOCK:
        global _idle
        old, _idle = _idle, child
    if old is not None and old is not child:
        old.end()


def prestart(key: tuple, start: Callable[[], Any]) -> None:
    """Start the idle child for ``key`` (``start()`` returns it: core.train_process._start) in
    a background thread unless one is idle or starting already, or a run's process is running
    or starting (it becomes the idle one)."""
    global _starting
    with _LOCK:
        with _LIVE_LOCK:
            running = any(p.poll() is None for p in _LIVE)
        if _starting is not None or _starts > 0 or running or (
                _idle is not None and _idle.key == key and _idle.alive()):
            return
        _starting = (key, threading.Event())
        done = _starting[1]
    threading.Thread(target=_prestart, args=(start, done), daemon=True,
                     name="napari-unet-train-prestart").start()


def _prestart(start: Callable[[], Any], done: threading.Event) -> None:
    global _starting
    child = None
    try:
        child = start()
    except Exception:  # noqa: BLE001 - the next run starts its own and reports what goes wrong
        pass
    finally:
        if child is not None:
            give_back(child)
        with _LOCK:
            _starting = None
        done.set()
