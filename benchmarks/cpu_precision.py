"""Training on a CPU: fp32 against bf16 autocast, side by side in one run.

Since the forty-fourth session the trainer trains in bf16 on a CPU with Intel AMX
(``napari_unet.core.device.autocast_dtype``; ``NAPARI_UNET_CPU_BF16=0`` turns it off, ``=1``
forces it elsewhere). This script trains the same painted image with the trainer's CPU
defaults in either precision; short rounds alternate (fp32, bf16, fp32, ...) so that load from
other processes hits both alike. Each round's rate counts the steps after the first one (set-up,
the first step's one-off costs and the run's end are left out, as in benchmarks/train_speed.py). Prints each pair and the median of the ratios.
Where the CPU has no AMX, bf16 is forced for the measurement and will likely be slower: that is
why it is off there. What bf16 does to quality is measured at fixed steps with
``benchmarks/quality_diagnose.py`` (docs/quality.md).

Usage::

    python benchmarks/cpu_precision.py                     # 2D, BBBC039 nuclei, 3 pairs
    python benchmarks/cpu_precision.py --dims 3            # the synthetic stack
    python benchmarks/cpu_precision.py --steps 60 --rounds 5 --threads 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_round_arguments, machine, painted_case, trainer_rate  # noqa: E402


def rate(img, strokes, dims: int, steps: int, bf16: bool) -> tuple[float, str]:
    os.environ["NAPARI_UNET_CPU_BF16"] = "1" if bf16 else "0"
    r, started, _ = trainer_rate(img, strokes, steps, dims=dims, device="cpu", seed=0)
    return r, started.precision


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", type=int, default=2, choices=(2, 3),
                    help="2: BBBC039 nuclei, lines-m4; 3: the synthetic stack, planes-m4")
    add_round_arguments(ap, 60, ROOT.parent / "shared" / "data" / "real")
    a = ap.parse_args(argv)
    import torch

    from napari_unet.core.device import cpu_has_amx

    os.environ["NAPARI_UNET_NO_THREAD_TUNING"] = "1"   # both arms at the same thread count
    torch.set_num_threads(a.threads)
    name, style = ("bbbc039", "lines-m4") if a.dims == 2 else ("synth3d", "planes-m4")
    im, strokes = painted_case(name, style, a.data)
    print(machine())
    print(f"AMX: {'yes (bf16 is the default here)' if cpu_has_amx() else 'no (bf16 is off by default here; forced for this measurement)'}")
    print(f"{name} {im.img.shape}, {a.dims}D, {a.steps} steps a round, {a.threads} threads")
    ratios = []
    for r in range(a.rounds):
        fp32, p0 = rate(im.img, strokes, a.dims, a.steps, False)
        bf16, p1 = rate(im.img, strokes, a.dims, a.steps, True)
        ratios.append(bf16 / fp32)
        print(f"pair {r}: {p0} {fp32:.2f} steps/s, {p1} {bf16:.2f} steps/s, ratio {ratios[-1]:.2f}", flush=True)
    print(f"bf16 / fp32, training steps per second, median of {a.rounds}: {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
