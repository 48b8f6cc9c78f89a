"""napari-unet benchmarks: tiled inference vs MONAI, memory, overlap redundancy, training, GPU.

    make bench                  # full run (~27 min on 2 idle CPU cores), writes docs/benchmarks.md
    make bench-quick            # smaller sizes and 3 repetitions (~6 min), same tables
    .venv/bin/python benchmarks/bench.py [--quick] [--out docs/benchmarks.md] [--only speed,memory,...]

MONAI is only needed here (the ``bench`` extra), never at runtime. Every timing is interleaved
A/B (ours, then each MONAI arm, repeated) after one warm-up call of every arm; the tables give
medians. Peak memory in the speed table is the growth of anonymous RSS during the call (sampled
every 20 ms, heap trimmed before each call); the memory table measures each method in its own
subprocess. Nothing here is a test: timings are reported, never asserted.
"""
from __future__ import annotations

import argparse
import itertools
from collections import Counter
import datetime
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from _common import (PeakSampler, machine, median, monai_redundancy, our_tile_input,  # noqa: E402
                     ours_redundancy, test_image)

SECTIONS = ("speed", "redundancy", "memory", "training", "gpu")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- cases

def speed_cases(quick: bool):
    """(label, dims, base, depth, classes, shape, reps, monai roi)."""
    reps = 3 if quick else 5
    cases = [
        ("2D 1024x1024, base 32, 2 classes", 2, 32, 4, 2, (1024, 1024), reps, 256),
        ("2D 1024x1024, base 32, 8 classes", 2, 32, 4, 8, (1024, 1024), reps, 256),
    ]
    if not quick:
        cases.append(("2D 2048x2048, base 32, 2 classes", 2, 32, 4, 2, (2048, 2048), reps, 256))
    # 3D: the default 3D geometry (depth 4: grid 16, halo 112) with base 8 instead of 32 (1/16
    # of the FLOPs) so that five interleaved repetitions of four arms fit the time budget; the
    # default base-32 network is measured once below (full run only).
    cases += [
        ("3D 32x512x512, base 8*, 2 classes", 3, 8, 4, 2, (32, 512, 512), reps, 96),
        ("3D 32x512x512, base 8*, 8 classes", 3, 8, 4, 8, (32, 512, 512), reps, 96),
    ]
    if quick:
        cases = [c[:5] + ((32, 256, 256),) + c[6:] if c[1] == 3 else c for c in cases]
        cases = [(c[0].replace("512x512", "256x256"),) + c[1:] for c in cases]
    return cases


def build(dims, base, depth, classes):
    from napari_unet import build_model

    torch.manual_seed(0)
    return build_model(dims=dims, classes=classes, base_channels=base, depth=depth).eval()


def normalised_tensor(img, meta):
    from napari_unet.core.normalize import apply_stats, percentile_stats

    norm = meta["normalization"]
    stats = percentile_stats(img[None], norm["low"], norm["high"], channel_axis=0)
    return torch.from_numpy(apply_stats(img[None], stats))[None]  # (1, 1, *spatial)


def monai_arm(model, x, roi, mode):
    from monai.inferers import sliding_window_inference

    roi = tuple(roi)

    def run():
        with torch.inference_mode():
            return sliding_window_inference(x, roi, 4, lambda t: torch.softmax(model(t), 1),
                                            overlap=0.25, mode=mode)[0].numpy()
    return run


# ----------------------------------------------------------------------------- speed

