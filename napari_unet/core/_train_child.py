"""The training child process: ``python -m napari_unet.core._train_child ADDRESS``.

core.train_process starts this module itself rather than through multiprocessing's spawn:
spawn re-runs the parent's ``__main__`` script in the child, so a plain napari script without
an ``if __name__ == "__main__":`` guard would open a second viewer there and never train. Here
the child runs only our code, whatever started the parent (a script, the ``napari`` command,
IPython/Jupyter, ``napari-unet gui``).

The child connects back to the parent's listener (the key comes in the environment), lowers its
priority, imports torch and the training code (warm-up) while the first job's data arrives, and
then runs jobs one after the other, sending training events. Between jobs it stays idle on the
same connection (core.train_process reuses it: a warm start), and ends after ``IDLE_S`` seconds
without a job or on an "exit" message. A reader thread takes jobs, per-job "stop" and preview
messages; when the connection drops (the parent exited or was killed) training stops and the
process ends.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from typing import Any

AUTHKEY_ENV = "NAPARI_UNET_TRAIN_KEY"
NICE_ENV = "NAPARI_UNET_TRAIN_NICE"
IDLE_ENV = "NAPARI_UNET_TRAIN_IDLE_S"
PARENT_GONE_GRACE_S = 10.0  # after the parent is gone: time to stop cleanly before a hard exit
IDLE_S = 1800.0  # an idle (warm) process waits this long for the next job, then ends


def send(conn: Any, obj: Any) -> None:
    """Plain pickles (not multiprocessing's, which would share torch tensors by file descriptor)."""
    conn.send_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def recv(conn: Any) -> Any:
    return pickle.loads(conn.recv_bytes())


def _from_state(meta: dict, state: dict):
    import torch

    from .model import model_from_state

    return model_from_state(meta, {k: torch.from_numpy(v) for k, v in state.items()})


def _state_of(model) -> tuple[dict, dict]:
    return dict(model.meta), {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def _warm_up(jobs: "queue.Queue") -> None:
    """While idle: import torch and the training code, and (when no job waits yet) take one
    tiny training step of the default CPU model, so that the first job starts at once. The
    random state is left as it was (every job seeds its own anyway)."""
    try:
        import torch

        from . import train  # noqa: F401

        with torch.random.fork_rng():
            # the optimizer's first construction imports torch._dynamo (~2 s on 2 cores)
            opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)])
            if not jobs.empty():
                return
            from .losses import edge_aware_potts, neighbour_offsets, sparse_loss
            from .model import build_model

            # one step of the default 2D CPU model, patch and batch, with the training's loss
            # terms and (fused) optimizer: first-call costs (kernels, allocator) are paid here
            cpu = torch.device("cpu")
            base, depth = train.default_architecture(cpu, 2)
            (py, px), batch = train.default_patch_batch(cpu, 2)
            from .device import autocast_dtype
            from .train.setup import uses_channels_last

            model = build_model(2, 1, 2, base, depth)
            x = torch.rand(batch, 1, py, px)
            if uses_channels_last(cpu, 2):   # the training's layout and precision (bf16 with AMX)
                model = model.to(memory_format=torch.channels_last)
                x = x.contiguous(memory_format=torch.channels_last)
            opt = train._adamw(list(model.parameters()))
            amp = autocast_dtype(cpu, training=True)
            with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
                logits = model(x)
            y = torch.randint(0, 3, (batch, py, px))
            loss = sparse_loss(logits, y) + edge_aware_potts(
                torch.softmax(logits.float(), 1), x, neighbour_offsets(2, train.REG_DILATIONS))
            loss.backward()
            opt.step()
    except Exception:  # noqa: BLE001 - the job itself reports a broken installation
        pass


def _apply_nice(nice: int, base: list) -> None:
    """Lower this process's priority to ``nice`` above the parent's (never raised back)."""
    if not nice or not hasattr(os, "nice"):
        return
    try:
        cur = os.nice(0)
        if cur < base[0] + nice:
            os.nice(base[0] + nice - cur)  # the viewer gets the CPU first when it needs it
    except OSError:  # pragma: no cover
        pass


