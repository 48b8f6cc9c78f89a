"""Shared helpers for the benchmarks: machine description, memory sampling, MONAI arms."""
from __future__ import annotations

import ctypes
import math
import os
import platform
import statistics
import threading
import time
from contextlib import contextmanager

import numpy as np


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        ram = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except Exception:
        ram = "RAM unknown"
    gpu = (f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU")
    return (f"{cpu}, {os.cpu_count()} logical cores ({torch.get_num_threads()} torch threads), {ram}, "
            f"{gpu}; torch {torch.__version__}, Python {platform.python_version()}, {platform.system()}")


def trainer_rate(img, lab, steps, **kw):
    """``iter_train`` for ``steps`` (+1) steps: ``(steps per second after the first step, its
    TrainStarted event, the model)``; set-up, the first step and the run's end are left out."""
    from napari_unet.core.events import TrainFinished, TrainStarted, TrainStep
    from napari_unet.core.train import iter_train

    last = None
    started = None
    for ev in iter_train(img, lab, steps=steps + 1, **kw):
        if isinstance(ev, TrainStarted):
            started = ev
        elif isinstance(ev, TrainStep):
            if ev.step == 1:
                t1 = time.perf_counter()  # after the first (warm-up) step, as in the bare loop
            last = (ev.step, time.perf_counter())
        elif isinstance(ev, TrainFinished):
            model = ev.model
    n, t_end = last
    return (n - 1) / (t_end - t1), started, model


def add_round_arguments(ap, steps: int, data_default) -> None:
    """The options of the side-by-side trainer benchmarks (alternating rounds of fixed steps)."""
    ap.add_argument("--data", type=type(data_default), default=data_default)
    ap.add_argument("--steps", type=int, default=steps, help=f"training steps per round (default {steps})")
    ap.add_argument("--rounds", type=int, default=3, help="pairs of rounds (default 3)")
    ap.add_argument("--threads", type=int, default=2)


def painted_case(name: str, style: str, data):
    """A benchmark image of benchmarks/quality.py and its strokes of ``style``: ``(im, strokes)``."""
    from quality import make_strokes
    from quality_methods import load_image

    im = load_image(name, data)
    return im, make_strokes(im, style)


def _rss_bytes() -> int:
    """Anonymous resident memory of this process (file-backed memmap pages excluded)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss


def trim() -> None:
    """Give freed heap back to the OS so the next baseline is clean (glibc only)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class PeakSampler:
    """Samples anonymous RSS every ``interval`` s in a thread; ``peak`` is the growth over the start."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak = 0

    def __enter__(self):
        trim()
        self.base = _rss_bytes()
        self._high = self.base
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self._high = max(self._high, _rss_bytes())
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self._high = max(self._high, _rss_bytes())
        self.peak = self._high - self.base
        return False


@contextmanager
def timed():
    box = {}
    t = time.perf_counter()
    yield box
    box["s"] = time.perf_counter() - t


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def monai_redundancy(spatial, roi, overlap) -> float:
    """Voxels MONAI's sliding window computes / voxels it outputs (image padded up to roi)."""
    from monai.inferers.utils import _get_scan_interval
    from monai.data.utils import dense_patch_slices

    padded = tuple(max(s, r) for s, r in zip(spatial, roi))
    interval = _get_scan_interval(padded, roi, len(roi), (overlap,) * len(roi))
    n = len(dense_patch_slices(padded, roi, interval))
    return n * math.prod(roi) / math.prod(spatial)


def ours_redundancy(spatial, cores, meta) -> tuple[float, int]:
    from napari_unet.core.pooling import axis_grid_halo
    from napari_unet.core.predict import plan_axis

    grids, halos = axis_grid_halo(meta, len(spatial))  # per axis (anisotropic pooling)
    plans = [plan_axis(int(s), int(c), h, g) for s, c, h, g in zip(spatial, cores, halos, grids)]
    work = math.prod(sum(a.padded for a in p) for p in plans)
    return work / math.prod(spatial), math.prod(len(p) for p in plans)


def our_tile_input(spatial, cores, meta) -> tuple[int, ...]:
    """Largest padded tile input that ``predict`` will feed the network for these cores."""
    from napari_unet.core.pooling import axis_grid_halo
    from napari_unet.core.predict import plan_axis

    grids, halos = axis_grid_halo(meta, len(spatial))
    return tuple(max(a.padded for a in plan_axis(int(s), int(c), h, g))
                 for s, c, h, g in zip(spatial, cores, halos, grids))


def test_image(shape, seed=0) -> np.ndarray:
    """Gamma noise with some smooth structure (a plausible fluorescence-like intensity range)."""
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 50.0, shape).astype(np.float32)
