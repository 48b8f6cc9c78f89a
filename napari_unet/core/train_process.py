"""Training in a child process, with the same events as :func:`napari_unet.core.train.iter_train`.

A training thread shares the GIL with the GUI: torch's own calls release it, but the set-up
(hundreds of module imports when the optimizer first loads ``torch._dynamo``, data preparation)
holds it for 100-500 ms at a time, which freezes napari (measured by
``benchmarks/ui_responsiveness.py``). In a child process the viewer only ever unpickles small
events. The child is a fresh interpreter running our own entry module
(``python -m napari_unet.core._train_child``, safe with Qt and CUDA); unlike multiprocessing's
spawn it never re-runs the user's ``__main__`` script, so training starts the same way from a
plain script without an ``if __name__ == "__main__":`` guard, the ``napari`` command,
IPython/Jupyter or ``napari-unet gui``. It connects back over a local socket or pipe with a
random key, gets the images and the model weights, and sends events back; the caller's ``stop``
event, ``preview`` callable and ``model`` (continued in place) behave as with ``iter_train``.
A child that has not connected within ``STARTUP_S`` seconds is killed and reported; a child
whose parent goes away (viewer closed, process killed) stops and exits.

The child stays warm between runs (core.train_pool): after a run it waits, idle, for the next on
the same connection, so a second run skips the interpreter start and the torch import;
``prestart()`` starts one ahead of the first run (the Train widget does when it is docked).
"""
from __future__ import annotations

import collections
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ._train_child import AUTHKEY_ENV, _from_state, _state_of, recv
from .events import TrainFinished
from .train_children import (_ALL, _LIVE, _LIVE_LOCK, TrainProcessError, _Child,  # noqa: F401 (re-exported)
                             _died, _end, _forget, _reap, _running, _tail_of)

# errors raised here with their type (and subclasses, e.g. core.errors.UserError), as iter_train would
_ERRORS = (ValueError, TypeError, FileNotFoundError, MemoryError)
_NAMED = {e.__name__: e for e in _ERRORS}
POLL_S = 0.05
STARTUP_S = 30.0  # the child must connect within this (it imports nothing heavy before connecting)
STALE_S = 30.0  # after a stop, a generator that has not run for this long was abandoned (see _watch)
ABANDONED_S = 3.0  # ... and one that has not run for this long does not get its process back warm

def _exception(pickled: bytes | None) -> BaseException | None:
    import pickle

    try:
        return pickle.loads(pickled) if pickled else None
    except Exception:  # noqa: BLE001 - e.g. a class this process cannot import
        return None


def _child_command(address: str) -> list[str]:
    from multiprocessing import spawn

    exe = spawn.get_executable() or sys.executable  # honours multiprocessing.set_executable
    if not exe:
        raise TrainProcessError("cannot start the training process: no Python executable found "
                           "(sys.executable is empty)")
    return [os.fsdecode(exe), "-m", "napari_unet.core._train_child", address]


