"""The training processes this Python process started: a started child and its connection
(:class:`_Child`), the registry of them (running a job, or any), and how one is ended (now,
in the background, or at exit). Shared by core.train_process (a run) and core.train_pool (the
warm, idle one), which import this module and never each other the other way round.

Nothing here imports torch.
"""
from __future__ import annotations

import atexit
import collections
import subprocess
import threading
from typing import Any

from ._train_child import send

_LIVE: set = set()  # children running a job (subprocess.Popen)
_ALL: set = set()  # every child (running, idle or starting), ended at exit if still there
_LIVE_LOCK = threading.Lock()


class TrainProcessError(RuntimeError):
    """The training process could not start, or ended without a result (not a user mistake in
    the training input: those keep their own type)."""


class _Child:
    """A started training process and its connection (see core.train_pool for reuse)."""

    def __init__(self, proc: Any, conn: Any, tail: collections.deque, key: tuple):
        self.proc, self.conn, self.tail, self.key = proc, conn, tail, key
        self.lock = threading.Lock()  # one message at a time (a run's watcher sends too)
        self.retired = False  # told to exit after its job: never reused
        self.warm = False  # its "warm" message was read (train_pool.wait_warm)

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
        threading.Thread(target=_reap, args=(self.proc, self.conn, None, 0.0), daemon=True,
                         name="napari-unet-train-reaper").start()


def _running(child: _Child) -> _Child:
    """Count ``child`` as running a job (train_pool.prestart then waits for it)."""
    with _LIVE_LOCK:
        _LIVE.add(child.proc)
    return child


def _forget(child: _Child) -> None:
    """No longer running a job, and ended (a warm process found dead)."""
    with _LIVE_LOCK:
        _LIVE.discard(child.proc)
    child.end()


def _tail_of(stream: Any, tail: collections.deque) -> None:
    """Keep the last lines of the child's stderr (for error messages) without showing them."""
    try:
        for line in iter(stream.readline, b""):
            tail.append(line.decode(errors="replace").rstrip())
    except (OSError, ValueError):
        pass


def _died(proc: Any, tail: collections.deque, what: str) -> TrainProcessError:
    try:
        proc.wait(2.0)
    except subprocess.TimeoutExpired:
        pass
    lines = [t for t in tail if t.strip()]
    last = f": {lines[-1].strip()}" if lines else ""
    return TrainProcessError(f"the training process {what} (exit code {proc.returncode}){last}")


def _end(proc: Any, timeout: float = 2.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    with _LIVE_LOCK:
        _LIVE.discard(proc)
        _ALL.discard(proc)


@atexit.register
def _end_all() -> None:
    """No training process outlives this one (the viewer closed, the script ended)."""
    with _LIVE_LOCK:
        procs = list(_ALL | _LIVE)
    for proc in procs:
        try:
            _end(proc, 1.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _reap(proc: Any, conn: Any, listener: Any, timeout: float = 10.0) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    _end(proc)
    for c in (conn, listener):
        try:
            if c is not None:
                c.close()
        except OSError:
            pass
