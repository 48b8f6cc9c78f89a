"""The warm training process: a second run reuses the first run's process, a dead idle one is
replaced transparently, an error leaves it usable, prestart() starts one ahead (without
importing torch here), and an idle one ends with its parent."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core import train_pool, train_process
from napari_unet.core.events import TrainFinished
from napari_unet.core.synthetic import make_nuclei, make_strokes
from napari_unet.core.train_process import iter_train_process, prestart

HANG_S = 120  # only catches hangs; nothing here is timed
TINY = dict(base_channels=4, depth=2, patch=32, batch_size=2, steps=2)


@pytest.fixture(scope="module")
def data():
    img, sem, inst = make_nuclei((64, 64), seed=3)
    return img, make_strokes(sem, inst, seed=3)


def _run(img, strokes, **kw) -> tuple[int, TrainFinished]:
    """Train; the pid of the process that ran it, and the last event."""
    pid = None
    for ev in iter_train_process([img], [strokes], **dict(TINY, **kw)):
        if pid is None:
            (proc,) = train_process._LIVE
            pid = proc.pid
    return pid, ev


def _idle_pid() -> int | None:
    child = train_pool._idle
    return None if child is None else child.proc.pid


def _wait(cond, what: str) -> None:
    deadline = time.monotonic() + HANG_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_second_run_reuses_the_process(data):
    pid1, fin1 = _run(*data)
    assert isinstance(fin1, TrainFinished) and fin1.reason == "steps"
    assert _idle_pid() == pid1 and not train_process._LIVE  # idle, not running
    pid2, fin2 = _run(*data, seed=1)
    assert pid2 == pid1 and fin2.reason == "steps"


def test_a_killed_idle_process_is_replaced(data):
    pid1, _ = _run(*data)
    os.kill(pid1, signal.SIGKILL)
    _wait(lambda: train_pool._idle.proc.poll() is not None, "the killed process did not end")
    pid2, fin = _run(*data)
    assert pid2 != pid1 and fin.reason == "steps"
    assert _idle_pid() == pid2


def test_an_error_leaves_the_process_usable(data):
    img, strokes = data
    pid1, _ = _run(img, strokes)
    with pytest.raises(ValueError, match="paint|label"):
        _run(img, np.zeros(img.shape, np.uint8))
    pid2, fin = _run(img, strokes)
    assert pid2 == pid1 and fin.reason == "steps"


def test_prestart_starts_the_process_the_first_run_uses(data):
    # start from a quiet pool: a process of an earlier test still running or starting would
    # become the idle one in place of the prestarted one (and may then end, as abandoned)
    _wait(lambda: train_pool._starting is None and not any(
        p.poll() is None for p in list(train_process._LIVE)), "an earlier test's process kept running")
    idle = train_pool._idle
    if idle is not None:  # start from nothing: end the idle process of earlier tests
        train_pool._idle = None
        idle.end()
    prestart()
    _wait(lambda: _idle_pid() is not None, "prestart started nothing")
    assert train_pool.wait_warm(HANG_S)
    pid = _idle_pid()
    prestart()  # one is idle already: nothing more is started
    assert _idle_pid() == pid and train_pool._starting is None
    assert _run(*data)[0] == pid


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_prestart_imports_no_torch_here_and_the_idle_process_ends_with_its_parent(tmp_path):
    script = tmp_path / "prestart.py"
    script.write_text(
        "import os, sys, time\n"
        "from napari_unet.core import train_pool\n"
        "from napari_unet.core.train_process import prestart\n"
        "prestart()\n"
        "while train_pool._idle is None:\n"
        "    time.sleep(0.05)\n"
        "print('TORCH', 'torch' in sys.modules, 'CHILD', train_pool._idle.proc.pid, flush=True)\n"
        "os._exit(0)  # as if killed: no clean-up, no atexit\n")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=HANG_S * 2)
    assert "CHILD" in r.stdout, r.stderr[-3000:]
    assert "TORCH False" in r.stdout
    pid = int(r.stdout.split("CHILD", 1)[1].split()[0])
    _wait(lambda: not _alive(pid), "the idle training process outlived its parent")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def test_an_idle_process_ends_after_the_idle_timeout(data, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_TRAIN_IDLE_S", "0.5")  # read by processes started from now on
    idle = train_pool._idle
    if idle is not None:
        train_pool._idle = None
        idle.end()
    pid1, _ = _run(*data)
    _wait(lambda: train_pool._idle.proc.poll() is not None, "the idle process did not time out")
    monkeypatch.delenv("NAPARI_UNET_TRAIN_IDLE_S")
    pid2, fin = _run(*data)
    assert pid2 != pid1 and fin.reason == "steps"


def test_prestart_works_after_an_abandoned_run(data):
    """A run left suspended at a yield (a GUI worker of a deleted widget) must not keep the
    next prestart from starting a process (its child ends once stopped)."""
    import threading

    from napari_unet.core.events import TrainStep

    img, strokes = data
    stop = threading.Event()
    gen = iter_train_process([img], [strokes], stop=stop, **dict(TINY, steps=10**6))
    for ev in gen:
        if isinstance(ev, TrainStep):
            break
    (proc,) = train_process._LIVE
    stop.set()  # ... and nobody resumes the generator
    _wait(lambda: proc.poll() is not None, "the abandoned run's process kept running")
    idle = train_pool._idle
    if idle is not None:
        train_pool._idle = None
        idle.end()
    prestart()
    _wait(lambda: _idle_pid() is not None, "prestart started nothing after an abandoned run")
    gen.close()
