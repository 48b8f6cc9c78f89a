"""The warm training process: at most one idle child per Python process, reused by the next
``core.train_process.iter_train_process`` run (no interpreter start, no torch import: the child
imported torch and the training code while it waited), and ``prestart`` to start it ahead of
the first run, in the background.

Thread-safe; nothing here imports torch. The idle child ends with this process (the
connection drops, and train_process's atexit hook), after ``_train_child.IDLE_S`` idle, or when
replaced (a run with another interpreter or priority).
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any

from ._train_child import recv, send

STOPPED = object()  # take(): the stop event was set while waiting for a starting child
_LOCK = threading.Lock()
_idle: Any = None  # the idle train_process._Child
_starting: Any = None  # (key, threading.Event set when done) of a prestart under way
_starts = 0  # runs starting a process of their own (see starting)


class _Child:
    """A started training process and its connection (see core.train_pool for reuse)."""

    def __init__(self, proc: Any, conn: Any, tail: collections.deque, key: tuple):
        self.proc, self.conn, self.tail, self.key = proc, conn, tail, key
        self.lock = threading.Lock()  # one message at a time (a run's watcher sends too)
        self.retired = False  # told to exit after its job: never reused
        self.warm = False  # its "warm" message was read (wait_warm)

    def tell(self, msg: tuple) -> None:
        with self.lock:
            send(self.conn, msg)

    def tell_bytes(self, data: bytes) -> None:
        with self.lock:
            self.conn.send_bytes(data)

    def alive(self) -> bool:
        return self.proc.poll() is None and not self.retired

    def end(self) -> None:
        """End it now (in the background: the interpreter and torch need a moment)."""
        from .train_process import _reap

        threading.Thread(target=_reap, args=(self.proc, self.conn, None, 0.0), daemon=True,
                         name="napari-unet-train-reaper").start()


def _wait_ready(child: _Child, jid: str, reused: bool) -> None:
    """Wait for the process to start the job (its "ready"), dropping what is left of an earlier
    run that was closed before its end; EOFError if it is gone, or if a reused one does not
    answer within ``STARTUP_S`` (the caller then starts a fresh one)."""
    from . import train_process

    deadline = time.monotonic() + train_process.STARTUP_S
    while True:
        if child.conn.poll(0.05):
            msg = recv(child.conn)
            if msg[0] == "ready" and msg[1] == jid:
                return
        elif child.proc.poll() is not None and not child.conn.poll(0):
            raise EOFError
        elif reused and time.monotonic() > deadline:
            raise EOFError


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


def _running(child: Any) -> Any:
    from . import train_process

    with train_process._LIVE_LOCK:
        train_process._LIVE.add(child.proc)
    return child


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
    from . import train_process

    with train_process._LIVE_LOCK:
        train_process._LIVE.discard(child.proc)
    with _LOCK:
        global _idle
        old, _idle = _idle, child
    if old is not None and old is not child:
        old.end()


def prestart(nice: int = 5) -> None:
    """Start the idle child in a background thread unless one is idle or starting already, or
    a run's process is running or starting (it becomes the idle one)."""
    from . import train_process

    global _starting
    key = train_process._key(nice)
    with _LOCK:
        with train_process._LIVE_LOCK:
            running = any(p.poll() is None for p in train_process._LIVE)
        if _starting is not None or _starts > 0 or running or (
                _idle is not None and _idle.key == key and _idle.alive()):
            return
        _starting = (key, threading.Event())
        done = _starting[1]
    threading.Thread(target=_prestart, args=(nice, done), daemon=True,
                     name="napari-unet-train-prestart").start()


def _prestart(nice: int, done: threading.Event) -> None:
    from . import train_process

    global _starting
    child = None
    try:
        child = train_process._start(nice, None)
    except Exception:  # noqa: BLE001 - the next run starts its own and reports what goes wrong
        pass
    finally:
        if child is not None:
            give_back(child)
        with _LOCK:
            _starting = None
        done.set()
