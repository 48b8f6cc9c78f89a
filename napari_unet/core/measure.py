"""Per-object measurements of an instance label image: size in physical units, mean intensity,
centroid, bounding box and class (numpy/scipy only), and the CSV table they are saved as."""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .labels import check_labels

__all__ = ["measure_objects", "objects_csv", "write_objects_csv"]


def measure_objects(instances: Any, *, image: Any = None, classes: Any = None,
                    spacing: Sequence[float] | float | None = None,
                    class_names: Sequence[str] | None = None) -> list[dict]:
    """One row per object (label > 0) of ``instances`` (2D or 3D):

    ``label``, ``area`` (2D) or ``volume`` (3D) in physical units (``spacing`` = pixel/voxel
    size per axis, default 1), ``pixels``, ``mean_intensity`` (if ``image``), ``centroid_z/y/x``
    (pixels), ``bbox_min_*``/``bbox_max_*`` (pixels, max exclusive) and ``class``: the most
    common value of ``classes`` (e.g. the predicted class labels) inside the object, named by
    ``class_names`` (class 1 first) when given."""
    from scipy import ndimage as ndi

    from .instances import _spacing

    lab = check_labels(instances, "instance labels")
    if lab.ndim not in (2, 3):
        raise UserError(f"instance labels must be 2D or 3D, got shape {lab.shape}")
    sp = _spacing(spacing, lab.ndim)
    for name, other in (("image", image), ("classes", classes)):
        if other is not None and tuple(np.shape(other)) != lab.shape:
            raise UserError(f"the {name} has shape {tuple(np.shape(other))}, the instance labels {lab.shape}")
    axes = "zyx"[-lab.ndim:]
    size_key = "area" if lab.ndim == 2 else "volume"
    unit = float(np.prod(sp))
    rows: list[dict] = []
    for i, sl in enumerate(ndi.find_objects(lab)):
        if sl is None:
            continue
        value = i + 1
        m = lab[sl] == value
        n = int(m.sum())
        idx = np.nonzero(m)
        row: dict[str, Any] = {"label": value, size_key: n * unit, "pixels": n}
        if image is not None:
            row["mean_intensity"] = float(np.asarray(image[sl], dtype=np.float64)[m].mean())
        for a, ax in enumerate(axes):
            row[f"centroid_{ax}"] = float(idx[a].mean() + sl[a].start)
        for a, ax in enumerate(axes):
            row[f"bbox_min_{ax}"] = int(sl[a].start)
        for a, ax in enumerate(axes):
            row[f"bbox_max_{ax}"] = int(sl[a].stop)
        if classes is not None:
            vals, cnt = np.unique(np.asarray(classes[sl])[m], return_counts=True)
            c = int(vals[np.argmax(cnt)])
            row["class"] = (class_names[c - 1] if class_names and 0 < c <= len(class_names) else c)
        rows.append(row)
    return rows


def objects_csv(rows: list[dict]) -> str:
    if not rows:
        return "label\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def write_objects_csv(path: str | os.PathLike, rows: list[dict]) -> str:
    """Write the measurements table atomically (temporary name, then renamed)."""
    from .io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(objects_csv(rows))
    return str(path)
