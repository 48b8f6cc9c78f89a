"""The prediction job (no Qt, no napari): images in, per-image progress and results out, and
the outputs written by one policy (core.outputs checks before the job; here, how they are
written). Predict and Batch run it in a worker thread (_widgets/_results.py); the command line's
``predict`` runs it in its main thread (files in, ``keep_arrays=False``: cli.cmd_predict).

Cancel: one mechanism, a ``threading.Event`` checked after every batch of tiles. Setting it
(rather than abandoning the generator) closes ``iter_predict`` in the thread that runs it, so
torch's thread-local inference mode is left properly. (On the command line, Ctrl-C or SIGTERM
raise in that same thread: the ``finally`` that closes the engine and the atomic writers run
the same way.)
"""
from __future__ import annotations

import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .frames import frame_channel_axis, is_time_lapse, iter_predict_frames, spatial_axes
from .limits import check_scratch_space

__all__ = ["Progress", "Result", "iter_predict_job", "output_arrays", "safe_stem", "write_tiff_outputs"]


@dataclass(frozen=True)
class Progress:
    image: str
    index: int          # which image (0-based) of ``count``
    count: int
    done: int           # tiles of this image
    total: int
    unit: str = "tile"  # what done/total count: "tile", or "block" (results into a zarr store)


@dataclass(frozen=True)
class Result:
    image: str
    probabilities: np.ndarray | None   # (classes, *spatial) float32 (None: keep_arrays=False)
    labels: np.ndarray | None          # class values 1..K (None: keep_arrays=False)
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


class _Cancelled(Exception):
    """The cancel event was set while the outputs were being written straight to files."""


