"""Trainer overhead: ``iter_train`` vs a bare PyTorch loop, side by side in one run.

Both train the same architecture (same width, depth, batch, patch, channels-last choice,
AdamW (fused where available, as in the trainer), the same class-balanced sparse loss, the same
precision). The bare loop feeds one pre-made random batch again and again (no data pipeline
at all); the trainer samples class-balanced patches from a painted synthetic image and augments
them on the device, emits events, validates periodically. Short rounds alternate (bare, trainer, bare, ...) so that load
from other processes hits both alike; the median of the per-round ratios is reported.

The trainer's CPU thread tuning is switched off here (both run with the same thread count),
and so are its losses on the unpainted pixels (the edge-aware regulariser and the appearance
prior, which the bare loop does not compute): the ratio measures the pipeline's overhead only.
``--losses default`` keeps them, to show what they cost on top (no bar then). The bare loop's
network is a freshly initialised copy of the trainer's (the same architecture, the fixed
filters of a 3D model included).

Usage::

    python benchmarks/train_speed.py                       # CPU defaults, 2D
    python benchmarks/train_speed.py --dims 3
    python benchmarks/train_speed.py --device cuda --seconds 20
    python benchmarks/train_speed.py --losses default     # with the regulariser and the prior
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import trainer_rate  # noqa: E402

os.environ["NAPARI_UNET_NO_THREAD_TUNING"] = "1"


def bare_loop(model, x, y, steps, dev, amp, channels_last, lr=2e-3):
    import torch

    from napari_unet.core.losses import sparse_loss

    from napari_unet.core.train import _adamw

    model.train()
    opt = _adamw(list(model.parameters()), lr=lr, weight_decay=1e-4)  # the trainer's optimizer
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last if x.ndim == 4 else torch.channels_last_3d)

    def one():
        with torch.autocast(dev.type, dtype=amp, enabled=amp is not None):
            logits = model(x)
        loss = sparse_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        return loss

    one()  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        loss = one()
    float(loss.detach())  # one sync at the end
    return steps / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, choices=(2, 3), default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--base-channels", type=int, default=None)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--patch", default="auto", help="auto, N or ZxYxX")
    ap.add_argument("--batch-size", default="auto")
    ap.add_argument("--seconds", type=float, default=4.0, help="about this long per round and side")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads for both (default: torch's)")
    ap.add_argument("--losses", choices=("strokes", "default"), default="strokes",
                    help="strokes: the trainer's losses on the unpainted pixels off, as in the bare loop "
                         "(the overhead's bar applies); default: the trainer as it trains")
    args = ap.parse_args(argv)

    import torch

    from napari_unet.core.device import autocast_dtype, describe_device, resolve_device
    from napari_unet.core.model import model_from_meta
    from napari_unet.core.synthetic import make_nuclei, make_strokes

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.losses == "strokes":
        import napari_unet.core.train as T

        T.REG_WEIGHT = T.REG_WEIGHT_3D = T.REG_WEIGHT_3D_STEM = 0.0   # no regulariser, no prior
    dev = resolve_device(args.device)
    shape = (512, 512) if args.dims == 2 else (48, 256, 256)
    img, sem, inst = make_nuclei(shape, seed=0, radius=(7.0, 12.0) if args.dims == 3 else (7.0, 14.0))
    lab = make_strokes(sem, inst, seed=0)
    patch = args.patch
    if patch != "auto":
        parts = tuple(int(p) for p in patch.lower().split("x"))
        patch = parts[0] if len(parts) == 1 else parts
    batch = args.batch_size if args.batch_size == "auto" else int(args.batch_size)
    kw = dict(dims=args.dims, device=dev, patch=patch, batch_size=batch,
              base_channels=args.base_channels, depth=args.depth, seed=0)
    # one short trainer run to learn the defaults it picks
    _, started, model = trainer_rate(img, lab, 3, **kw)
    meta = model.meta
    patch_t, batch_n = started.patch, started.batch_size
    amp = autocast_dtype(dev, training=True)   # the trainer's precision
    from napari_unet.core.train.setup import uses_channels_last

    channels_last = uses_channels_last(dev, args.dims)   # the trainer's own choice
    fmt = torch.channels_last if args.dims == 2 else torch.channels_last_3d
    print(f"device {describe_device(dev)}, {started.precision}; {args.dims}D U-Net base "
          f"{meta['base_channels']} depth {meta['depth']}; patch {'x'.join(map(str, patch_t))}, "
          f"batch {batch_n}; channels-last {channels_last}; trainer losses: {args.losses}", flush=True)

    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch_n, 1) + tuple(patch_t), generator=g).to(dev)
    y = torch.randint(0, meta["classes"] + 1, (batch_n,) + tuple(patch_t), generator=g).to(dev)

    # steps per round from a quick estimate
    probe = model_from_meta(meta).to(dev)
    if channels_last:
        probe = probe.to(memory_format=fmt)
    r0 = bare_loop(probe, x, y, 3, dev, amp, channels_last)
    steps = max(5, int(r0 * args.seconds))
    bare_rates, tr_rates = [], []
    print(f"{'round':>5} {'bare steps/s':>13} {'trainer steps/s':>16} {'ratio':>7}", flush=True)
    for r in range(args.rounds):
        torch.manual_seed(r)
        m = model_from_meta(meta).to(dev)
        if channels_last:
            m = m.to(memory_format=fmt)
        b = bare_loop(m, x, y, steps, dev, amp, channels_last)
        t, _, _ = trainer_rate(img, lab, steps, **{**kw, "patch": patch_t, "batch_size": batch_n,
                                                   "base_channels": meta["base_channels"],
                                                   "depth": meta["depth"], "seed": r})
        bare_rates.append(b)
        tr_rates.append(t)
        print(f"{r + 1:>5} {b:13.2f} {t:16.2f} {t / b:7.3f}", flush=True)
    # short alternating rounds + the median of the per-round ratios: robust to load bursts
    b, t = float(np.median(bare_rates)), float(np.median(tr_rates))
    ratio = float(np.median(np.array(tr_rates) / np.array(bare_rates)))
    verdict = (f"bar: < 10%) -> {'met' if ratio > 0.9 else 'NOT met'}" if args.losses == "strokes"
               else "with the losses on the unpainted pixels; no bar)")
    print(f"median: bare {b:.2f} steps/s, trainer {t:.2f} steps/s, median per-round trainer/bare = {ratio:.3f} "
          f"(overhead {100 * (1 - ratio):.1f}%; {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
