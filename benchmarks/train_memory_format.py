"""3D training on a CPU: contiguous against channels-last-3d, side by side in one run.

The trainer (``iter_train``, its CPU defaults for 3D) trains the same painted stack with the
model and its batches in either memory layout (``napari_unet.core.train.CHANNELS_LAST_3D_CPU``);
short rounds alternate (contiguous, channels-last, contiguous, ...) so that load from other
processes hits both alike. Each round's rate counts the steps after the first one (set-up and
the first step's one-off costs are left out). Prints each pair and the median of the ratios.

Usage::

    python benchmarks/train_memory_format.py                     # synthetic stack, 3 pairs
    python benchmarks/train_memory_format.py --image ovule3d      # the real confocal stack
    python benchmarks/train_memory_format.py --steps 60 --rounds 5 --threads 2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_round_arguments, painted_case  # noqa: E402


def rate(img, strokes, steps: int, channels_last: bool) -> float:
    import napari_unet.core.train as T
    from napari_unet.core.events import TrainStep

    T.CHANNELS_LAST_3D_CPU = channels_last
    t0, n = None, 0
    for ev in T.iter_train(img, strokes, dims=3, steps=steps, device="cpu", seed=0):
        if isinstance(ev, TrainStep):
            n = ev.step
            if t0 is None:
                t0, first = time.perf_counter(), ev.step
    return (n - first) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="synth3d", choices=["synth3d", "ovule3d"])
    add_round_arguments(ap, 40, ROOT.parent / "shared" / "data" / "real")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(a.threads)
    im, strokes = painted_case(a.image, "planes-m4", a.data)
    print(f"{a.image} {im.img.shape}, {a.steps} steps a round, {a.threads} threads, torch {torch.__version__}")
    ratios = []
    for r in range(a.rounds):
        contiguous = rate(im.img, strokes, a.steps, False)
        last = rate(im.img, strokes, a.steps, True)
        ratios.append(last / contiguous)
        print(f"pair {r}: contiguous {contiguous:.2f} steps/s, channels-last-3d {last:.2f} steps/s, "
              f"ratio {ratios[-1]:.2f}", flush=True)
    print(f"channels-last-3d / contiguous, steps per second, median of {a.rounds}: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
