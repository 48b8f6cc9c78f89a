"""Block-wise prediction into a zarr store: in this process, or on a dask.distributed cluster.

Blocks are the output chunks, on the model's pooling grid. Each block reads its core plus a halo
(the model's receptive field, as in :mod:`.predict`'s tiling) from the input store, normalises
it with the statistics of the WHOLE image (``normalize.percentile_stats``, computed once, as
in-memory ``predict`` does), predicts it with ``predict.predict`` and writes the core into its
own chunk of the probabilities and of the labels (so no locks), then a done-marker. A run that
was killed resumes: blocks with a marker are skipped. Outputs are finished in a hidden
``.partial`` store and renamed (OME-Zarr) or converted (TIFF) at the end.

The model is loaded once per worker process (cached by path and checksum). dask.distributed
(and dask-jobqueue for ``cluster="slurm"``) are imported only when a cluster is asked for.
"""
from __future__ import annotations

import hashlib
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .errors import UserError
from .readers import ImageSource, PixelSize, open_image
from .block_store import (DONE_DIR, _arrays, check_store_output, finalize,  # noqa: F401
                          prepare_store)

BLOCK_VOXELS = 1 << 22  # default block (chunk) size: ~4 M voxels
SMALL_IMAGE_BYTES = 64 << 20  # statistics of images up to this size are computed without dask
_MODELS: dict[tuple[str, str], Any] = {}  # per-process model cache (a dask worker keeps its own)


@dataclass(frozen=True)
class ModelRef:
    """A model file named by path and content checksum (the worker-side cache key)."""

    path: str
    sha256: str
    threads: int | None = None  # torch threads in a worker (None: leave torch's default)


def model_ref(path: str | os.PathLike, threads: int | None = None) -> ModelRef:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for part in iter(lambda: f.read(1 << 20), b""):
            h.update(part)
    return ModelRef(str(Path(path).resolve()), h.hexdigest(), threads)


def cached_model(ref: ModelRef, device: Any = "cpu"):
    """The model of ``ref`` as an inference copy for ``device`` (BatchNorm folded), loaded and
    prepared once per process: ``predict`` uses it as is instead of copying it per block."""
    from .device import resolve_device

    dev = resolve_device(device)
    key = (ref.path, ref.sha256, str(dev))
    if key not in _MODELS:
        from .io import load_model
        from .predict import _use_channels_last, inference_copy

        if ref.threads:
            import torch

            torch.set_num_threads(int(ref.threads))
        _MODELS.clear()  # one model at a time per worker
        model = load_model(ref.path)
        _MODELS[key] = inference_copy(model, dev, _use_channels_last(dev, model.meta["dims"]))
    return _MODELS[key]


@dataclass
class Job:
    """One image to predict into one store."""

    source: ImageSource
    stem: str
    store: str                   # the partial store written block by block
    final: str                   # OME-Zarr: the store's final name; TIFF: the output folder
    fmt: str                     # "ome-zarr" or "tiff"
    channel_axis: int | None
    spatial: tuple[int, ...]
    chunks: tuple[int, ...]
    halo: tuple[int, ...]
    values: list[int]
    threshold: float | None = None
    tile: Any = "auto"
    batch_size: Any = "auto"
    device: Any = "cpu"
    stats: Any = None            # (channels, 2), or a dask future of it
    pixel: PixelSize = field(default_factory=PixelSize)
    overwrite: bool = False
    chunks_auto: bool = False    # chunks were chosen here: a resumed run keeps the earlier ones
    frames: bool = False         # a time-lapse: spatial[0] is T, each frame predicted on its own

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return tuple(-(-s // c) for s, c in zip(self.spatial, self.chunks))

    def blocks(self) -> list[tuple[int, ...]]:
        return list(itertools.product(*(range(n) for n in self.grid_shape)))


# ----------------------------------------------------------------------------- planning

def _chunk_arg(chunks: Any, n: int) -> tuple[int, ...] | None:
    if chunks in (None, "auto"):
        return None
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks),) * n
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) == n - 1 and n == 3:  # (Y, X) for a stack: whole slices along Z... one at a time
        chunks = (1,) + chunks
    if len(chunks) != n or any(c < 1 for c in chunks):
        raise UserError(f"chunk {chunks} must have {n} positive entries for this image")
    return chunks


