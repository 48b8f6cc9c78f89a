"""Forward throughput of one U-Net pass vs input size and memory format, and its peak RSS.

Each (shape, format) is measured in its own subprocess so the peak RSS is clean. Used to tune
``napari_unet.core.predict`` (memory format, tile-size throughput model, ``bytes_per_voxel``).

    .venv/bin/python benchmarks/predict_speed.py --dims 3 --shapes 32x128x128 32x256x256
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import torch
from napari_unet import build_model
from napari_unet.core.predict import bytes_per_voxel, inference_copy
a = json.loads(sys.argv[1])
torch.manual_seed(0)
m = build_model(dims=a["dims"], classes=a["classes"], base_channels=a["base"], depth=a["depth"])
name = a["fmt"].split("+")[0]
fmt = {"contiguous": None, "cl": torch.channels_last, "cl3d": torch.channels_last_3d}[name]
if a["fmt"].endswith("+nofold"):  # the pre-folding runner: eval copy with BatchNorm layers
    import copy
    run = copy.deepcopy(m).eval()
else:
    run = inference_copy(m, torch.device("cpu"), False)  # BatchNorm folded, as predict does
if fmt is not None:
    run.to(memory_format=fmt)
x = torch.randn([a["batch"], 1] + a["shape"])
if fmt is not None:
    x = x.contiguous(memory_format=fmt)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
with torch.inference_mode():
    ts = []
    for i in range(a["reps"] + 1):
        t = time.perf_counter(); y = torch.softmax(run(x), 1); ts.append(time.perf_counter() - t)
        del y
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
vox = x.numel()
ts = sorted(ts[1:])
print(json.dumps({"vox": vox, "s": ts[len(ts) // 2], "mvox_s": vox / ts[len(ts) // 2] / 1e6,
                  "peak_bytes_per_voxel": peak / vox, "estimate": bytes_per_voxel(m.meta)}))
"""


def measure(dims, shape, fmt, base=32, depth=4, classes=2, batch=1, reps=2):
    arg = json.dumps(dict(dims=dims, shape=list(shape), fmt=fmt, base=base, depth=depth,
                          classes=classes, batch=batch, reps=reps))
    r = subprocess.run([sys.executable, "-c", CHILD, arg], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, default=2)
    p.add_argument("--base", type=int, default=32)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--formats", nargs="+", default=None,
                   help="contiguous, cl, cl3d; add +nofold for the unfolded BatchNorm runner")
    p.add_argument("--shapes", nargs="+", required=True, help="e.g. 256x256 or 32x128x128")
    a = p.parse_args(argv)
    fmts = a.formats or (["contiguous", "cl"] if a.dims == 2 else ["contiguous", "cl3d"])
    print(f"| shape | format | s/pass | Mvox/s | peak B/voxel | estimate B/voxel |")
    print("|---|---|---|---|---|---|")
    for s in a.shapes:
        shape = [int(v) for v in s.split("x")]
        for f in fmts:
            r = measure(a.dims, shape, f, a.base, a.depth, a.classes, a.batch, a.reps)
            print(f"| {a.batch}x{s} | {f} | {r['s']:.2f} | {r['mvox_s']:.3f} | "
                  f"{r['peak_bytes_per_voxel']:.0f} | {r['estimate']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
