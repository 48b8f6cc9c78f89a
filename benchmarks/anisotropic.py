"""Isotropic against per-axis pooling on an anisotropic stack: what the schedule changes.

For each model (the CPU default 3D architecture and a wider one), built isotropic and with
the voxel size: the pooling per axis, the per-axis halo, the tiles ``tile="auto"`` picks on this
machine for a large stack and the voxels computed per voxel output there ("redundancy"), the time of one ``predict`` on
the CPU (median of ``--repeat``), and the training patch the default picks (``train``'s set-up).

    python benchmarks/anisotropic.py [--shape 24x256x256] [--spacing 3,1,1] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="24x256x256")
    ap.add_argument("--spacing", default="3,1,1")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--big", default="64x2048x2048", help="stack for the tiling columns only (not predicted)")
    ap.add_argument("--models", default="8x3,24x3", help="base_channelsxdepth, comma-separated")
    args = ap.parse_args()
    import torch

    from _common import machine, ours_redundancy, test_image
    from napari_unet import build_model, predict
    from napari_unet.core.pooling import anisotropic_patch, axis_grid_halo, describe_pooling
    from napari_unet.core.predict import choose_tile, memory_budget
    from napari_unet.core.train import default_patch_batch

    shape = tuple(int(v) for v in args.shape.split("x"))
    big = tuple(int(v) for v in args.big.split("x"))
    spacing = tuple(float(v) for v in args.spacing.split(","))
    img = test_image(shape)
    cpu = torch.device("cpu")
    print(f"# {machine()}")
    print(f"# stack {args.shape}, voxel {args.spacing}; predict on the CPU, tile='auto', "
          f"median of {args.repeat}")
    print(f"# auto tile / redundancy (voxels computed per voxel output) for a {args.big} stack, "
          "this machine's CPU budget")
    print("| model | pooling | halo (Z,Y,X) | auto tile | redundancy | predict (s) | default train patch (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.models.split(","):
        base, depth = (int(v) for v in spec.split("x"))
        for sp in (None, spacing):
            torch.manual_seed(0)
            m = build_model(3, 1, 2, base, depth, spacing=sp)
            grids, halos = axis_grid_halo(m.meta, 3)
            cores = choose_tile(big, m.meta, memory_budget(cpu, 3), 4)
            red, _ = ours_redundancy(big, cores, m.meta)
            predict(m, img[:8, :64, :64], device="cpu")  # warm-up
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                predict(m, img, device="cpu")
                times.append(time.perf_counter() - t)
            patch = anisotropic_patch(default_patch_batch(cpu, 3)[0], sp, grids)
            print(f"| base {base}, depth {depth} | {describe_pooling(m.meta) or 'isotropic'} | "
                  f"{','.join(map(str, halos))} | {'x'.join(map(str, cores))} | {red:.2f} | "
                  f"{statistics.median(times):.2f} | {'x'.join(map(str, patch))} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