def bench_speed(quick: bool, rows: list, redundancy_rows: list, on_case=lambda: None):
    from napari_unet import predict
    from napari_unet.core.predict import choose_tile, memory_budget

    cpu = torch.device("cpu")
    for label, dims, base, depth, classes, shape, reps, roi_n in speed_cases(quick):
        log(f"speed: {label}")
        m = build(dims, base, depth, classes)
        meta = m.meta
        img = test_image(shape)
        x = normalised_tensor(img, meta)
        cores = choose_tile(shape, meta, memory_budget(cpu, dims), 4)
        tile_in = tuple(min(t, s) for t, s in zip(our_tile_input(shape, cores, meta), shape))
        roi = (roi_n,) * dims
        arms = {
            "ours (tile=auto)": lambda: predict(m, img, device="cpu"),
            f"MONAI roi {roi_n}, constant": monai_arm(m, x, roi, "constant"),
            f"MONAI roi {roi_n}, gaussian": monai_arm(m, x, roi, "gaussian"),
            f"MONAI roi {'x'.join(map(str, tile_in))} (our tile), gaussian": monai_arm(m, x, tile_in, "gaussian"),
        }
        whole = predict(m, img, tile=None, device="cpu")
        diffs, times, peaks = {}, {k: [] for k in arms}, {k: [] for k in arms}
        for k, f in arms.items():  # warm-up, and each method's result against the whole image
            diffs[k] = float(np.abs(f() - whole).max())
        del whole
        for r in range(reps):
            for k, f in arms.items():
                with PeakSampler() as ps:
                    t = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t)
                peaks[k].append(ps.peak)
            log(f"  rep {r + 1}/{reps}: " + ", ".join(f"{v[-1]:.1f}s" for v in times.values()))
        ours = times["ours (tile=auto)"]
        nvox = math.prod(shape)
        for k in arms:
            ratio = median([a / b for a, b in zip(ours, times[k])])
            rows.append([label, k, f"{median(times[k]):.2f}", f"{ratio:.2f}",
                         f"{nvox / median(times[k]) / 1e6:.2f}", f"{max(peaks[k]) / 2**20:.0f}",
                         f"{diffs[k]:.1e}"])
        red, ntiles = ours_redundancy(shape, cores, meta)
        redundancy_rows.append([label, f"{red:.2f} ({ntiles} tiles of core {'x'.join(map(str, cores))}, halo {meta['halo']})",
                                f"{monai_redundancy(shape, roi, 0.25):.2f}",
                                f"{monai_redundancy(shape, tile_in, 0.25):.2f}"])
        on_case()


def bench_3d_default(rows: list, redundancy_rows: list):
    """One run each (no repetitions: ~1 min ours, several minutes MONAI) of the default
    base-32 3D network, ours vs MONAI gaussian roi 96."""
    from napari_unet import predict
    from napari_unet.core.predict import choose_tile, memory_budget

    label, shape = "3D 32x512x512, base 32 (default), 2 classes, 1 run", (32, 512, 512)
    log(f"speed: {label}")
    m = build(3, 32, 4, 2)
    img = test_image(shape)
    x = normalised_tensor(img, m.meta)
    cores = choose_tile(shape, m.meta, memory_budget(torch.device("cpu"), 3), 4)
    arms = {"ours (tile=auto)": lambda: predict(m, img, device="cpu"),
            "MONAI roi 96, gaussian": monai_arm(m, x, (96,) * 3, "gaussian")}
    res = {}
    for k, f in arms.items():
        with PeakSampler() as ps:
            t = time.perf_counter()
            out = f()
            s = time.perf_counter() - t
        res[k] = (s, ps.peak, out)  # ps.peak is set when the sampler exits
        log(f"  {k}: {res[k][0]:.1f}s")
    ours_out = res["ours (tile=auto)"][2]
    nvox = math.prod(shape)
    for k, (s, peak, out) in res.items():
        d = float(np.abs(out - ours_out).max())
        rows.append([label, k, f"{s:.1f}", f"{res['ours (tile=auto)'][0] / s:.2f}",
                     f"{nvox / s / 1e6:.2f}", f"{peak / 2**20:.0f}",
                     "reference" if k.startswith("ours") else f"{d:.1e} (vs ours)"])
    red, ntiles = ours_redundancy(shape, cores, m.meta)
    redundancy_rows.append([label, f"{red:.2f} ({ntiles} tiles of core {'x'.join(map(str, cores))}, halo {m.meta['halo']})",
                            f"{monai_redundancy(shape, (96,) * 3, 0.25):.2f}", ""])


# ----------------------------------------------------------------------------- memory

MEM_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np, torch
from _common import PeakSampler
from napari_unet import build_model, predict
a = json.loads(sys.argv[1])
torch.manual_seed(0)
m = build_model(dims=2, classes=2, base_channels=a["base"], depth=a["depth"]).eval()
if a["input"] == "ram":
    img = np.random.default_rng(0).gamma(2.0, 50.0, a["shape"]).astype(np.float32)
else:
    img = np.load(a["input"], mmap_mode="r")
out = None
if a["out"]:
    out = np.lib.format.open_memmap(a["out"], mode="w+", dtype=np.float32, shape=(2,) + tuple(a["shape"]))
if a["method"] == "monai":
    from monai.inferers import sliding_window_inference
    from napari_unet.core.normalize import apply_stats, percentile_stats
