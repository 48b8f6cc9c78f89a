"""Distributed prediction on dask.distributed (named so as not to shadow the distributed package): --workers 1 against --workers 2, and the overhead
of the block-wise path against in-memory ``predict``, side by side in one run.

    .venv/bin/python benchmarks/distributed_predict.py [--quick] [--json FILE]

Two cases: a 3D stack in a zarr store (3D model, base 16, depth 3) and 16 TIFF files of 2D
images (2D model, base 32, depth 4). Arms per case, each timed after a warm-up of the same
arm: in-memory ``predict`` (model loaded once, results kept in RAM, nothing written), the
block engine in this process (no cluster, writes the outputs), and a LocalCluster of 1 and of
2 worker processes (threads per worker = cores / workers; cluster start-up reported apart,
outputs written, resumable). Peak memory per worker is its peak RSS (ru_maxrss). Timings are
reported, never asserted; the machine may be shared, so compare ratios from one run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller inputs")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()

    import numpy as np
    import tifffile
    import torch
    import zarr

    from napari_unet import build_model, predict, save_model
    from napari_unet.core import distributed as dist
    from napari_unet.core.io import read_model_meta
    from napari_unet.core.predict import probabilities_to_labels

    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="nu-bench-dist-"))
    rng = np.random.default_rng(0)
    shape3 = (16, 128, 192) if args.quick else (48, 256, 384)
    chunk3 = (shape3[0], shape3[1], shape3[2] // 2)
    n_files, shape2 = (16, (128, 128)) if args.quick else (16, (256, 256))
    torch.manual_seed(0)
    m3 = build_model(dims=3, classes=2, base_channels=16, depth=3)
    m2 = build_model(dims=2, classes=2, base_channels=32, depth=4)
    save_model(m3, tmp / "m3.pt")
    save_model(m2, tmp / "m2.pt")
    vol = (rng.random(shape3) * 4000).astype(np.uint16)
    z = zarr.create_array(tmp / "vol.zarr", shape=shape3, chunks=(8, 64, 64), dtype=vol.dtype)
    z[:] = vol
    files = []
    for i in range(n_files):
        f = tmp / f"img{i:02d}.tif"
        tifffile.imwrite(f, (rng.random(shape2) * 255).astype(np.uint8))
        files.append(f)

    cases = {
        "3D stack": dict(model=m3, path=tmp / "m3.pt", inputs=[tmp / "vol.zarr"], chunks=chunk3,
                         fmt="ome-zarr", voxels=int(np.prod(shape3)),
                         label=f"{'x'.join(map(str, shape3))} uint16 zarr, blocks {'x'.join(map(str, chunk3))}"),
        f"{n_files} files": dict(model=m2, path=tmp / "m2.pt", inputs=files, chunks="auto", fmt="tiff",
                                 voxels=n_files * int(np.prod(shape2)),
                                 label=f"{n_files} x {'x'.join(map(str, shape2))} uint8 TIFF"),
    }

    def in_memory(case):
        torch.set_num_threads(cores)
        for f in case["inputs"]:
            img = vol if str(f).endswith(".zarr") else tifffile.imread(f)
            probabilities_to_labels(predict(case["model"], img, device="cpu"))

    def blockwise(case, client, threads):
        out = tmp / "out"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        meta = read_model_meta(case["path"])
        jobs = [dist.make_job(meta, f, out, fmt=case["fmt"], chunks=case["chunks"], device="cpu")
                for f in case["inputs"]]
        dist.run_jobs(dist.model_ref(case["path"], threads), jobs, meta, client=client)

    def timed(fn, reps=1):
        fn()  # warm-up (model load on the workers, torch kernels)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    results: dict[str, dict] = {c: {} for c in cases}
    for name, case in cases.items():
        results[name]["in-memory predict"] = {"s": timed(lambda: in_memory(case))}
        torch.set_num_threads(cores)
        results[name]["blocks, this process"] = {"s": timed(lambda: blockwise(case, None, None))}
    for workers in (1, 2):
        t0 = time.perf_counter()
        with dist.open_client(workers=workers) as (client, threads):
            start = time.perf_counter() - t0
            for name, case in cases.items():
                s = timed(lambda: blockwise(case, client, threads))
                results[name][f"--workers {workers}"] = {"s": s, "startup_s": start}
            peaks = client.run(_peak_rss_mib)
            for name in cases:
                results[name][f"--workers {workers}"]["peak_rss_mib"] = max(peaks.values())
    shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nDistributed prediction, {cores} CPU cores (threads per worker = cores / workers)\n")
    for name, case in cases.items():
        r = results[name]
        base = r["in-memory predict"]["s"]
        w1 = r["--workers 1"]["s"]
        print(f"{name}: {case['label']}\n")
        print("| arm | time (s) | Mvoxel/s | vs in-memory | vs --workers 1 | peak RSS / worker (MiB) | cluster start (s) |")
        print("|---|---|---|---|---|---|---|")
        for arm, v in r.items():
            print(f"| {arm} | {v['s']:.2f} | {case['voxels'] / v['s'] / 1e6:.3f} | {v['s'] / base:.2f}x | "
                  f"{w1 / v['s']:.2f}x | {v.get('peak_rss_mib', float('nan')):.0f} | {v.get('startup_s', float('nan')):.1f} |")
        print()
    w2 = results["3D stack"]["--workers 2"]["s"]
    per_core = cases["3D stack"]["voxels"] / w2 / cores
    print(f"3D per-core throughput on the 2-worker cluster: {per_core / 1e6:.3f} Mvoxel/s/core")
    if args.json:
        Path(args.json).write_text(json.dumps({"cores": cores, "results": results,
                                               "per_core_voxels_per_s_3d": per_core}, indent=2))


if __name__ == "__main__":
    main()