def _child_env(key: bytes) -> dict:
    env = dict(os.environ)
    env[AUTHKEY_ENV] = key.hex()
    # the child must import this very napari_unet, also when the parent found it through a
    # sys.path entry of its own (a source checkout); an installed copy's site-packages stays put
    root = str(Path(__file__).resolve().parents[2])
    import site

    try:  # (some embedded or old-virtualenv interpreters lack these)
        dirs = [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:
        dirs = []
    site_dirs = {str(Path(d).resolve()) for d in dirs}
    if root not in site_dirs:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _connect(listener: Any, key: bytes, proc: Any, tail: collections.deque,
             stop: threading.Event | None) -> Any:
    """The child's connection, or an error if it exits or does not connect within STARTUP_S;
    None if ``stop`` is set first."""
    got: dict = {}

    def accept() -> None:
        try:
            got["conn"] = listener.accept()
        except BaseException as e:  # noqa: BLE001
            got["error"] = e

    waiter = threading.Thread(target=accept, daemon=True, name="napari-unet-train-accept")
    waiter.start()
    deadline = time.monotonic() + STARTUP_S
    problem: BaseException | None = None
    while "conn" not in got:
        waiter.join(POLL_S)
        if "conn" in got:
            break
        if "error" in got:
            problem = TrainProcessError(f"the training process could not connect: {got['error']}")
        elif proc.poll() is not None:
            problem = _died(proc, tail, "exited before it started")
        elif time.monotonic() > deadline:
            problem = TrainProcessError(
                f"the training process did not start within {STARTUP_S:.0f} s (command: "
                f"{' '.join(_child_command('ADDRESS')[:3])}); the machine may be overloaded, or "
                "Python cannot import napari_unet there (training in this process, e.g. the Train "
                "widget's 'train in a separate process' unticked, still works).")
        elif stop is not None and stop.is_set():
            problem = StopIteration()
        if problem is not None:
            break
    if problem is None:
        return got["conn"]
    _end(proc)
    if waiter.is_alive():  # unblock the accept with a connection of our own
        from multiprocessing.connection import Client

        try:
            Client(listener.address, authkey=key).close()
        except Exception:  # noqa: BLE001
            pass
        waiter.join(1.0)
    if "conn" in got:
        got["conn"].close()
    if isinstance(problem, StopIteration):
        return None
    raise problem


def _key(nice: int) -> tuple:
    """Which idle process a run may reuse: same command (interpreter) and priority."""
    return (tuple(_child_command("ADDRESS")), int(nice or 0))


def _start(nice: int, stop: threading.Event | None) -> _Child | None:
    """Start a training process and wait for it to connect (None if ``stop`` is set first)."""
    from multiprocessing.connection import Listener

    from ._train_child import NICE_ENV

    key = secrets.token_bytes(32)
    listener = Listener(authkey=key)
    tail: collections.deque = collections.deque(maxlen=40)
    env = _child_env(key)
    env[NICE_ENV] = str(int(nice or 0))
    try:
        proc = subprocess.Popen(_child_command(listener.address), env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, close_fds=True,
                                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))  # Windows
    except OSError as e:
        listener.close()
        raise TrainProcessError(f"cannot start the training process: {e}") from None
    with _LIVE_LOCK:
        _ALL.add(proc)
    threading.Thread(target=_tail_of, args=(proc.stderr, tail), daemon=True,
                     name="napari-unet-train-stderr").start()
    try:
        conn = _connect(listener, key, proc, tail, stop)
    finally:
        listener.close()
    return None if conn is None else _Child(proc, conn, tail, _key(nice))