def iter_predict_job(model: Any, items: list[tuple[str, Any]], *, tile: Any = "auto",
                     batch_size: Any = "auto", device: Any = "auto",
                     threshold: float | None = None, uncertainty: bool = True,
                     out_dir: Path | None = None, channel_axis: int | None = None,
                     out_format: str = "tiff", pixels: dict | None = None,
                     stems: dict[str, str] | None = None, keep_arrays: bool = True,
                     out_what: str = "output folder", ram_budget: int | None = None,
                     cancel: threading.Event | None = None,
                     one_class_per_object: bool | str = False) -> Iterator[Progress | Result]:
    """Predict each ``(name, image)`` in turn: the one prediction job of Predict, Batch and the
    command line's ``predict``.

    Args:
        model: a model from core (``model.meta`` names its classes).
        items: ``(name, image)`` pairs; ``image`` is an array, or a file path read on its turn
            (core.io.read_image; its pixel size is carried to the outputs). A (T, Z, Y, X)
            image is a time-lapse (frame by frame).
        tile, batch_size, device, channel_axis: as for :func:`napari_unet.core.predict.predict`.
        threshold: foreground threshold of a two-class model (None: argmax).
        one_class_per_object: each connected object takes one class (core.postprocess
            ``one_class_per_object``; more than two classes); the labels must fit in RAM.
            ``"auto"``: where the model's training found each painted object of one class
            (postprocess.suggests_one_class_per_object) and the image allows it (not a
            time-lapse, the labels in memory); elsewhere the class of each pixel.
        uncertainty: also compute the entropy map.
        out_dir: where to write each image's outputs (None: nothing written). TIFF outputs are
            checked for free space before the image is predicted (``out_what`` names the folder
            in the message), and written atomically (core.io).
        out_format: ``"tiff"`` (``<stem>_probs.tif``, ``<stem>_labels.tif``) or ``"ome-zarr"``.
        pixels: ``{name: readers.PixelSize}`` carried into the files.
        stems: ``{name: file stem}`` of the outputs (default :func:`safe_stem` of the name).
        keep_arrays: the :class:`Result` holds the arrays (False: only the files; results larger
            than RAM then go straight into memory-mapped TIFFs, with no scratch copy). Kept
            results larger than RAM (with zarr installed, and no TIFF outputs) are predicted
            straight into a zarr store (core.predict_zarr: ``out_dir``'s ``<stem>.ome.zarr``,
            else a temporary one) and held as dask arrays over it, read chunk by chunk.
        ram_budget: bytes the results may take in RAM (None: from free memory, ``fits_in_ram``).
        cancel: set it to stop after the current batch of tiles (no Result for that image, and
            no output file of it).

    Yields:
        :class:`Progress` per batch of tiles, then a :class:`Result` per image.

    Raises:
        ValueError, TypeError: the image does not suit the model. MemoryError: no room for the
        results in RAM or on the scratch disk (:func:`output_arrays`). UserError: not enough
        free space in ``out_dir``.
    """
    from .postprocess import suggests_one_class_per_object
    from .predict import entropy, fits_in_ram, probabilities_to_labels

    meta = model.meta
    engine = dict(tile=tile, batch_size=batch_size, device=device, channel_axis=channel_axis)
    for i, (name, image) in enumerate(items):
        px = (pixels or {}).get(name)
        if isinstance(image, (str, os.PathLike)):
            from .io import read_image
            from .readers import input_pixel_size

            image, px = read_image(image), px if px is not None else input_pixel_size(image)
        stem = (stems or {}).get(name) or safe_stem(name)
        shapes = _result_shapes(image, meta, uncertainty, channel_axis)  # checks the image first
        to_tiff = out_dir is not None and out_format != "ome-zarr"
        per_object = one_class_per_object
        if per_object == "auto":
            per_object = threshold is None and suggests_one_class_per_object(meta) \
                and _one_class_per_object_problem(image, shapes, channel_axis) is None
        elif per_object:
            _check_one_class_per_object(name, image, shapes, channel_axis)
        if to_tiff:
            from .outputs import check_space

            check_space(Path(out_dir), _nbytes(shapes, "probs", "labels"), what=out_what)

        def progress(done: int, total: int, i: int = i, name: str = name) -> Progress:
            return Progress(name, i, len(items), done, total)

        if keep_arrays and not to_tiff and not _fits(_nbytes(shapes, *shapes), ram_budget):
            from .predict_zarr import iter_predict_into_zarr, zarr_available

            if zarr_available():  # (else memory-mapped scratch files: output_arrays)
                if per_object and one_class_per_object == "auto":
                    per_object = False   # (the model's suggestion, where the labels fit in memory)
                if per_object:
                    from .errors import UserError

                    raise UserError(f"{name}: 'one class per object' needs the labels in memory, and this "
                                    "image's results are larger than the memory there is; predict it "
                                    "without that option, or on a machine with more memory")
                res = yield from iter_predict_into_zarr(
                    model, image, name=name, store_dir=out_dir, stem=stem, channel_axis=channel_axis,
                    frames=is_time_lapse(image.shape, channel_axis), threshold=threshold, pixel=px,
                    uncertainty=uncertainty, cancel=cancel,
                    progress=lambda d, n, i=i, name=name: Progress(name, i, len(items), d, n, "block"),
                    tile=tile, batch_size=batch_size, device=device)
                if res is None:
                    return
                yield Result(name, res.probabilities, res.labels, res.uncertainty, () if res.temporary else (res.path,))
                continue
        if to_tiff and not keep_arrays and not fits_in_ram(_nbytes(shapes, "probs")):
            try:
                files = yield from _into_tiffs(model, image, Path(out_dir), stem, px, shapes, threshold,
                                               engine, progress, cancel, per_object)
            except _Cancelled:
                return
            yield Result(name, None, None, None, files)
            continue
        outs = output_arrays(image, meta, uncertainty, channel_axis, shapes=shapes, ram_budget=ram_budget)
        probs = yield from _run(model, image, outs["probs"], engine, progress, cancel)
        if probs is None:
            return
        labels = probabilities_to_labels(probs, meta.get("class_values"), threshold, out=outs["labels"],
                                         one_class_per_object=per_object)
        unc = entropy(probs, out=outs["uncertainty"]) if uncertainty else None
        files: tuple[str, ...] = ()
        if out_dir is not None and out_format == "ome-zarr":
            from .ngff import write_prediction

            files = (str(write_prediction(Path(out_dir) / f"{stem}.ome.zarr", probs, labels,
                                          pixel=px, class_names=meta.get("class_names"),
                                          class_values=meta.get("class_values"), name=name)),)
        elif out_dir is not None:
            files = tuple(str(p) for p in write_tiff_outputs(Path(out_dir), stem, probs, labels, pixel=px))
        yield Result(name, probs, labels, unc, files) if keep_arrays else Result(name, None, None, None, files)


def _one_class_per_object_problem(image: Any, shapes: dict, channel_axis: int | None) -> str | None:
    """Why 'one class per object' cannot be done on this image (it labels connected objects in
    one piece): a time-lapse, or labels and their object map (5 bytes a pixel) larger than the
    free memory; None when it can."""
    from .predict import fits_in_ram

    if is_time_lapse(image.shape, channel_axis):
        return "is not available for a time-lapse yet"
    need = int(np.prod(shapes["labels"][0])) * 5
    if not fits_in_ram(need):
        return (f"needs {need / 2**30:.1f} GiB of memory for the labels and their objects, more than "
                "is free; predict without it")
    return None


