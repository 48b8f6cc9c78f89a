"""The prediction job (no Qt, no napari): images in, per-image progress and results out, and
the outputs written by one policy (core.outputs checks before the job; here, how they are
written). Predict and Batch run it in a worker thread (_widgets/_results.py); the command line
writes its TIFFs with the same :func:`write_tiff_outputs`.

Cancel: one mechanism, a ``threading.Event`` checked after every batch of tiles. Setting it
(rather than abandoning the generator) closes ``iter_predict`` in the thread that runs it, so
torch's thread-local inference mode is left properly.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .frames import frame_channel_axis, is_time_lapse, iter_predict_frames, spatial_axes

__all__ = ["Progress", "Result", "iter_predict_job", "output_arrays", "safe_stem", "write_tiff_outputs"]


@dataclass(frozen=True)
class Progress:
    image: str
    index: int          # which image (0-based) of ``count``
    count: int
    done: int           # tiles of this image
    total: int


@dataclass(frozen=True)
class Result:
    image: str
    probabilities: np.ndarray      # (classes, *spatial) float32
    labels: np.ndarray             # class values 1..K
    uncertainty: np.ndarray | None
    files: tuple[str, ...] = ()


def safe_stem(name: str) -> str:
    """A file-name stem for a layer or image name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "image"


def write_tiff_outputs(out_dir: Path, stem: str, probs: np.ndarray, labels: np.ndarray, *,
                       axes: str | None = None, pixel: Any = None) -> tuple[Path, Path]:
    """Write ``<stem>_probs.tif`` (float32, classes first) and ``<stem>_labels.tif`` into
    ``out_dir`` (atomically, tagged as ours: core.io.write_tiff). ``axes``: the labels' axes
    (default from their shape; a 4D result is a time-lapse, TZYX)."""
    from .io import axes_for, write_tiff

    if axes is None:
        axes = spatial_axes(labels.ndim) if labels.ndim == 4 else axes_for(labels)
    p1 = write_tiff(Path(out_dir) / f"{stem}_probs.tif", probs, axes="C" + axes, pixel=pixel)
    p2 = write_tiff(Path(out_dir) / f"{stem}_labels.tif", labels, axes=axes, pixel=pixel)
    return p1, p2


def iter_predict_job(model: Any, items: list[tuple[str, np.ndarray]], *, tile: Any = "auto",
                     threshold: float | None = None, uncertainty: bool = True,
                     out_dir: Path | None = None, channel_axis: int | None = None,
                     out_format: str = "tiff", pixels: dict | None = None,
                     cancel: threading.Event | None = None) -> Iterator[Progress | Result]:
    """Predict each ``(name, image)`` in turn.

    Args:
        model: a model from core (``model.meta`` names its classes).
        items: ``(name, array)`` pairs; a (T, Z, Y, X) array is a time-lapse (frame by frame).
        tile, channel_axis: as for :func:`napari_unet.core.predict.predict`.
        threshold: foreground threshold of a two-class model (None: argmax).
        uncertainty: also compute the entropy map.
        out_dir: where to write each image's outputs (None: nothing written).
        out_format: ``"tiff"`` (``<stem>_probs.tif``, ``<stem>_labels.tif``) or ``"ome-zarr"``.
        pixels: ``{name: readers.PixelSize}`` carried into the files.
        cancel: set it to stop after the current batch of tiles (no Result for that image).

    Yields:
        :class:`Progress` per batch of tiles, then a :class:`Result` per image.

    Raises:
        ValueError, TypeError: the image does not suit the model. MemoryError: no room for the
        results in RAM or on the scratch disk (:func:`output_arrays`).
    """
    from .predict import PredictDone, PredictProgress, entropy, iter_predict, probabilities_to_labels

    meta = model.meta
    for i, (name, image) in enumerate(items):
        probs = None
        outs = output_arrays(image, meta, uncertainty, channel_axis)
        if is_time_lapse(image.shape, channel_axis):
            gen = iter_predict_frames(model, image, tile=tile, out=outs["probs"], channel_axis=channel_axis)
        else:
            gen = iter_predict(model, image, tile=tile, out=outs["probs"], channel_axis=channel_axis)
        try:
            for ev in gen:
                if cancel is not None and cancel.is_set():
                    return
                if isinstance(ev, PredictProgress):
                    yield Progress(name, i, len(items), ev.done, ev.total)
                elif isinstance(ev, PredictDone):
                    probs = ev.probabilities
        finally:
            gen.close()
        labels = probabilities_to_labels(probs, meta.get("class_values"), threshold, out=outs["labels"])
        unc = entropy(probs, out=outs["uncertainty"]) if uncertainty else None
        files: tuple[str, ...] = ()
        px = (pixels or {}).get(name)
        if out_dir is not None and out_format == "ome-zarr":
            from .ngff import write_prediction

            files = (str(write_prediction(Path(out_dir) / f"{safe_stem(name)}.ome.zarr", probs, labels,
                                          pixel=px, class_names=meta.get("class_names"),
                                          class_values=meta.get("class_values"), name=name)),)
        elif out_dir is not None:
            files = tuple(str(p) for p in write_tiff_outputs(Path(out_dir), safe_stem(name), probs, labels,
                                                             pixel=px))
        yield Result(name, probs, labels, unc, files)


def output_arrays(image: np.ndarray, meta: dict, uncertainty: bool,
                  channel_axis: int | None = None) -> dict[str, np.ndarray | None]:
    """Where one image's results go: ``None`` each (in RAM, allocated by the engine) when the
    probabilities, labels and uncertainty together fit in RAM (``fits_in_ram``); else
    memory-mapped scratch files, so a stack larger than RAM still gets its layers (napari
    reads memmaps lazily). The files are unlinked at once: the mapping keeps them alive while a
    layer uses them, and the disk space comes back when it is gone (POSIX)."""
    from .predict import fits_in_ram, labels_dtype, prepare_image

    if is_time_lapse(image.shape, channel_axis):
        fca = frame_channel_axis(image.ndim, channel_axis)
        spatial = (image.shape[0],) + prepare_image(image[0], meta, fca).shape[1:]
    else:
        spatial = prepare_image(image, meta, channel_axis).shape[1:]
    classes = meta["classes"]
    label_dtype = labels_dtype(max(meta.get("class_values") or [classes]))
    shapes = {"probs": ((classes,) + spatial, np.float32), "labels": (spatial, label_dtype)}
    if uncertainty:
        shapes["uncertainty"] = (spatial, np.float32)
    need = sum(int(np.prod(sh)) * np.dtype(dt).itemsize for sh, dt in shapes.values())
    outs: dict[str, np.ndarray | None] = {"probs": None, "labels": None, "uncertainty": None}
    if fits_in_ram(need):
        return outs
    folder = Path(os.environ.get("NAPARI_UNET_SCRATCH") or tempfile.gettempdir())
    free = shutil.disk_usage(folder).free
    if need > 0.9 * free:
        raise MemoryError(f"the results of this image need {need / 2**30:.1f} GiB, more than RAM "
                          f"allows, and {folder} has only {free / 2**30:.1f} GiB free for them on "
                          "disk: set NAPARI_UNET_SCRATCH to a folder on a larger disk, or use "
                          "Batch with an output folder.")
    for key, (shape, dtype) in shapes.items():
        fd, path = tempfile.mkstemp(prefix=f"napari-unet-{key}-", suffix=".npy", dir=folder)
        os.close(fd)
        outs[key] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        try:
            os.unlink(path)
        except OSError:  # (Windows) the file stays in the temporary folder
            pass
    return outs
