"""Predict one image straight into a zarr store, for results larger than RAM (Predict and Batch).

The prediction job (:mod:`.jobs`) keeps small results in RAM. When they do not fit, this module
runs the block engine of :mod:`.distributed` in this process: the image (numpy, dask or zarr,
never loaded whole) is read block by block with its halo, normalised with the statistics of the
whole image, predicted, and each block written to its own chunks of an OME-Zarr prediction store
(probabilities at ``0``, labels at ``labels/prediction/0``): the result equals in-memory
``predict``. The arrays handed back are dask arrays over that store, so napari reads only the
chunks it shows; the uncertainty (entropy) is computed chunk by chunk on demand.

Where the store goes: ``store_dir`` (the user's folder: ``<stem>.ome.zarr`` stays there), else
a temporary folder in ``$NAPARI_UNET_SCRATCH`` (or the system's temporary folder) removed when
the last array that reads it is gone (or at exit). zarr and dask are needed (the ``bigdata``
extra); :func:`zarr_available` says whether they are installed.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["ZarrResult", "zarr_available", "scratch_folder", "iter_predict_into_zarr"]


def zarr_available() -> bool:
    """Whether zarr, dask and ome-zarr are installed (the ``bigdata`` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("zarr", "dask", "ome_zarr"))


def scratch_folder() -> Path:
    """Where temporary result stores go: ``$NAPARI_UNET_SCRATCH`` or the temporary folder."""
    return Path(os.environ.get("NAPARI_UNET_SCRATCH") or tempfile.gettempdir())


@dataclass(frozen=True)
class ZarrResult:
    probabilities: Any          # dask (classes, *spatial) float32
    labels: Any                 # dask (*spatial), class values 1..K
    uncertainty: Any            # dask (*spatial) float32, or None
    path: str                   # the OME-Zarr store
    temporary: bool             # removed when the arrays are gone


class _Keeper:
    """Held by every array over a temporary store; the store is removed when it is collected."""


class _Held:
    """A zarr array that also holds the store's keeper (read by dask chunk by chunk)."""

    def __init__(self, array: Any, keeper: Any) -> None:
        self.array, self.keeper = array, keeper
        self.shape, self.dtype, self.ndim = tuple(array.shape), np.dtype(array.dtype), len(array.shape)

    def __getitem__(self, idx: Any) -> np.ndarray:
        return np.asarray(self.array[idx])


def _axes(shape: tuple[int, ...], channel_axis: int | None, frames: bool) -> str | None:
    """Axis names telling the block engine where the time and channel axes are."""
    if not frames:
        return None
    names = list("TZYX")
    if channel_axis is not None:
        names.insert(channel_axis % len(shape), "C")
    return "".join(names)


def _check_disk(folder: Path, need: int) -> None:
    """MemoryError when ``folder`` has no room for the results (uncompressed: the worst case)."""
    from .limits import check_scratch_space

    check_scratch_space(folder, need, "set NAPARI_UNET_SCRATCH to a folder on a larger disk, or use "
                                      "Batch with an OME-Zarr output folder there.")


def _entropy_block(p: np.ndarray) -> np.ndarray:
    from .postprocess import entropy

    return entropy(p)


def open_result(path: str | os.PathLike, frames: bool = False, uncertainty: bool = True,
                keeper: Any = None) -> tuple[Any, Any, Any]:
    """Dask arrays (probabilities ``(classes, *spatial)``, labels, uncertainty or None) over a
    prediction store; nothing is read until a chunk is asked for."""
    import dask.array as da
    import zarr

    root = zarr.open_group(str(path), mode="r")
    parr, larr = root["0"], root["labels/prediction/0"]

    def lazy(a: Any, name: str):
        src = _Held(a, keeper) if keeper is not None else a
        return da.from_array(src, chunks=a.chunks, asarray=False, fancy=False,
                             name=f"napari-unet-{name}-{os.fspath(path)}-{id(src)}")

    probs = lazy(parr, "probs")
    if frames:  # the store is (t, c, z, y, x): classes first as for in-memory results
        probs = da.moveaxis(probs, 1, 0)
    labels = lazy(larr, "labels")
    unc = None
    if uncertainty:
        unc = probs.map_blocks(_entropy_block, drop_axis=0, dtype=np.float32)
    return probs, labels, unc


def iter_predict_into_zarr(model: Any, image: Any, *, name: str = "image", store_dir: str | os.PathLike | None = None,
                           stem: str | None = None, channel_axis: int | None = None, frames: bool = False,
                           tile: Any = "auto", batch_size: Any = "auto", device: Any = "auto",
                           chunks: Any = "auto", threshold: float | None = None, pixel: Any = None,
                           uncertainty: bool = True, overwrite: bool = False,
                           progress: Callable[[int, int], Any] | None = None,
                           cancel: threading.Event | None = None) -> Iterator[Any]:
    """Predict ``image`` block by block into an OME-Zarr store; yields ``progress(done, total)``
    after each block (blocks, not tiles) and returns a :class:`ZarrResult` (None if ``cancel``
    was set: the partial store is removed, or kept in ``store_dir`` for a later run to resume).

    ``frames``: ``image`` is a (T, Z, Y, X) time-lapse predicted frame by frame. ``chunks``:
    the block (= chunk) size, ``"auto"`` from this machine's memory (see
    :func:`.distributed.plan_chunks`)."""
    from .distributed import iter_jobs, make_job, model_ref
    from .io import save_model
    from .readers import open_image

    meta = model.meta
    temporary = store_dir is None
    out_dir = Path(tempfile.mkdtemp(prefix="napari-unet-results-", dir=scratch_folder())) if temporary \
        else Path(store_dir)
    keeper = _Keeper() if temporary else None
    if keeper is not None:
        weakref.finalize(keeper, shutil.rmtree, str(out_dir), True)
    ok = False
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        source = open_image(image, name=stem or name)
        source.axes = _axes(tuple(source.shape), channel_axis, frames)
        job = make_job(meta, source, out_dir, fmt="ome-zarr", stem=stem or "prediction",
                       channel_axis=channel_axis, chunks=chunks, tile=tile, batch_size=batch_size,
                       device=device, threshold=threshold, pixel=pixel, overwrite=overwrite)
        _check_disk(out_dir, int(np.prod(job.spatial)) * (4 * meta["classes"] + 2))
        with tempfile.TemporaryDirectory(prefix=".napari-unet-model-", dir=out_dir) as tmp:
            ref = model_ref(save_model(model, Path(tmp) / "model.pt"))
            gen = iter_jobs(ref, [job], meta, client=None)
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        return None
                    try:
                        done, total = next(gen)
                    except StopIteration as stop:
                        [[path]] = stop.value
                        break
                    if progress is not None:
                        yield progress(done, total)
            finally:
                gen.close()
        probs, labels, unc = open_result(path, frames=job.frames, uncertainty=uncertainty, keeper=keeper)
        ok = True
        return ZarrResult(probs, labels, unc, str(path), temporary)
    finally:
        if not ok and temporary:
            shutil.rmtree(out_dir, ignore_errors=True)