def _check_one_class_per_object(name: str, image: Any, shapes: dict, channel_axis: int | None) -> None:
    """A UserError when 'one class per object' was asked for and this image does not allow it."""
    from .errors import UserError

    problem = _one_class_per_object_problem(image, shapes, channel_axis)
    if problem:
        raise UserError(f"{name}: 'one class per object' {problem}")


def _run(model: Any, image: np.ndarray, out: np.ndarray | None, engine: dict, progress: Any,
         cancel: threading.Event | None) -> Iterator[Progress]:
    """The engine on one image (into ``out``); returns the probabilities, None if cancelled."""
    from .predict import PredictDone, PredictProgress, iter_predict

    if is_time_lapse(image.shape, engine["channel_axis"]):
        gen = iter_predict_frames(model, image, out=out, **engine)
    else:
        gen = iter_predict(model, image, out=out, **engine)
    probs = None
    try:
        for ev in gen:
            if cancel is not None and cancel.is_set():
                return None
            if isinstance(ev, PredictProgress):
                yield progress(ev.done, ev.total)
            elif isinstance(ev, PredictDone):
                probs = ev.probabilities
    finally:
        gen.close()
    return probs


def _into_tiffs(model: Any, image: np.ndarray, out_dir: Path, stem: str, px: Any, shapes: dict,
                threshold: float | None, engine: dict, progress: Any,
                cancel: threading.Event | None, one_class_per_object: bool = False) -> Iterator[Progress]:
    """Predict straight into memory-mapped TIFFs (written under a temporary name, renamed when
    complete: a cancel or an error leaves no file); returns the two paths."""
    from .io import tiff_memmap
    from .predict import probabilities_to_labels

    values = model.meta.get("class_values") or list(range(1, model.meta["classes"] + 1))
    (pshape, pdtype), (lshape, ldtype) = shapes["probs"], shapes["labels"]
    axes = spatial_axes(len(lshape))
    paths = (out_dir / f"{stem}_probs.tif", out_dir / f"{stem}_labels.tif")
    with tiff_memmap(paths[0], pshape, pdtype, axes="C" + axes, pixel=px) as probs:
        if (yield from _run(model, image, probs, engine, progress, cancel)) is None:
            raise _Cancelled  # (leaves the with: the temporary file is removed, not renamed)
        with tiff_memmap(paths[1], lshape, ldtype, axes=axes, pixel=px) as lab:
            probabilities_to_labels(probs, values, threshold, out=lab, one_class_per_object=one_class_per_object)
    return tuple(str(p) for p in paths)


def _fits(nbytes: int, ram_budget: int | None) -> bool:
    from .predict import fits_in_ram

    return fits_in_ram(nbytes) if ram_budget is None else nbytes <= ram_budget


def _nbytes(shapes: dict, *keys: str) -> int:
    return sum(int(np.prod(shapes[k][0])) * np.dtype(shapes[k][1]).itemsize for k in keys if k in shapes)


def _result_shapes(image: np.ndarray, meta: dict, uncertainty: bool,
                   channel_axis: int | None = None) -> dict[str, tuple[tuple[int, ...], Any]]:
    """``{"probs"|"labels"|"uncertainty": (shape, dtype)}`` of one image's results (checking
    the image against the model first: core.checks)."""
    from .predict import labels_dtype, prepare_image

    if not isinstance(image, np.ndarray):  # dask/zarr: the checks need the shape, not the data
        image = np.broadcast_to(np.zeros((), image.dtype), image.shape)
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
    return shapes


def output_arrays(image: np.ndarray, meta: dict, uncertainty: bool,
                  channel_axis: int | None = None, *,
                  shapes: dict | None = None, ram_budget: int | None = None) -> dict[str, np.ndarray | None]:
    """Where one image's results go: ``None`` each (in RAM, allocated by the engine) when the
    probabilities, labels and uncertainty together fit in RAM (``fits_in_ram``); else
    memory-mapped scratch files, so a stack larger than RAM still gets its layers (napari
    reads memmaps lazily). The files are unlinked at once: the mapping keeps them alive while a
    layer uses them, and the disk space comes back when it is gone (POSIX). ``ram_budget``:
    bytes the results may take in RAM (None: ``fits_in_ram``)."""
    if shapes is None:
        shapes = _result_shapes(image, meta, uncertainty, channel_axis)
    need = _nbytes(shapes, *shapes)
    outs: dict[str, np.ndarray | None] = {"probs": None, "labels": None, "uncertainty": None}
    if _fits(need, ram_budget):
        return outs
    folder = Path(os.environ.get("NAPARI_UNET_SCRATCH") or tempfile.gettempdir())
    check_scratch_space(folder, need, "set NAPARI_UNET_SCRATCH to a folder on a larger disk, or use "
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
