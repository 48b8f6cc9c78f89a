"""What the fixed filter stem (``model.FilterStem``) costs: a training step and a whole-stack
prediction with and without it, side by side in one run, as ratios.

The models are the CPU defaults for ``dims`` (``train.default_architecture``; 3D: 8 channels,
3 poolings) and the stem the training default (``train.STEM_3D``, or 1, 2, 4 for 2D). Training
steps: forward + backward + AdamW on a batch of the default patch (channels-last-3d in 3D on the
CPU, as training runs), timed in alternating pairs, median of ``--reps``. Prediction:
``napari_unet.predict`` of a random stack of ``--shape`` (tiles chosen as usual; the stem's
larger halo counts), median of ``--reps`` alternating runs.

    python benchmarks/stem_cost.py                  # 3D, 32x256x256
    python benchmarks/stem_cost.py --dims 2 --shape 1024x1024
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _models(dims: int):
    import napari_unet.core.train as T
    from napari_unet import build_model

    base, depth = T.default_architecture(torch.device("cpu"), dims)
    stem = (T.STEM_3D if dims == 3 else T.STEM_2D) or (1.0, 2.0, 4.0)
    torch.manual_seed(0)
    plain = build_model(dims, 1, 2, base, depth)
    torch.manual_seed(0)
    with_stem = build_model(dims, 1, 2, base, depth, stem=stem)
    return {"plain": plain, "stem": with_stem}, stem


def _step_timer(model, dims: int):
    import napari_unet.core.train as T

    patch, batch = T.default_patch_batch(torch.device("cpu"), dims)
    fmt = torch.channels_last_3d if dims == 3 else torch.contiguous_format
    model = model.train().to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch, 1, *patch), generator=g).contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch, *patch), generator=g)

    def step() -> float:
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    step()   # warm-up
    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", type=int, choices=(2, 3), default=3)
    ap.add_argument("--shape", default=None, help="prediction input, e.g. 32x256x256 (default) or 1024x1024")
    ap.add_argument("--steps", type=int, default=20, help="training steps per timing")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from napari_unet import predict

    models, stem = _models(args.dims)
    shape = tuple(int(v) for v in (args.shape or ("32x256x256" if args.dims == 3 else "1024x1024")).split("x"))
    print(f"{args.dims}D, base {models['plain'].meta['base_channels']}, depth {models['plain'].meta['depth']}; "
          f"stem sigmas {', '.join(f'{s:g}' for s in stem)}; halo {models['plain'].meta['halo']} -> "
          f"{models['stem'].meta['halo']}; {args.threads} threads", flush=True)
    timers = {k: _step_timer(m, args.dims) for k, m in models.items()}
    steps: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(args.reps):
        for k in models:   # alternating: both see the same machine state
            steps[k].append(sum(timers[k]() for _ in range(args.steps)) / args.steps)
    img = np.random.default_rng(0).gamma(2.0, 50.0, shape).astype(np.float32)
    pred: dict[str, list[float]] = {k: [] for k in models}
    for k, m in models.items():
        m.eval()
        predict(m, img[tuple(slice(0, min(s, 64)) for s in shape)], device="cpu")   # warm-up
    for _ in range(args.reps):
        for k, m in models.items():
            t = time.perf_counter()
            predict(m, img, device="cpu")
            pred[k].append(time.perf_counter() - t)
    s0, s1 = statistics.median(steps["plain"]), statistics.median(steps["stem"])
    p0, p1 = statistics.median(pred["plain"]), statistics.median(pred["stem"])
    print(f"training step: {s0 * 1000:.0f} ms without the stem, {s1 * 1000:.0f} ms with it: ratio {s1 / s0:.2f}")
    print(f"prediction of {'x'.join(map(str, shape))}: {p0:.2f} s without, {p1:.2f} s with: ratio {p1 / p0:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
