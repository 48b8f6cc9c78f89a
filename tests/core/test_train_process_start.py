"""The training process starts however Python was started (issue: a plain napari script without
``if __name__ == "__main__":`` was re-run in the child), reports a child that never starts, and
never outlives its parent."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core import train_process
from napari_unet.core.train_process import iter_train_process

HANG_S = 120  # only catches hangs; nothing here is timed

TRAIN = """
from napari_unet.core.synthetic import make_nuclei, make_strokes
from napari_unet.core.train_process import iter_train_process, _LIVE
img, sem, inst = make_nuclei((64, 64), seed=3)
strokes = make_strokes(sem, inst, seed=3)
"""


def _script(tmp_path: Path, body: str) -> tuple[Path, Path]:
    marker = tmp_path / "runs.txt"
    script = tmp_path / "plain_script.py"
    # no main guard: the way most napari scripts are written
    script.write_text(f"import os\nwith open({str(marker)!r}, 'a') as f:\n    f.write(str(os.getpid()) + '\\n')\n"
                      + TRAIN + textwrap.dedent(body))
    return script, marker


@pytest.mark.parametrize("how", ["script", "ipython"])
def test_a_plain_script_without_main_guard_trains_once(tmp_path, how):
    script, marker = _script(tmp_path, """
        kinds = [type(e).__name__ for e in iter_train_process(
            [img], [strokes], steps=3, base_channels=4, depth=2, patch=32, batch_size=2)]
        print("EVENTS", *kinds)
        """)
    if how == "ipython":
        pytest.importorskip("IPython")
        cmd = [sys.executable, "-m", "IPython", "--no-banner", "-c", f"%run {script}"]
    else:
        cmd = [sys.executable, str(script)]
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"))  # leave the user's profile alone
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=HANG_S * 2)
    assert r.returncode == 0, r.stderr[-3000:]
    events = r.stdout.split("EVENTS", 1)[1].split()
    assert events[0] == "TrainStarted" and events[-1] == "TrainFinished" and "TrainStep" in events
    assert len(marker.read_text().split()) == 1, "the user's script ran again in the training process"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended (it only waits to be reaped)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_child_ends_when_its_parent_is_killed(tmp_path):
    script, _ = _script(tmp_path, """
        import sys
        for ev in iter_train_process([img], [strokes], steps=10**6, base_channels=4, depth=2,
                                     patch=32, batch_size=2):
            if type(ev).__name__ == "TrainStep":
                print("CHILD", next(iter(_LIVE)).pid, flush=True)
                os._exit(0)  # as if killed: no clean-up, no atexit
        """)
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                       timeout=HANG_S * 2)
    assert "CHILD" in r.stdout, r.stderr[-3000:]
    pid = int(r.stdout.split("CHILD", 1)[1].split()[0])
    deadline = time.monotonic() + HANG_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(pid), "the training process outlived its parent"


def _fake_child(monkeypatch, code: str, startup_s: float = 1.0) -> None:
    monkeypatch.setattr(train_process, "_child_command", lambda address: [sys.executable, "-c", code])
    monkeypatch.setattr(train_process, "STARTUP_S", startup_s)


IMG, LAB = np.zeros((32, 32), np.float32), np.ones((32, 32), np.uint8)


def test_a_child_that_never_connects_is_reported_and_ended(monkeypatch):
    _fake_child(monkeypatch, "import time; time.sleep(600)")
    with pytest.raises(RuntimeError, match="did not start within 1 s"):
        list(iter_train_process([IMG], [LAB], steps=2))
    assert not train_process._LIVE  # the stuck child was ended


def test_a_child_that_dies_at_start_is_reported(monkeypatch):
    _fake_child(monkeypatch, "import sys; sys.stderr.write('no module named torch\\n'); sys.exit(3)",
                startup_s=HANG_S)
    with pytest.raises(RuntimeError, match="exited before it started .exit code 3.: no module named torch"):
        list(iter_train_process([IMG], [LAB], steps=2))


def test_stop_before_the_child_started_ends_quietly(monkeypatch):
    _fake_child(monkeypatch, "import time; time.sleep(600)", startup_s=HANG_S)
    stop = threading.Event()
    stop.set()
    assert list(iter_train_process([IMG], [LAB], steps=2, stop=stop)) == []
    assert not train_process._LIVE


def test_stop_reaches_the_child_of_an_abandoned_run():
    """A GUI worker whose widget was deleted leaves the generator suspended at a yield: the
    stop event must still end the child."""
    from napari_unet.core.events import TrainStep
    from napari_unet.core.synthetic import make_nuclei, make_strokes

    img, sem, inst = make_nuclei((64, 64), seed=3)
    stop = threading.Event()
    gen = iter_train_process([img], [make_strokes(sem, inst, seed=3)], steps=10**6, stop=stop,
                             base_channels=4, depth=2, patch=32, batch_size=2)
    for ev in gen:
        if isinstance(ev, TrainStep):
            break
    (proc,) = train_process._LIVE
    stop.set()  # ... and nobody resumes the generator
    deadline = time.monotonic() + HANG_S
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is not None, "the child kept training"
    gen.close()