def serve(conn: Any, idle_s: float = IDLE_S, nice: int = 0) -> None:
    """Run the jobs that arrive on ``conn`` one after the other, sending their events back;
    between jobs wait idle (warm) for the next, and end after ``idle_s`` seconds without one,
    on an "exit" message, or when the connection drops (the parent exited or was killed)."""
    jobs: queue.Queue = queue.Queue()
    stops: dict = {}       # job id -> its stop event
    previews: dict = {}    # job id -> the latest preview request
    exiting = threading.Event()
    lock = threading.Lock()
    base = [os.nice(0) if hasattr(os, "nice") else 0]

    def tell(msg: tuple) -> None:
        with lock:
            send(conn, msg)

    def read() -> None:
        try:
            while True:
                msg = recv(conn)
                kind, jid = msg[0], msg[1]
                if kind == "job":
                    stops[jid] = threading.Event()
                    jobs.put(msg)
                elif kind == "stop":
                    stops.setdefault(jid, threading.Event()).set()
                elif kind == "preview":
                    previews[jid] = msg[2]
                elif kind == "exit":
                    exiting.set()
                    jobs.put(None)
        except (EOFError, OSError, pickle.UnpicklingError):
            # the parent closed the connection or is gone: stop, and end in any case
            exiting.set()
            for ev in list(stops.values()):
                ev.set()
            jobs.put(None)
            timer = threading.Timer(PARENT_GONE_GRACE_S, os._exit, args=(3,))
            timer.daemon = True
            timer.start()

    threading.Thread(target=read, daemon=True, name="napari-unet-train-reader").start()
    _apply_nice(nice, base)
    _warm_up(jobs)  # meanwhile the reader receives the first job's data
    tell(("warm",))  # (core.train_pool.wait_warm; a run skips it)
    while not exiting.is_set():
        try:
            msg = jobs.get(timeout=idle_s)
        except queue.Empty:
            return  # idle too long
        if msg is None:
            return
        _, jid, images, labels, kwargs, job_nice = msg
        _apply_nice(job_nice, base)  # (the parent reuses a process only at its nice level)
        tell(("ready", jid))  # everything sent before this belongs to earlier jobs
        _run_job(tell, jid, images, labels, kwargs, stops[jid], lambda j=jid: previews.get(j))
        del msg, images, labels, kwargs  # nothing of a finished job is kept while idle
        stops.pop(jid, None)
        previews.pop(jid, None)


def _run_job(tell, jid, images, labels, kwargs, stop, latest) -> None:
    try:
        from .events import TrainFinished
        from .train import iter_train

        for key in ("model", "init"):
            if isinstance(kwargs.get(key), tuple):  # (meta, state) of a model object
                kwargs[key] = _from_state(*kwargs[key])
        preview = latest if kwargs.pop("_has_preview") else None
        for ev in iter_train(images, labels, stop=stop, preview=preview, **kwargs):
            if isinstance(ev, TrainFinished):
                meta, state = _state_of(ev.model)  # every field but the models crosses as it is
                fields = {f.name: getattr(ev, f.name) for f in dataclasses.fields(ev) if f.name != "model"}
                if ev.discarded is not None:
                    fields["discarded"] = _state_of(ev.discarded)
                tell(("finished", meta, state, fields))
            else:
                tell(("event", ev))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the caller
        try:
            exc = pickle.dumps(e)  # our own error types (UserError ...) keep their type
            pickle.loads(exc)
        except Exception:  # noqa: BLE001 - not every exception survives a pickle round trip
            exc = None
        try:
            tell(("error", type(e).__name__, str(e), traceback.format_exc(), exc))
        except (OSError, EOFError):
            pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:  # Ctrl-C in the terminal is the parent's to handle (it stops us through the connection)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except (ValueError, OSError):  # pragma: no cover
        pass
    from multiprocessing.connection import Client

    key = bytes.fromhex(os.environ.pop(AUTHKEY_ENV, ""))
    conn = Client(argv[0], authkey=key)
    try:
        serve(conn, float(os.environ.pop(IDLE_ENV, IDLE_S)), int(os.environ.pop(NICE_ENV, 0) or 0))
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
