"""What the Train widget's live preview costs a run: training steps made in the same time with
and without it, side by side in one run.

The preview is what the widget asks for (``_widgets/_preview.py``): the slice on screen for a 2D
model, a slab of 16 planes around it for a 3D one, predicted with the weights of the moment every
``preview_every`` seconds (3 s, the widget's) inside the training loop. A preview that costs more
than a step many times over (a 3D slab of a 1024 x 1024 stack: ~23 s on 2 cores) waits three
times its cost before the next one (``PREVIEW_SPACING``); ``--spacing 0`` switches that off
(the behaviour before it) for the comparison.

    .venv/bin/python benchmarks/preview_cost.py [--dims 3] [--size 1024] [--seconds 60]

Prints steps without a preview, with one, their ratio, and the previews made.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import machine  # noqa: E402


def run(img, lab, dims: int, seconds: float, preview, spacing: float | None) -> tuple[int, int]:
    """(steps, previews) of one run of ``seconds``."""
    import napari_unet.core.train as T
    from napari_unet.core.events import Preview, TrainFinished

    saved = T.PREVIEW_SPACING
    if spacing is not None:
        T.PREVIEW_SPACING = spacing
    try:
        steps = previews = 0
        for ev in T.iter_train(img, lab, dims=dims, time_limit=seconds, preview=preview,
                               preview_every=3.0, seed=0):
            if isinstance(ev, Preview):
                previews += 1
            elif isinstance(ev, TrainFinished):
                steps = ev.step
        return steps, previews
    finally:
        T.PREVIEW_SPACING = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, choices=(2, 3), default=3)
    ap.add_argument("--size", type=int, default=1024, help="Y and X of the stack (default 1024)")
    ap.add_argument("--planes", type=int, default=32, help="planes of the stack (default 32)")
    ap.add_argument("--seconds", type=float, default=60.0, help="each run's time limit (default 60)")
    ap.add_argument("--spacing", type=float, default=None,
                    help="PREVIEW_SPACING for the run with a preview (default: the library's; 0: off)")
    args = ap.parse_args()
    from napari_unet.core.synthetic import make_nuclei, make_strokes

    img, sem, inst = make_nuclei((args.planes, args.size, args.size), seed=0)
    lab = make_strokes(sem, inst, seed=0, plane_step=6)
    z = args.planes // 2
    part = img[z] if args.dims == 2 else img[max(0, z - 8):z + 8]
    print(machine())
    print(f"{args.dims}D model, stack {img.shape}, preview {part.shape} every 3 s, {args.seconds:g} s a run")
    plain, _ = run(img, lab, args.dims, args.seconds, None, None)
    shown, n = run(img, lab, args.dims, args.seconds, lambda: ("k", part), args.spacing)
    print(f"steps without a preview {plain}, with it {shown} ({n} previews); ratio {shown / max(plain, 1):.2f}")


if __name__ == "__main__":
    t = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t:.0f} s)")
