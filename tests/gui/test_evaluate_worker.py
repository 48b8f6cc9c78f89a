"""Evaluate scores in a worker through the job panel (progress, Cancel); the table and the
overlay layer are made on the main thread."""
from __future__ import annotations

import threading

import numpy as np

HANG_MS = 120_000  # only catches a hang; nothing here is timed


def _evaluate(viewer, dock):
    """The Evaluate widget with 'pred' and 'truth' (a 4-slice stack with some errors) chosen."""
    rng = np.random.default_rng(4)
    truth = rng.integers(1, 3, (4, 24, 24)).astype(np.uint8)
    pred = truth.copy()
    pred[:, :4] = 2  # some errors
    viewer.add_labels(pred, name="pred")
    viewer.add_labels(truth, name="truth")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("truth")
    return w


def test_evaluate_scores_in_a_worker_and_shows_on_the_main_thread(viewer, dock, qtbot, monkeypatch):
    import napari_unet.core.metrics as M

    threads, real = [], M.evaluate

    def spy(*a, **k):
        threads.append(threading.current_thread())
        return real(*a, **k)

    monkeypatch.setattr(M, "evaluate", spy)
    w = _evaluate(viewer, dock)
    shown = []
    real_show = w._show
    monkeypatch.setattr(w, "_show", lambda ev: (shown.append(threading.current_thread()), real_show(ev)))
    w.run_btn.click()
    assert w.worker is not None and not w.run_btn.isEnabled() and w.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: w.worker is None, timeout=HANG_MS)
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()
    assert len(threads) == 5 and all(t is not threading.main_thread() for t in threads)  # whole + 4 slices
    assert shown == [threading.main_thread()]
    assert w.result is not None and w.progress.value() == 1000
    assert {row[0] for row in w.rows} == {"all", "z 0", "z 1", "z 2", "z 3"}
    assert viewer.layers["pred errors"].data.shape == (4, 24, 24)
    assert w.status.text() == "scored 'pred' against 'truth'"


def test_evaluate_cancel_leaves_no_result(viewer, dock, qtbot, monkeypatch, notes):
    import napari_unet.core.metrics as M

    entered, release, real = threading.Event(), threading.Event(), M.evaluate

    def held(*a, **k):  # the first scoring step waits until the test has pressed Cancel
        entered.set()
        release.wait(HANG_MS / 1000)
        return real(*a, **k)

    monkeypatch.setattr(M, "evaluate", held)
    w = _evaluate(viewer, dock)
    w.run_btn.click()
    qtbot.waitUntil(entered.is_set, timeout=HANG_MS)
    assert not w.run_btn.isEnabled() and w.run() is None  # busy: one notification, nothing started
    assert "already running" in [m for k, m in notes if k == "error"][-1]
    w.cancel_btn.click()
    assert w.status.text() == "cancelling…"
    release.set()
    qtbot.waitUntil(lambda: w.worker is None, timeout=HANG_MS)
    assert w.result is None and w.status.text() == "cancelled" and w.table.rowCount() == 0
    assert "pred errors" not in [layer.name for layer in viewer.layers]
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()


def test_object_scores_run_in_a_worker_and_cancel_leaves_nothing(viewer, dock, qtbot, monkeypatch):
    import napari_unet.core.objects as O

    threads, real = [], O.match_objects
    hold, entered, release = threading.Event(), threading.Event(), threading.Event()

    def held(*a, **k):  # once `hold` is set, the matching waits until the test has pressed Cancel
        threads.append(threading.current_thread())
        if hold.is_set() and not entered.is_set():
            entered.set()
            release.wait(HANG_MS / 1000)
        return real(*a, **k)

    monkeypatch.setattr(O, "match_objects", held)
    w = _evaluate(viewer, dock)
    ob = w.objects
    ob.run_btn.click()
    assert ob.worker is not None and not ob.run_btn.isEnabled() and ob.cancel_btn.isEnabled()
    qtbot.waitUntil(lambda: ob.worker is None, timeout=HANG_MS)
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert ob.result is not None and ob.progress.value() == 1000 and ob.table.rowCount() == 10
    assert "pred object errors" in [layer.name for layer in viewer.layers]
    viewer.layers.remove("pred object errors")
    hold.set()
    ob.run_btn.click()  # again, and cancel while it matches
    qtbot.waitUntil(entered.is_set, timeout=HANG_MS)
    ob.cancel_btn.click()
    assert ob.status.text() == "cancelling…"
    release.set()
    qtbot.waitUntil(lambda: ob.worker is None, timeout=HANG_MS)
    assert ob.result is None and ob.status.text() == "cancelled"
    assert "pred object errors" not in [layer.name for layer in viewer.layers]
    assert ob.run_btn.isEnabled() and not ob.cancel_btn.isEnabled()