with PeakSampler() as ps:
    t = time.perf_counter()
    if a["method"] == "ours":
        p = predict(m, img, device="cpu", out=out)
    else:  # MONAI slice by slice into a preallocated output (its most frugal use on a stack)
        stats = percentile_stats(img[None], 1.0, 99.8, channel_axis=0)
        p = out if out is not None else np.empty((2,) + tuple(a["shape"]), np.float32)
        with torch.inference_mode():
            for z in range(img.shape[0]):
                x = torch.from_numpy(apply_stats(np.asarray(img[z])[None], stats))[None]
                p[:, z] = sliding_window_inference(x, (256, 256), 4, lambda t: torch.softmax(m(t), 1),
                                                   overlap=0.25, mode="gaussian")[0].numpy()
    s = time.perf_counter() - t
hwm = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"s": s, "peak_anon": ps.peak, "maxrss": hwm[0] if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def bench_memory(quick: bool, rows: list):
    base, depth = 8, 3  # the network of the memory-bounded check (fast; memory is about tiling)
    cases = [("24x1024x1024 float32 in RAM", (24, 1024, 1024), "ram", False)]
    # full: float32 input + probabilities (1.5 GiB) exceed the default 2D CPU budget (1.5 GiB);
    # quick: the same memmap path on a smaller stack
    big = (12, 2048, 2048) if quick else (32, 2048, 2048)
    cases.append((f"{'x'.join(map(str, big))} uint16 memmap in, float32 memmap out", big, "memmap", True))
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        for label, shape, kind, to_memmap in cases:
            inp = "ram"
            if kind == "memmap":
                inp = os.path.join(d, "in.npy")
                mm = np.lib.format.open_memmap(inp, mode="w+", dtype=np.uint16, shape=shape)
                rng = np.random.default_rng(0)
                for z in range(shape[0]):
                    mm[z] = rng.gamma(2.0, 50.0, shape[1:]).astype(np.uint16)
                mm.flush()
                del mm
            in_f32 = math.prod(shape) * 4
            out_bytes = 2 * in_f32
            for method in ("ours", "monai"):
                log(f"memory: {label}, {method}")
                arg = dict(base=base, depth=depth, shape=list(shape), input=inp, method=method,
                           out=os.path.join(d, "out.npy") if to_memmap else None)
                r = subprocess.run([sys.executable, "-c", MEM_CHILD, json.dumps(arg), str(HERE)],
                                   capture_output=True, text=True, cwd=ROOT)
                if r.returncode:
                    rows.append([label, method, "failed", r.stderr.strip().splitlines()[-1][:80], "", ""])
                    continue
                res = json.loads(r.stdout.strip().splitlines()[-1])
                rows.append([label, "ours (tile=auto)" if method == "ours" else "MONAI roi 256 gaussian, per slice",
                             f"{res['s']:.1f}", f"{res['peak_anon'] / 2**20:.0f}", f"{res['maxrss'] / 2**20:.0f}",
                             f"{in_f32 / 2**20:.0f} / {out_bytes / 2**20:.0f}"])
                if to_memmap:
                    os.remove(arg["out"])


# ----------------------------------------------------------------------------- training

def bench_training(quick: bool, device: str = "cpu", env: dict | None = None) -> str:
    # HOOK: benchmarks/train_speed.py is written by another engineer (training steps/s of
    # iter_train vs a bare PyTorch loop). If it is present it is run here and its output
    # included verbatim; if it is absent the section says so.
    script = HERE / "train_speed.py"
    if not script.exists():
        return "benchmarks/train_speed.py is not present: training figures not measured.\n"
    args = [sys.executable, str(script), "--device", device]
    try:
        helptext = subprocess.run(args[:2] + ["--help"], capture_output=True, text=True, timeout=120).stdout
    except subprocess.TimeoutExpired:
        helptext = ""
    if quick and "--seconds" in helptext:
        args += ["--seconds", "6"]
    log("training: " + " ".join(args[1:]) + (f" with {env}" if env else ""))
    r = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if r.returncode:
        return f"benchmarks/train_speed.py failed (exit {r.returncode}):\n\n```\n{r.stderr[-1500:]}\n```\n"
    cmd = "python benchmarks/train_speed.py " + " ".join(args[2:])
    if env:
        cmd = " ".join(f"{k}={v}" for k, v in env.items()) + " " + cmd
    return f"`{cmd}`:\n\n```\n{r.stdout.strip()}\n```\n"


# ----------------------------------------------------------------------------- GPU

# Dense bf16 tensor-core peaks (TFLOP/s) from vendor data sheets; override with
# NAPARI_UNET_PEAK_TFLOPS for other GPUs.
BF16_PEAK_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
                    "H100": 756.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
                    "RTX 4090": 165.0, "RTX 3090": 71.0}


