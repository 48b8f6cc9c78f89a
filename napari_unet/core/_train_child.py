"""The training child process: ``python -m napari_unet.core._train_child ADDRESS``.

core.train_process starts this module itself rather than through multiprocessing's spawn:
spawn re-runs the parent's ``__main__`` script in the child, so a plain napari script without
an ``if __name__ == "__main__":`` guard would open a second viewer there and never train. Here
the child runs only our code, whatever started the parent (a script, the ``napari`` command,
IPython/Jupyter, ``napari-unet gui``).

The child connects back to the parent's listener (the key comes in the environment), receives
the job, and sends training events. A reader thread takes "stop" and preview messages; when the
connection drops (the parent exited or was killed) training stops and the process ends.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import traceback
from typing import Any

AUTHKEY_ENV = "NAPARI_UNET_TRAIN_KEY"
PARENT_GONE_GRACE_S = 10.0  # after the parent is gone: time to stop cleanly before a hard exit


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


def run(conn: Any) -> None:
    """Receive the job on ``conn``, train, send the events back."""
    stop = threading.Event()
    latest: list = [None]

    def read() -> None:
        try:
            while True:
                msg = recv(conn)
                if msg[0] == "stop":
                    stop.set()
                elif msg[0] == "preview":
                    latest[0] = msg[1]
        except (EOFError, OSError, pickle.UnpicklingError):
            stop.set()  # the parent closed the connection or is gone: stop, and end in any case
            timer = threading.Timer(PARENT_GONE_GRACE_S, os._exit, args=(3,))
            timer.daemon = True
            timer.start()

    _, images, labels, kwargs, nice = recv(conn)
    threading.Thread(target=read, daemon=True, name="napari-unet-train-reader").start()
    try:
        if nice and hasattr(os, "nice"):
            os.nice(nice)  # the viewer gets the CPU first when it needs it
        from .events import TrainFinished
        from .train import iter_train

        for key in ("model", "init"):
            if isinstance(kwargs.get(key), tuple):  # (meta, state) of a model object
                kwargs[key] = _from_state(*kwargs[key])
        preview = (lambda: latest[0]) if kwargs.pop("_has_preview") else None
        for ev in iter_train(images, labels, stop=stop, preview=preview, **kwargs):
            if isinstance(ev, TrainFinished):
                meta, state = _state_of(ev.model)
                send(conn, ("finished", ev.reason, ev.step, meta, state, ev.message, ev.kept_previous))
            else:
                send(conn, ("event", ev))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the caller
        try:
            exc = pickle.dumps(e)  # our own error types (UserError ...) keep their type
            pickle.loads(exc)
        except Exception:  # noqa: BLE001 - not every exception survives a pickle round trip
            exc = None
        try:
            send(conn, ("error", type(e).__name__, str(e), traceback.format_exc(), exc))
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
        run(conn)
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
