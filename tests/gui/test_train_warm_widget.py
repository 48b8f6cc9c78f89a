"""Train widget and the warm training process: docking the widget prestarts one (in the
background, without importing torch in the viewer), the first run uses it, and the next run
uses it again."""
from __future__ import annotations

HANG_MS = 120_000  # waits end on state; this only catches a hang (never a speed requirement)


def _run(w, qtbot) -> int:
    """Train; the pid of the idle process afterwards (the run's own: a run gives back the
    process it used, ending any other)."""
    from napari_unet.core import train_pool

    w.start()
    qtbot.waitUntil(lambda: not w.is_running(), timeout=HANG_MS)
    assert w.finished_reason == "steps"
    return train_pool._idle.proc.pid


def test_docking_prestarts_the_process_the_runs_use(viewer, dock, qtbot, monkeypatch):
    from napari_unet.core import train_pool

    from napari_unet.core import train_process

    monkeypatch.delenv("NAPARI_UNET_NO_PRESTART", raising=False)
    # start from nothing: no process of an earlier test still running or starting (one would
    # become the idle process in place of the prestarted one)
    qtbot.waitUntil(lambda: train_pool._starting is None and not any(
        p.poll() is None for p in list(train_process._LIVE)), timeout=HANG_MS)
    idle = train_pool._idle
    if idle is not None:  # start from nothing: end the idle process of earlier tests
        train_pool._idle = None
        idle.end()
    viewer.open_sample("napari-unet", "nuclei_2d")
    w = dock("Train")
    qtbot.waitUntil(lambda: train_pool._idle is not None, timeout=HANG_MS)
    assert train_pool.wait_warm(HANG_MS / 1000)
    pid = train_pool._idle.proc.pid
    w.base_channels.setValue(8)
    w.depth.setValue(2)
    w.set_limit(2, "steps")
    assert _run(w, qtbot) == pid
    assert _run(w, qtbot) == pid  # a second run: the same, warm process