def bf16_peak(name: str) -> float | None:
    env = os.environ.get("NAPARI_UNET_PEAK_TFLOPS")
    if env:
        return float(env)
    for k, v in BF16_PEAK_TFLOPS.items():
        if k in name:
            return v
    return None


def forward_flops(model, shape) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros((1, 1) + tuple(shape), device=next(model.parameters()).device)
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        model(x)
    return fc.get_total_flops()


def bench_gpu(quick: bool) -> str:
    """Not run on the tuning machine (no GPU there): written to be correct, unmeasured."""
    if not torch.cuda.is_available():
        return "no CUDA GPU available: GPU figures not measured\n"
    from napari_unet import predict
    from napari_unet.core.predict import choose_tile, memory_budget, plan_axis

    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(dev)
    peak = bf16_peak(name)
    reps = 3 if quick else 5
    lines = [f"GPU: {name} (bf16 dense peak {peak or 'unknown'} TFLOP/s; FLOPs counted with "
             "torch.utils.flop_counter on one tile, times the tiles, over the median time)\n",
             "| case | method | median s | Mpx/s | TFLOP/s | share of bf16 peak | peak GPU MiB |",
             "|---|---|---|---|---|---|---|"]
    for label, dims, shape, roi in (("2D 4096x4096, base 32", 2, (4096, 4096), 256),
                                    ("3D 64x512x512, base 32", 3, (64, 512, 512), 96)):
        m = build(dims, 32, 4, 2)
        img = test_image(shape)
        x = normalised_tensor(img, m.meta).to(dev)
        gm = m.to(dev)
        cores = choose_tile(shape, m.meta, memory_budget(dev, dims), 2)
        plans = [plan_axis(s, c, m.meta["halo"], m.meta["grid"]) for s, c in zip(shape, cores)]
        shapes = Counter(tuple(a.padded for a in combo) for combo in itertools.product(*plans))
        ours_flops = sum(forward_flops(gm, sh) * n for sh, n in shapes.items())
        from monai.inferers import sliding_window_inference

        n_monai = monai_redundancy(shape, (roi,) * dims, 0.25) * math.prod(shape) / roi ** dims
        monai_flops = forward_flops(gm, (roi,) * dims) * n_monai

        def ours():
            return predict(m, img, device="cuda")

        def monai():
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
                r = sliding_window_inference(x, (roi,) * dims, 4, lambda t: torch.softmax(gm(t).float(), 1),
                                             overlap=0.25, mode="gaussian")
            return r[0].cpu().numpy()
        arms = {"ours (tile=auto, bf16)": (ours, ours_flops), f"MONAI roi {roi} gaussian (bf16 autocast)": (monai, monai_flops)}
        times = {k: [] for k in arms}
        for k, (f, _) in arms.items():
            f()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        mem = {}
        for _ in range(reps):
            for k, (f, _) in arms.items():
                torch.cuda.reset_peak_memory_stats()
                torch.cuda.synchronize()
                t = time.perf_counter()
                f()
                torch.cuda.synchronize()
                times[k].append(time.perf_counter() - t)
                mem[k] = torch.cuda.max_memory_allocated() / 2**20
        for k, (f, flops) in arms.items():
            s = median(times[k])
            tf = flops / s / 1e12
            share = f"{tf / peak:.1%}" if peak else "n/a"
            lines.append(f"| {label} | {k} | {s:.2f} | {math.prod(shape) / s / 1e6:.1f} | {tf:.1f} | {share} | {mem[k]:.0f} |")
        m.to("cpu")
    lines.append("")
    lines.append(bench_training_gpu())
    if (HERE / "train_speed.py").exists():
        lines.append("Trainer vs bare loop on the GPU, with AMP (default) and without:\n")
        lines.append(bench_training(quick, "cuda"))
        lines.append(bench_training(quick, "cuda", {"NAPARI_UNET_NO_AMP": "1"}))
    return "\n".join(lines) + "\n"


