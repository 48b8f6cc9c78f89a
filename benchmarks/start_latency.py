"""Click to first training step: how long from pressing Train to the first TrainStep event.

Side by side in one run, on a 512x512 synthetic nuclei image with painted strokes (default
model and settings, as the Train widget trains):

- cold: no training process yet, none prestarted (a fresh interpreter imports torch);
- prestarted: the first run after ``prestart()`` (what the Train widget does when docked),
  once the prestarted process has settled (a user paints for a while before the first click);
- warm: a second run, reusing the process of the run before.

Measured through the API (``iter_train_process`` called -> first TrainStep) and, unless
``--no-widget``, through the Train widget in napari (``start()`` -> first loss point; under
Xvfb when there is no display), plus the time to dock the Train widget with and without its
prestart. Each run is stopped right after its first step. Prints medians over ``--reps``
repetitions and the ratios to cold.

    .venv/bin/python benchmarks/start_latency.py [--reps 3] [--no-widget]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HANG_S = 120.0


def _data():
    from napari_unet.core.synthetic import make_nuclei, make_strokes

    img, sem, inst = make_nuclei((512, 512), seed=3)
    return img, sem, make_strokes(sem, inst, seed=3)


def _end_idle() -> None:
    from napari_unet.core import train_pool

    child, train_pool._idle = train_pool._idle, None
    if child is not None:
        child.end()
        child.proc.wait(10)


def _prestart_settled(pump=lambda: None) -> float:
    """prestart() and wait until its process has done its imports and warm-up step, as after a
    user painted for a while before the first click. Returns the seconds that took."""
    from napari_unet.core import train_pool
    from napari_unet.core.train_process import prestart

    t0 = time.perf_counter()
    prestart()
    while train_pool._idle is None:
        pump()
        time.sleep(0.02)
        assert time.perf_counter() - t0 < HANG_S, "prestart did not start a process"
    assert train_pool.wait_warm(HANG_S), "the prestarted process did not warm up"
    return time.perf_counter() - t0


WARMUP: list = []  # prestart() -> warm (imports and warm-up step done)
STARTED: dict = {"cold": [], "prestarted": [], "warm": []}  # call -> TrainStarted (set-up done)


def _api_run(img, strokes, kind: str) -> float:
    from napari_unet.core.events import TrainStarted, TrainStep
    from napari_unet.core.train_process import iter_train_process

    stop = threading.Event()
    t0 = time.perf_counter()
    first = None
    for ev in iter_train_process([img], [strokes], time_limit=600, stop=stop):
        if isinstance(ev, TrainStarted):
            STARTED[kind].append(time.perf_counter() - t0)
        if isinstance(ev, TrainStep) and first is None:
            first = time.perf_counter() - t0
            stop.set()  # then run on to TrainFinished: the process goes back warm
    return first


def api_arm(reps: int) -> dict:
    img, _, strokes = _data()
    times: dict = {"cold": [], "prestarted": [], "warm": []}
    for r in range(reps):
        _end_idle()
        times["cold"].append(_api_run(img, strokes, "cold"))
        times["warm"].append(_api_run(img, strokes, "warm"))
        _end_idle()
        WARMUP.append(_prestart_settled())
        times["prestarted"].append(_api_run(img, strokes, "prestarted"))
        print(f"  api rep {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
              flush=True)
    return times


def widget_arm(reps: int) -> tuple[dict, dict]:
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_unet._sample_data import _layers

    app = QApplication.instance() or QApplication([])
    pump = app.processEvents
    img, sem, strokes = _data()
    viewer = napari.Viewer(show=True)
    for data, meta, kind in _layers("img512", img, sem, strokes):
        getattr(viewer, f"add_{kind}")(data, **meta)
    pump()

    # docking time, with and without the widget's prestart (no idle process either way)
    dock_times: dict = {"without prestart": [], "with prestart": []}
    w = None
    for r in range(reps + 1):
        for label in ("without prestart", "with prestart"):
            _end_idle()
            if label == "without prestart":
                os.environ["NAPARI_UNET_NO_PRESTART"] = "1"
            else:
                os.environ.pop("NAPARI_UNET_NO_PRESTART", None)
            t0 = time.perf_counter()
            dw, w = viewer.window.add_plugin_dock_widget("napari-unet", "Train")
            pump()  # the prestart's QTimer.singleShot(0) runs here
            dt = time.perf_counter() - t0
            if r:  # the first round pays for the widget's imports: not counted
                dock_times[label].append(dt)
            viewer.window.remove_dock_widget(dw)
            pump()
    os.environ.pop("NAPARI_UNET_NO_PRESTART", None)
    _end_idle()
    dw, w = viewer.window.add_plugin_dock_widget("napari-unet", "Train")
    w.set_limit(600, "seconds")
    pump()

    def click() -> float:
        w.plot.clear()
        t0 = time.perf_counter()
        w.start()
        while not w.plot.train:
            pump()
            time.sleep(0.005)
            assert time.perf_counter() - t0 < HANG_S and w.is_running(), w.status.text()
        dt = time.perf_counter() - t0
        w.stop()
        while w.is_running():
            pump()
            time.sleep(0.01)
        return dt

    times: dict = {"cold": [], "prestarted": [], "warm": []}
    for r in range(reps):
        _end_idle()
        times["cold"].append(click())
        times["warm"].append(click())
        _end_idle()
        WARMUP.append(_prestart_settled(pump))
        times["prestarted"].append(click())
        print(f"  widget rep {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()),
              flush=True)
    viewer.close()
    return times, dock_times


def _table(name: str, times: dict) -> None:
    cold = statistics.median(times["cold"])
    print(f"\n{name}: click -> first TrainStep, median of {len(times['cold'])} (512x512, default model)")
    print("| start | median | runs | / cold |\n|---|---|---|---|")
    for k in ("cold", "prestarted", "warm"):
        m = statistics.median(times[k])
        runs = " ".join(f"{v:.2f}" for v in times[k])
        print(f"| {k} | {m:.2f} s | {runs} | {m / cold:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-widget", action="store_true", help="the API only (no napari window)")
    args = ap.parse_args()
    if (not args.no_widget and sys.platform.startswith("linux") and not os.environ.get("DISPLAY")
            and not os.environ.get("WAYLAND_DISPLAY")):
        if not shutil.which("xvfb-run"):
            print("no display and no xvfb-run: use --no-widget", file=sys.stderr)
            return 2
        return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, *sys.argv])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import machine

    print(machine(), f"(load average {os.getloadavg()[0]:.1f})" if hasattr(os, "getloadavg") else "")
    api = api_arm(args.reps)
    widget = dock = None
    if not args.no_widget:
        widget, dock = widget_arm(args.reps)
    _table("API (iter_train_process)", api)
    print("  of which call -> TrainStarted (process, data, model set-up), median: " + ", ".join(
        f"{k} {statistics.median(v):.2f} s" for k, v in STARTED.items()))
    print(f"  prestart() -> process warm (in the background), median: {statistics.median(WARMUP):.1f} s")
    if widget:
        _table("Train widget (start() -> first loss point)", widget)
        print("\ndocking the Train widget (add_plugin_dock_widget + one processEvents), median:")
        for k, v in dock.items():
            print(f"  {k}: {statistics.median(v) * 1000:.0f} ms ({' '.join(f'{x * 1000:.0f}' for x in v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
