"""The stores of block-wise prediction (:mod:`.distributed`): the hidden partial store with its
run manifest (resume only the same run), per-process handles on its arrays, finishing it into the
outputs (rename to OME-Zarr, or conversion to TIFF), and the output policy for OME-Zarr folders."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError

DONE_DIR = ".napari-unet-done"
_STORES: dict[str, tuple[Any, Any]] = {}  # per-process handles on the arrays of one store


def _arrays(store: str):
    if store not in _STORES:
        import zarr

        _STORES.clear()
        root = zarr.open_group(store, mode="r+")
        _STORES[store] = (root["0"], root["labels/prediction/0"])
    return _STORES[store]



def _manifest(ref: Any, job: Any, version: str) -> dict:
    return {"model_sha256": ref.sha256, "ngff": version, "format": job.fmt, "input": job.source.spec if job.source.path else None,
            "shape": list(job.source.shape), "channel_axis": job.channel_axis,
            "chunks": list(job.chunks), "values": list(job.values), "threshold": job.threshold}


def prepare_store(ref: Any, job: Any, meta: dict, version: str) -> int:
    """Create ``job.store``, or keep a partial one of the same run (resume). Returns the number
    of blocks already done."""
    import zarr

    from .ngff import create_prediction_store

    man = _manifest(ref, job, version)
    p = Path(job.store)
    if p.exists():
        try:
            old = dict(zarr.open_group(str(p), mode="r").attrs).get("napari_unet", {}).get("run")
        except Exception:
            old = None
        if old is None:
            raise UserError(f"{p} exists and was not written by napari-unet; move it away")
        done_dir = p / DONE_DIR
        if job.chunks_auto and {**old, "chunks": None} == {**man, "chunks": None}:
            job.chunks = tuple(old["chunks"])  # auto chunks depend on free memory: keep the first run's
            man = old
        if old == man and (p / "0").exists():
            return len(list(done_dir.iterdir())) if done_dir.is_dir() else 0
        shutil.rmtree(p)  # ours, from another model or input: start over
    names = meta.get("class_names")
    create_prediction_store(p, job.spatial, meta["classes"], job.chunks, pixel=job.pixel,
                            class_names=names, class_values=job.values, name=job.stem, version=version,
                            extra_attrs={"napari_unet": {"run": man}})
    return 0


def finalize(job: Any, *done: Any) -> list[str]:
    """Turn a complete partial store into the outputs; return their paths."""
    from .io import axes_for, tiff_memmap

    store = Path(job.store)
    if job.fmt == "ome-zarr":
        shutil.rmtree(store / DONE_DIR, ignore_errors=True)
        final = Path(job.final)
        _STORES.pop(str(store), None)
        if final.exists():  # ours, or --overwrite (make_job checked)
            trash = final.with_name(f".{final.name}.old")
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            os.replace(store, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(store, final)
        return [str(final)]
    parr, larr = _arrays(str(store))
    out = Path(job.final)
    axes = "CTZYX" if len(job.spatial) == 4 else "C" + axes_for(np.empty((1,) * len(job.spatial)))
    probs_path, labels_path = out / f"{job.stem}_probs.tif", out / f"{job.stem}_labels.tif"
    step = job.chunks[0]
    pshape = (parr.shape[1], parr.shape[0], *parr.shape[2:]) if job.frames else parr.shape
    with tiff_memmap(probs_path, pshape, np.float32, axes=axes, pixel=job.pixel) as pm, \
            tiff_memmap(labels_path, larr.shape, larr.dtype, axes=axes[1:], pixel=job.pixel) as lm:
        for s in range(0, job.spatial[0], step):
            if job.frames:  # TIFF keeps classes first: (c, t, z, y, x)
                pm[:, s:s + step] = np.moveaxis(parr[s:s + step], 1, 0)
            else:
                pm[:, s:s + step] = parr[:, s:s + step]
            lm[s:s + step] = larr[s:s + step]
    _STORES.pop(str(store), None)
    shutil.rmtree(store, ignore_errors=True)
    return [str(probs_path), str(labels_path)]


def _is_our_store(p: Path) -> bool:
    import json

    for meta_file, get in (("zarr.json", lambda d: d.get("attributes", {})), (".zattrs", lambda d: d)):
        f = p / meta_file
        if f.is_file():
            try:
                return "napari_unet" in get(json.loads(f.read_text()))
            except (OSError, ValueError, AttributeError):
                return False
    return False


def check_store_output(p: Path, inputs: Sequence[str], overwrite: bool) -> None:
    """The output policy of core.outputs for an OME-Zarr folder: never an input, never a store
    (or file) napari-unet did not write unless ``overwrite``."""
    for src in inputs:
        if Path(src).exists() and p.exists() and Path(src).resolve() == p.resolve():
            raise UserError(f"the output {p} is one of the inputs; refusing to overwrite it "
                            "(choose another folder)")
    if p.exists() and not p.is_dir():
        raise UserError(f"the output {p} is a file, not an OME-Zarr folder")
    if p.exists() and not overwrite and not _is_our_store(p):
        raise UserError(f"{p} exists and was not written by napari-unet; refusing to replace it "
                        "(choose another folder, or pass --overwrite)")