def bench_training_gpu() -> str:
    """Training steps/s with and without AMP, bare loop on the default 2D network (GPU only)."""
    dev = torch.device("cuda")
    out = ["| training (2D base 32, batch 8 of 256x256) | steps/s |", "|---|---|"]
    for amp in (False, True):
        m = build(2, 32, 4, 2).to(dev).train().to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(m.parameters(), 1e-3)
        x = torch.randn(8, 1, 256, 256, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 2, (8, 256, 256), device=dev)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(m(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        for _ in range(5):
            step()
        torch.cuda.synchronize()
        t = time.perf_counter()
        n = 30
        for _ in range(n):
            step()
        torch.cuda.synchronize()
        out.append(f"| {'bf16 autocast' if amp else 'fp32 (TF32 off)'} | {n / (time.perf_counter() - t):.1f} |")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- report

def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description="napari-unet benchmarks (prints tables, writes markdown)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, 3 repetitions (~6 min)")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    a = p.parse_args(argv)
    only = set(a.only.split(","))
    try:
        import monai  # noqa: F401
    except ImportError:
        sys.exit("MONAI is needed for the benchmarks: pip install -e '.[bench]' (or run it with make bench)")
    t0 = time.time()
    parts = [f"# Benchmarks\n\nGenerated by `make bench{'-quick' if a.quick else ''}` "
             f"(`benchmarks/bench.py{' --quick' if a.quick else ''}`) on "
             f"{datetime.date.today().isoformat()}.\n\n**Machine:** {machine()}.\n",
             "Timings are interleaved A/B after a warm-up of every arm; medians"
             f" of {3 if a.quick else 5} repetitions. The machine is shared and noisy: compare the"
             " ratios (taken within one repetition), not the absolute seconds across runs. \"ratio\" ="
             " our time / that arm's time (median of per-repetition ratios; < 1 means we are faster)."
             " \"max diff\" = max |probability - whole-image (tile=None) result|. \"peak MiB\" = growth"
             " of anonymous RSS during the call. MONAI arms use the same network and weights (eval"
             " mode, as a MONAI user would call it) on the same image normalised the same way;"
             " sw_batch_size 4, overlap 0.25.\n"]
    speed_rows, red_rows = [], []
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save_partial(extra=()):
        # a long run keeps what it has measured so far if it is stopped or a later section fails
        out.write_text("\n".join(parts + list(extra)) + "\n\n*(partial: the run is still going or was stopped)*\n")

    speed_table = ["case", "method", "median s", "ratio ours/this", "Mvox/s", "peak MiB", "max diff"]
    if "speed" in only:
        bench_speed(a.quick, speed_rows, red_rows,
                    on_case=lambda: save_partial(["## Tiled inference vs MONAI (CPU)\n", table(speed_table, speed_rows)]))
        if not a.quick:
            bench_3d_default(speed_rows, red_rows)
        parts.append("## Tiled inference vs MONAI sliding_window_inference (CPU)\n")
        parts.append(table(speed_table, speed_rows))
        parts.append("\\* base 8 instead of the default 32 (1/16 of the FLOPs) to keep the run "
                     "short; same depth (4), so the same grid (16) and halo (112) as the default 3D "
                     "model. The default base-32 3D network is timed once (full run only).\n")
        save_partial()
    if "redundancy" in only and red_rows:
        parts.append("## Overlap redundancy: voxels computed / voxels output\n")
        parts.append(table(["case", "ours (tile=auto)", "MONAI roi 256/96, overlap 0.25",
                            "MONAI with our tile, overlap 0.25"], red_rows))
        parts.append("MONAI pads an axis shorter than its roi up to the roi (Z 32 -> 96 for roi 96), "
                     "and overlaps windows by 25% of the roi; ours computes each core plus a halo of "
                     "at least the receptive field (clipped at the image border).\n")
    if "training" in only:
        parts.append("## Training speed (CPU)\n")
        parts.append(bench_training(a.quick))
        save_partial()
    if "memory" in only:
        mem_rows = []
        bench_memory(a.quick, mem_rows)
        parts.append("## Memory (CPU, each run in its own subprocess)\n")
        parts.append(table(["stack (2D model base 8, depth 3)", "method", "s", "peak anon RSS growth MiB",
                            "process peak RSS (VmHWM) MiB", "input f32 / probs MiB"], mem_rows))
        parts.append("\"anon RSS growth\" excludes the pages of memory-mapped files (they are page "
                     "cache the OS can drop); \"process peak RSS\" includes them and the input array.\n")
        save_partial()
    if "gpu" in only:
        parts.append("## GPU\n")
        parts.append(bench_gpu(a.quick))
    parts.append(f"\nTotal benchmark time: {(time.time() - t0) / 60:.1f} min.\n")
    text = "\n".join(parts)
    print(text)
    out.write_text(text)
    log(f"wrote {a.out}")


if __name__ == "__main__":
    main()