def _wait_ready(child: _Child, jid: str, reused: bool) -> None:
    """Wait for the process to start the job (its "ready"), dropping what is left of an earlier
    run that was closed before its end; EOFError if it is gone, or if a reused one does not
    answer within ``STARTUP_S`` (the caller then starts a fresh one)."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        if child.conn.poll(0.05):
            msg = recv(child.conn)
            if msg[0] == "ready" and msg[1] == jid:
                return
        elif child.proc.poll() is not None and not child.conn.poll(0):
            raise EOFError
        elif reused and time.monotonic() > deadline:
            raise EOFError


def iter_train_process(images, labels, *, stop: threading.Event | None = None,
                       preview: Callable[[], Any] | None = None, preview_every: float = 5.0,
                       model: Any = None, init: Any = None, nice: int = 5, **kwargs: Any) -> Iterator:
    """Like ``iter_train`` (same arguments and events), with the training in a child process.

    ``model`` is continued in place: its weights are replaced by the trained ones when the
    child finishes. Closing the generator stops the child's run (within about a second).
    Errors in the child are raised here with their type (ValueError/TypeError/MemoryError...) and message.
    ``nice``: the child's scheduling priority is lowered by this much (POSIX), so that on a
    busy machine the viewer, not the training, gets the CPU first.
    A child that does not start within ``STARTUP_S`` seconds, or dies, raises TrainProcessError (a RuntimeError)
    saying so. Setting ``stop`` before the child has started ends the generator with no event.

    After a run that finished or failed, the process stays idle (warm, at most one per Python
    process) and the next run reuses it: no interpreter start, no torch import; ``prestart()``
    starts one ahead of the first run. A warm process that died is replaced transparently.
    """
    import pickle

    from . import train_pool

    kw = dict(kwargs, preview_every=preview_every, _has_preview=preview is not None)
    if model is not None:
        kw["model"] = _state_of(model)
    if init is not None:
        kw["init"] = init if isinstance(init, (str, os.PathLike)) else _state_of(init)
    jid = secrets.token_hex(8)
    # pickled once: a warm process found dead gets the same bytes on a fresh one
    job = pickle.dumps(("job", jid, images, labels, kw, nice), protocol=pickle.HIGHEST_PROTOCOL)
    child = train_pool.take(_key(nice), stop)  # (then counted as running)
    if child is train_pool.STOPPED:
        return
    reused = child is not None
    clean = False
    beat = [time.monotonic()]  # when this generator last ran (see _watch)
    done = threading.Event()
    try:
        if child is None:
            with train_pool.starting():
                child = _start(nice, stop)
                if child is None:  # stopped before it started
                    return
                _running(child)
        while True:
            try:
                child.tell_bytes(job)
                _wait_ready(child, jid, reused)
                job = b""  # sent: not kept for the whole run
                break
            except (EOFError, OSError):
                if not reused:
                    raise _died(child.proc, child.tail, "ended unexpectedly") from None
            _forget(child)  # a warm process that died while idle: start a fresh one
            reused = False
            with train_pool.starting():
                child = _start(nice, stop)
                if child is None:
                    return
                _running(child)
        proc, conn = child.proc, child.conn
        if stop is not None:
            threading.Thread(target=_watch, args=(stop, done, beat, child, jid), daemon=True,
                             name="napari-unet-train-watch").start()
        last_preview = -1e9
        last_key: Any = object()
        stop_sent = False
        while True:
            beat[0] = time.monotonic()
            if stop is not None and stop.is_set() and not stop_sent:
                child.tell(("stop", jid))
                stop_sent = True
            now = time.monotonic()
            if preview is not None and now - last_preview >= min(1.0, preview_every / 2):
                item = preview()
                # send a new view at once, the same view at the preview interval
                if item is not None and (item[0] != last_key or now - last_preview >= preview_every):
                    child.tell(("preview", jid, item))
                    last_key, last_preview = item[0], now
            try:
                if not conn.poll(POLL_S):
                    if proc.poll() is not None and not conn.poll(0):
                        raise EOFError
                    continue
                msg = recv(conn)
            except (EOFError, OSError):
                raise _died(proc, child.tail, "ended unexpectedly") from None
            kind = msg[0]
            if kind == "event":
                yield msg[1]
            elif kind == "finished":
                _, meta, state, fields = msg
                result = _from_state(meta, state)
                if model is not None:  # continued in place, as iter_train does
                    model.load_state_dict(result.state_dict())
                    model.meta = result.meta
                    model.eval()
                    result = model
                if fields.get("discarded") is not None:  # (meta, state) of the weights not kept
                    fields["discarded"] = _from_state(*fields["discarded"])
                clean = True
                yield TrainFinished(model=result, **fields)
                return
            elif kind == "error":
                clean = True  # the process is fine and idle again
                _, name, text, tb, pickled = msg
                exc = _exception(pickled)
                if isinstance(exc, _ERRORS):
                    raise exc from None
                if name in _NAMED:
                    raise _NAMED[name](text)
                raise RuntimeError(f"training failed: {name}: {text}\n{tb}")
    finally:
        done.set()
        if child is not None and not clean:
            try:  # closed early: the child stops this run (the next run skips what it still sends)
                child.tell(("stop", jid))
            except (OSError, EOFError):
                child.retired = True
        if child is not None and child.alive():
            train_pool.give_back(child)  # warm for the next run
        elif child is not None:
            # the child needs a moment to exit (interpreter and torch teardown); reap it in the
            # background so that the caller (e.g. a GUI worker) is done as soon as the model is here
            threading.Thread(target=_reap, args=(child.proc, child.conn, None), daemon=True,
                             name="napari-unet-train-reaper").start()


def prestart(nice: int = 5) -> None:
    """Start the warm training process in the background and return at once (no torch import
    here): the next ``iter_train_process`` (e.g. the Train widget's first run) then skips the
    interpreter start and the imports. Does nothing when one is idle or starting already."""
    from . import train_pool

    train_pool.prestart(_key(nice), lambda: _start(nice, None))


def _watch(stop: threading.Event, done: threading.Event, beat: list, child: _Child, jid: str) -> None:
    """Forward ``stop`` to the child even when nobody runs the generator any more (a GUI worker
    whose widget was deleted with the viewer abandons it at a ``yield``, without closing it).
    If the generator has not run for ``ABANDONED_S`` after the stop, the child is told to exit
    once this run is over instead of staying warm (nobody will hand it back); one whose
    generator has not run for ``STALE_S`` is ended: nobody will take its result."""
    proc = child.proc
    while not done.is_set() and proc.poll() is None:
        if stop.wait(0.5):
            break
    if done.is_set():
        return
    if proc.poll() is None:
        try:
            child.tell(("stop", jid))
        except (OSError, EOFError, ValueError):
            pass
    while not done.is_set() and proc.poll() is None and time.monotonic() - beat[0] < STALE_S:
        if time.monotonic() - beat[0] > ABANDONED_S and not child.retired:
            child.retired = True
            try:
                child.tell(("exit", jid))
            except (OSError, EOFError, ValueError):
                pass
        done.wait(0.5)
    if not done.is_set():
        _end(proc)
