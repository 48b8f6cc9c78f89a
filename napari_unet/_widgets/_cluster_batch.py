"""Batch on a local dask cluster (worker thread side, no Qt): the open images are predicted
block by block by N worker processes (core.distributed) into the output folder, with progress
and cancel; the results come back as layers read from the files written."""
from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

from ._events import Progress, Result, safe_stem


def _read_outputs(paths: list[str], out_format: str) -> tuple[Any, Any]:
    if out_format == "ome-zarr":
        import zarr

        g = zarr.open_group(paths[0], mode="r")
        probs = g["0"]
        if probs.ndim == 5:  # a time-lapse is stored (t, c, z, y, x); Result wants classes first
            import dask.array as da

            probs = da.moveaxis(da.from_zarr(probs), 0, 1)
        return probs, g["labels/prediction/0"]
    import tifffile

    return tifffile.memmap(paths[0], mode="r"), tifffile.memmap(paths[1], mode="r")


def predict_on_cluster(model: Any, items: list[tuple[str, Any]], *, workers: int, out_dir: Path,
                       out_format: str = "tiff", pixels: dict | None = None, channel_axis: int | None = None,
                       threshold: float | None = None, tile: Any = "auto",
                       cancel: threading.Event | None = None) -> Iterator[Progress | Result]:
    from napari_unet.core.distributed import iter_jobs, make_job, model_ref, open_client
    from napari_unet.core.io import save_model
    from napari_unet.core.readers import open_image

    from ._frames import is_time_lapse

    meta = model.meta
    outs = None

    def source(name: str, data: Any):
        src = open_image(data, name=safe_stem(name))
        if is_time_lapse(data.shape, channel_axis):  # T first (napari's order): frame by frame
            axes = ["Z", "Y", "X"][-(data.ndim - 1 - (channel_axis is not None)):]
            if channel_axis is not None:
                axes.insert(channel_axis % data.ndim - 1, "C")
            src.axes = "T" + "".join(axes)
        return src

    with tempfile.TemporaryDirectory(prefix=".napari-unet-model-", dir=out_dir) as tmp:
        path = save_model(model, Path(tmp) / "model.pt")  # the workers load it once each
        jobs = [make_job(meta, source(name, data), out_dir, fmt=out_format,
                         stem=safe_stem(name), channel_axis=channel_axis, tile=tile, threshold=threshold,
                         pixel=(pixels or {}).get(name), workers=workers, device="auto")
                for name, data in items]
        with open_client(workers=workers) as (client, threads):
            gen = iter_jobs(model_ref(path, threads), jobs, meta, client=client)
            try:
                while True:
                    if cancel is not None and cancel.is_set():
                        return  # closing gen cancels the queued blocks; done ones stay for a rerun
                    try:
                        done, total = next(gen)
                    except StopIteration as stop:
                        outs = stop.value
                        break
                    yield Progress(f"{len(items)} image(s) on {workers} workers", 0, 1, done, total)
            finally:
                gen.close()
    for (name, _), paths in zip(items, outs or []):
        probs, labels = _read_outputs(paths, out_format)
        yield Result(name, probs, labels, None, tuple(paths))
