"""``predict_to_store``: the Python face of block-wise / distributed prediction.

For inputs larger than RAM (zarr, OME-Zarr, HDF5, TIFF, dask arrays) and for many files:
writes OME-Zarr stores (or TIFFs) block by block, in this process or on a dask cluster, with
the same result as in-memory :func:`napari_unet.predict` (see :mod:`.distributed`).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import UserError


def predict_to_store(model: Any, images: Any, out_dir: str | os.PathLike, *, format: str = "ome-zarr",
                     workers: int | None = None, scheduler: str | None = None, client: Any = None,
                     channel_axis: int | None = None, chunks: Any = "auto", tile: Any = "auto",
                     batch_size: Any = "auto", device: Any = "auto", threshold: float | None = None,
                     overwrite: bool = False, ngff_version: str = "0.5", names: Sequence[str] | None = None,
                     progress: Callable[[int, int], Any] | None = None) -> list[list[str]]:
    """Predict ``images`` block by block into ``out_dir``; return the output paths per image.

    ``model``: a model file path or a model (saved to a temporary file for the workers).
    ``images``: one image or a list: paths (TIFF, ``.zarr``/``.ome.zarr``, ``file.h5:dataset``),
    numpy, dask or zarr arrays; none is loaded whole. ``format``: ``"ome-zarr"`` writes
    ``<name>.ome.zarr`` (probabilities at level 0, labels at ``labels/prediction/0``),
    ``"tiff"`` writes ``<name>_probs.tif`` and ``<name>_labels.tif``. ``workers``: a local
    dask cluster of that many processes; ``scheduler``: the address of a running one;
    ``client``: a ``distributed.Client`` to use; none of them: this process. An interrupted run
    resumes where it stopped when called again with the same model and input.
    """
    from .distributed import make_job, model_ref, open_client, run_jobs
    from .io import read_model_meta, save_model

    if isinstance(images, (str, os.PathLike)) or hasattr(images, "shape"):
        images = [images]
    images = list(images)
    if names is not None and len(names) != len(images):
        raise UserError(f"{len(names)} names for {len(images)} images")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if isinstance(model, (str, os.PathLike)):
            path = Path(model)
        else:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=".napari-unet-model-", dir=out_dir))
            path = save_model(model, Path(tmp) / "model.pt")
        meta = read_model_meta(path)
        jobs = []
        for i, img in enumerate(images):
            name = names[i] if names else (None if isinstance(img, (str, os.PathLike)) else f"image{i}" if len(images) > 1 else "image")
            jobs.append(make_job(meta, img, out_dir, fmt=format, stem=name, channel_axis=channel_axis,
                                 chunks=chunks, tile=tile, batch_size=batch_size, device=device,
                                 threshold=threshold, overwrite=overwrite))
        stems = [j.stem for j in jobs]
        if len(set(stems)) != len(stems):
            raise UserError(f"several images share the name {stems}; pass names=")
        if client is not None:
            return run_jobs(model_ref(path), jobs, meta, client=client, version=ngff_version, progress=progress)
        c, threads = stack.enter_context(open_client(workers=workers, scheduler=scheduler))
        return run_jobs(model_ref(path, threads), jobs, meta, client=c, version=ngff_version, progress=progress)
