"""``napari-unet predict`` for big data: lazy inputs (zarr / OME-Zarr / HDF5), ``--format
ome-zarr``, and dask.distributed (``--workers``, ``--scheduler``, ``--cluster slurm``).

Only argument wiring and printing live here; the work is in ``core.distributed``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def _chunk_arg(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    from ._cli_args import _sizes

    return _sizes(text, "--chunk", "'auto', N or ZxYxX")


def _kv(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--cluster-option must be KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    for conv in (int, float):
        try:
            return k.strip(), conv(v)
        except ValueError:
            pass
    return k.strip(), v


def add_bigdata_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("big data and clusters")
    g.add_argument("--format", choices=("tiff", "ome-zarr"), default="tiff",
                   help="tiff: <stem>_probs.tif + <stem>_labels.tif (default); ome-zarr: <stem>.ome.zarr "
                        "(probabilities at level 0, labels at labels/prediction/0)")
    g.add_argument("--ngff-version", choices=("0.4", "0.5"), default=None,
                   help="OME-NGFF version of --format ome-zarr (0.4: zarr v2, 0.5: zarr v3; default 0.5)")
    g.add_argument("--workers", type=int, default=None,
                   help="predict on a local dask cluster of N worker processes")
    g.add_argument("--scheduler", default=None, help="address of a running dask scheduler to use")
    g.add_argument("--cluster", choices=("slurm",), default=None,
                   help="submit dask workers to a batch system (needs dask-jobqueue)")
    g.add_argument("--jobs", type=int, default=None, help="--cluster: number of batch jobs (default 1)")
    g.add_argument("--cluster-option", type=_kv, action="append", default=[], metavar="KEY=VALUE",
                   help="--cluster: a dask_jobqueue.SLURMCluster argument, e.g. cores=8, memory=32GB, "
                        "queue=gpu, walltime=02:00:00 (repeatable)")
    g.add_argument("--chunk", type=_chunk_arg, default=None,
                   help="block (= output chunk) size for lazy/distributed prediction: auto, N or ZxYxX")
    if "--overwrite" not in p._option_string_actions:
        g.add_argument("--overwrite", action="store_true", help="replace outputs that napari-unet did not write")


def wants_bigdata(args) -> bool:
    """Whether ``predict`` goes through the block engine (else the in-memory TIFF path)."""
    from .core.readers import is_lazy_spec

    return bool(getattr(args, "format", "tiff") == "ome-zarr" or getattr(args, "workers", None) is not None
                or getattr(args, "scheduler", None) or getattr(args, "cluster", None)
                or any(is_lazy_spec(p) for p in args.images))


def predict_bigdata(args) -> int:
    from ._cli_report import ProgressBar
    from .core.errors import UserError
    from .core.distributed import make_job, model_ref, open_client, run_jobs
    from .core.io import read_model_meta
    from .core.readers import open_image

    instances = bool(getattr(args, "instances", False))
    if getattr(args, "measure", False):
        raise UserError("--measure is not available with --format ome-zarr, zarr/HDF5 inputs or a cluster yet")
    model_path = Path(args.model)
    if not model_path.is_file():
        raise UserError(f"model file {model_path} does not exist")
    out_dir = Path(args.out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out-dir {out_dir} exists and is not a folder")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    meta = read_model_meta(model_path)
    if instances:
        from .core.instance_outputs import foreground_index

        foreground_index(meta, args.instance_class)  # a wrong class fails before predicting
    sources = [open_image(p) for p in args.images]
    stems = [s.name for s in sources]
    dup = {s for s in stems if stems.count(s) > 1}
    if dup:
        raise UserError(f"several images share the name {sorted(dup)[0]!r}; their outputs would overwrite each other")
    overwrite = bool(getattr(args, "overwrite", False))
    if args.channel_axis is None:
        from ._cli_args import predict_channel_axis

        args.channel_axis = predict_channel_axis([tuple(s.shape) for s in sources], meta, list(args.images))
    if instances:
        from ._cli_args import check_instance_options

        check_instance_options(args, [Path(s.name) for s in sources], [tuple(s.shape) for s in sources])
    jobs = [make_job(meta, s, out_dir, fmt=args.format, channel_axis=args.channel_axis,
                     chunks=args.chunk, tile=args.tile, batch_size=args.batch_size, device=args.device,
                     threshold=args.threshold, overwrite=overwrite, workers=args.workers or 1)
            for s in sources]
    if instances and args.format == "tiff":  # the policy of the other outputs (make_job checked those)
        from .core.outputs import check_output

        for s, job in zip(sources, jobs):
            check_output(out_dir / f"{job.stem}_instances.tif", inputs=[s.path] if s.path else [],
                         overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open_client(workers=args.workers, scheduler=args.scheduler, cluster=args.cluster,
                     jobs=args.jobs, cluster_options=dict(args.cluster_option)) as (client, threads):
        ref = model_ref(model_path, threads)
        where = (f"{len(client.scheduler_info()['workers'])} dask workers" if client is not None
                 else "this process")
        print(f"model {model_path.name}: {meta['dims']}D, {meta['classes']} classes; "
              f"{sum(len(j.blocks()) for j in jobs)} blocks on {where}", file=sys.stderr)
        bar = None if args.quiet else ProgressBar("predict")
        progress = (lambda d, n: bar.update(d, n, f"blocks {d}/{n}")) if bar else None
        outs = run_jobs(ref, jobs, meta, client=client, version=args.ngff_version, progress=progress)
        if bar:
            bar.close()
    for s, job, paths in zip(sources, jobs, outs):
        print(f"{Path(s.path).name if s.path else s.name}: wrote {' and '.join(paths)}")
        if instances:
            print(f"{Path(s.path).name if s.path else s.name}: wrote {_instances(args, meta, job, paths)}")
    print(f"done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


def _instances(args, meta: dict, job, paths: list) -> str:
    """``--instances``: objects of the foreground class from the probabilities just written,
    into the OME-Zarr store (``labels/instances/0``) or ``<stem>_instances.tif``."""
    kw = dict(class_value=args.instance_class, min_size=args.min_size, seed_distance=args.seed_distance,
              spacing=args.spacing)
    if job.fmt == "ome-zarr":
        from .core.ngff_instances import write_store_instances

        where, n = write_store_instances(paths[0], meta, **kw)
    else:
        from .core.instance_outputs import write_instances

        where, n = write_instances(paths[0], meta, Path(job.final) / f"{job.stem}_instances.tif", **kw)
    return f"{where} ({n} objects)"
