"""Instance outputs of ``napari-unet predict --instances [--measure]``: ``<stem>_instances.tif``
(uint16/uint32, 0 = background) from the written probabilities, and ``<stem>_objects.csv``.

Works from the probability file as written (memory-mapped), so an image whose probabilities do
not fit in RAM is processed in overlapping slabs straight into a memory-mapped output file. Files
go through the atomic writers of :mod:`napari_unet.core.io` (temporary name, then renamed)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .instances import WHOLE_LIMIT, instance_labels


def foreground_index(meta: dict, class_value: int | None = None) -> tuple[int, int]:
    """(channel index, class value) of the class to split into objects: ``class_value`` if
    given, else class 2 (the first class after background), else the last class."""
    values = list(meta.get("class_values") or range(1, int(meta.get("classes", 2)) + 1))
    if class_value is None:
        class_value = 2 if 2 in values else values[-1]
    if class_value not in values:
        raise UserError(f"class {class_value} is not one of the model's classes {values}")
    return values.index(class_value), int(class_value)


def _pixel_and_spacing(path: Any, ndim: int, spacing: Sequence[float] | None):
    """The pixel size recorded in file ``path`` (readers.PixelSize, or None) and the spacing to
    use: ``spacing`` if given, else the recorded pixel size, else None (1 per axis)."""
    if not isinstance(path, (str, os.PathLike)):
        return None, spacing
    from .readers import input_pixel_size

    pixel = input_pixel_size(path)
    if spacing is None and pixel:
        spacing = tuple(pixel.for_axes("ZYX"[-ndim:]))
    return (pixel or None), spacing


def write_instances(probs: Any, meta: dict, path: str | os.PathLike, *, class_value: int | None = None,
                    threshold: float = 0.5, min_size: int = 10, seed_distance: float = 5.0,
                    sigma: float = 1.0, spacing: Sequence[float] | None = None,
                    method: str = "distance") -> tuple[Path, int]:
    """Split the foreground class of ``probs`` (classes first; an array, or the path of a
    ``<stem>_probs.tif``, whose pixel size is then the default ``spacing`` and is carried to
    the output) into objects and write them to ``path``; return (path, number of objects)."""
    from .io import axes_for, read_image, tiff_memmap, write_tiff

    source = probs
    if isinstance(probs, (str, os.PathLike)):
        probs = read_image(probs)
    idx, _ = foreground_index(meta, class_value)
    prob = probs[idx]
    pixel, spacing = _pixel_and_spacing(source, len(prob.shape), spacing)
    kw = dict(threshold=threshold, min_size=min_size, seed_distance=seed_distance, sigma=sigma,
              spacing=spacing, method=method)
    axes = axes_for(np.empty((1,) * len(prob.shape)))
    if int(np.prod(prob.shape)) <= WHOLE_LIMIT:
        lab = instance_labels(prob, **kw)
        write_tiff(path, lab, axes=axes, pixel=pixel)
        return Path(path), int(lab.max(initial=0))
    with tiff_memmap(path, tuple(prob.shape), np.uint32, axes=axes, pixel=pixel) as mm:
        instance_labels(prob, out=mm, **kw)
        n = max((int(mm[z].max(initial=0)) for z in range(mm.shape[0])), default=0)
    return Path(path), n


def write_measurements(instances_path: str | os.PathLike, path: str | os.PathLike, *,
                       image: Any = None, labels: Any = None, spacing: Sequence[float] | None = None,
                       class_names: Sequence[str] | None = None) -> tuple[Path, int]:
    """Measure the objects of ``instances_path`` (see :func:`measure.measure_objects`; sizes use
    ``spacing``, else the file's recorded pixel size) and write the table to ``path`` (CSV);
    return (path, number of rows)."""
    from .io import read_image
    from .measure import measure_objects, write_objects_csv

    inst = read_image(instances_path)
    _, spacing = _pixel_and_spacing(instances_path, inst.ndim, spacing)
    img = None
    if image is not None and tuple(np.shape(image)) == tuple(inst.shape):
        img = image
    rows = measure_objects(inst, image=img, classes=labels, spacing=spacing, class_names=class_names)
    write_objects_csv(path, rows)
    return Path(path), len(rows)