def plan_chunks(spatial: Sequence[int], meta: dict, chunks: Any = "auto",
                workers: int = 1) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(chunks, halo) per spatial axis. Along the model's axes chunks are multiples of the
    pooling grid and the halo is the model's; a 2D model on a stack has no Z halo or grid.

    ``"auto"``: the tile cores in-memory ``predict`` would choose with this machine's memory
    budget shared by ``workers`` processes, so that a block's input (core + halo) is one pass
    and the voxels computed per voxel written are those of in-memory tiling (a fixed-size block
    with a large halo, predicted whole, would compute the halo ring again for every block)."""
    g, halo, dims = meta["grid"], meta["halo"], meta["dims"]
    n = len(spatial)
    model_axes = [i >= n - dims for i in range(n)]
    user = _chunk_arg(chunks, n)
    if user is None:
        import torch

        from .predict import choose_tile, memory_budget

        budget = memory_budget(torch.device("cpu"), dims) / max(1, int(workers))
        cores = iter(choose_tile(spatial[n - dims:], meta, budget, 4))
        c = [next(cores) if m else 0 for m in model_axes]
        c = [min(v, -(-s // g) * g) if m else 0 for v, s, m in zip(c, spatial, model_axes)]
        plane = math.prod(v for v in c if v)
        c = [v if m else max(1, min(s, BLOCK_VOXELS // plane)) for v, s, m in zip(c, spatial, model_axes)]
    else:
        c = [max(g, -(-v // g) * g) if m else v for v, m in zip(user, model_axes)]
        c = [min(v, -(-s // g) * g) if m else min(v, s) for v, s, m in zip(c, spatial, model_axes)]
    h = tuple(halo if m else 0 for m in model_axes)
    return tuple(int(v) for v in c), h


def read_channels_first(source: ImageSource, channel_axis: int | None, region: Sequence[slice]) -> np.ndarray:
    """``region`` (spatial slices) of ``source`` as a channels-first numpy array."""
    if channel_axis is None:
        return source[tuple(region)][None]
    ca = channel_axis % source.ndim
    idx = list(region)
    idx.insert(ca, slice(None))
    return np.moveaxis(source[tuple(idx)], ca, 0)


def global_stats(source: ImageSource, channel_axis: int | None, meta: dict) -> np.ndarray:
    """Normalisation statistics of the whole image, exactly as in-memory ``predict`` computes
    them (same function, same strided subsample), read lazily through dask (a small image is
    read here at once: a dask round trip per file would cost more than reading it)."""
    from .normalize import percentile_stats

    small = source.size * source.dtype.itemsize <= SMALL_IMAGE_BYTES
    d = source[(slice(None),) * source.ndim] if small else source.to_dask()
    if channel_axis is None:
        d = d[None]
    else:
        ca = channel_axis % d.ndim
        d = d.transpose([ca] + [i for i in range(d.ndim) if i != ca])
    norm = meta.get("normalization", {})
    return percentile_stats(d, norm.get("low", 1.0), norm.get("high", 99.8), channel_axis=0)


# ----------------------------------------------------------------------------- one block

def marker_path(job: Job, index: Sequence[int]) -> Path:
    return Path(job.store) / DONE_DIR / "_".join(map(str, index))


def run_block(ref: ModelRef, job: Job, index: Sequence[int], stats: Any = None) -> int:
    """Predict block ``index`` of ``job`` into its chunks; return voxels written (0: skipped)."""
    from .predict import check_finite, predict, probabilities_to_labels

    marker = marker_path(job, index)
    if marker.exists():
        return 0
    stats = job.stats if stats is None else stats
    core = [(i * c, min(s, (i + 1) * c)) for i, c, s in zip(index, job.chunks, job.spatial)]
    region = [(max(0, a - h), min(s, b + h)) for (a, b), h, s in zip(core, job.halo, job.spatial)]
    x = read_channels_first(job.source, job.channel_axis, [slice(a, b) for a, b in region])
    check_finite(x)
    model = cached_model(ref, job.device)
    kw = dict(tile=job.tile, batch_size=job.batch_size, device=job.device, channel_axis=0,
              stats=np.asarray(stats, np.float64))
    if job.frames:
        probs = np.stack([predict(model, x[:, i], **kw) for i in range(x.shape[1])], axis=1)
    else:
        probs = predict(model, x, **kw)
    inner = (slice(None),) + tuple(slice(a - ra, b - ra) for (a, b), (ra, _) in zip(core, region))
    p = np.ascontiguousarray(probs[inner])
    labels = probabilities_to_labels(p, job.values, job.threshold)
    dst = tuple(slice(a, b) for a, b in core)
    parr, larr = _arrays(job.store)
    if job.frames:  # the store is (t, c, z, y, x)
        parr[(dst[0], slice(None)) + dst[1:]] = np.moveaxis(p, 0, 1)
    else:
        parr[(slice(None),) + dst] = p
    larr[dst] = labels
    marker.parent.mkdir(exist_ok=True)
    marker.touch()
    return int(np.prod(p.shape[1:]))


def make_job(meta: dict, image: Any, out_dir: str | os.PathLike, *, fmt: str = "tiff",
             stem: str | None = None, channel_axis: int | None = None, chunks: Any = "auto",
             tile: Any = "auto", batch_size: Any = "auto", device: Any = "cpu",
             threshold: float | None = None, pixel: PixelSize | None = None,
             overwrite: bool = False, workers: int = 1) -> Job:
    """Check ``image`` against the model (without reading it) and plan its blocks."""
    from .predict import as_channels_first

    if fmt not in ("tiff", "ome-zarr"):
        raise UserError(f"format must be 'tiff' or 'ome-zarr', got {fmt!r}")
    source = image if isinstance(image, ImageSource) else open_image(image)
    stem = stem or source.name
    if source.dtype.kind not in "buif":
        raise UserError(f"image dtype {source.dtype} is not supported; use an integer or float image")
    if channel_axis is None and source.axes and "C" in source.axes and len(source.axes) == source.ndim:
        channel_axis = source.axes.index("C")  # the file says which axis holds channels (OME-Zarr 'c')
    shape_only = np.broadcast_to(np.zeros((), source.dtype), source.shape)  # checks, no data
    frames = bool(source.axes and len(source.axes) == source.ndim and source.axes[0] == "T"
                  and source.ndim - (channel_axis is not None) == 4
                  and (channel_axis is None or channel_axis % source.ndim != 0))
    if frames:  # T(Z)YX time-lapse: T is a block axis without halo, each frame predicted alone
        ca = None if channel_axis is None else channel_axis % source.ndim - 1
        cf = as_channels_first(shape_only[0], "each frame", meta["dims"], ca, meta["in_channels"])
        spatial = (int(source.shape[0]),) + tuple(int(s) for s in cf.shape[1:])
    else:
        cf = as_channels_first(shape_only, "image", meta["dims"], channel_axis, meta["in_channels"])
        spatial = tuple(int(s) for s in cf.shape[1:])
    ch, halo = plan_chunks(spatial, meta, chunks, workers)
    out_dir = Path(out_dir)
    inputs = [source.path] if source.path else []
    if fmt == "ome-zarr":
        final = out_dir / f"{stem}.ome.zarr"
        store = out_dir / f".{stem}.ome.zarr.partial"
        check_store_output(final, inputs, overwrite)
    else:
        from .outputs import check_output

        final = out_dir
        store = out_dir / f".{stem}.napari-unet.partial.zarr"
        for f in (out_dir / f"{stem}_probs.tif", out_dir / f"{stem}_labels.tif"):
            check_output(f, inputs=inputs, overwrite=overwrite)
    values = list(meta.get("class_values") or range(1, meta["classes"] + 1))
    return Job(source, stem, str(store), str(final), fmt, channel_axis, spatial, ch, halo, values,
               threshold, tile, batch_size, device, None, pixel if pixel is not None else source.pixel_size,
               overwrite, chunks in (None, "auto"), frames)


# ----------------------------------------------------------------------------- running

def run_jobs(ref: ModelRef, jobs: Sequence[Job], meta: dict, *, client: Any = None,
             version: str = "0.5", progress: Callable[[int, int], Any] | None = None) -> list[list[str]]:
    """Predict every job's blocks (on ``client``'s cluster, or here) and finish its outputs.

    Returns the output paths per job. Blocks already done by an earlier, interrupted run of the
    same model on the same input are skipped."""
    gen = iter_jobs(ref, jobs, meta, client=client, version=version)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress:
            progress(done, total)


def iter_jobs(ref: ModelRef, jobs: Sequence[Job], meta: dict, *, client: Any = None,
              version: str = "0.5") -> Iterator[tuple[int, int]]:
    """:func:`run_jobs` as a generator of ``(blocks done, blocks to do)``; returns the output
    paths. Closing it stops the work (on a cluster: cancels what is queued)."""
    todo = []
    for job in jobs:
        prepare_store(ref, job, meta, version)
        job.stats = global_stats(job.source, job.channel_axis, meta)
        todo.append([b for b in job.blocks() if not marker_path(job, b).exists()])
    total = sum(len(t) for t in todo)
    done = 0
    yield 0, total
    if client is None:
        outs = []
        for job, blocks in zip(jobs, todo):
            for b in blocks:
                run_block(ref, job, b)
                done += 1
                yield done, total
            outs.append(finalize(job))
        return outs
    from distributed import as_completed

    finals, block_futs = [], []
    for j, (job, blocks) in enumerate(zip(jobs, todo)):
        # the job (its source: a path, or an in-memory array given to the API) goes to the
        # cluster once, not once per block
        jf = client.scatter(job, hash=False)
        futs = [client.submit(run_block, ref, jf, b, pure=False, key=f"napari-unet-block-{job.stem}-{j}-"
                              + "_".join(map(str, b)) + f"-{os.getpid()}-{id(job)}") for b in blocks]
        block_futs += futs
        finals.append(client.submit(finalize, jf, *futs, pure=False))
    try:
        for fut in as_completed(block_futs):
            fut.result()
            done += 1
            yield done, total
        return [f.result() for f in finals]
    except BaseException:
        client.cancel(block_futs + finals)
        raise


from .cluster import open_client  # noqa: E402,F401  (kept importable from here)
