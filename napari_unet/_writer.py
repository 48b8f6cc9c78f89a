"""napari writer contribution: save image and labels layers as one OME-Zarr (NGFF 0.5).

The first image layer is the NGFF image (level 0; without one, the first labels layer's data
is); every labels layer becomes an NGFF label image ``labels/<layer name>`` of it. Layer scale
and units go into the metadata. Written to a temporary folder and renamed. No Qt here.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any


def _axes(ndim: int, rgb: bool = False) -> str:
    if rgb:
        return {3: "yxc", 4: "zyxc"}.get(ndim, "")
    return {2: "yx", 3: "zyx", 4: "czyx", 5: "tczyx"}.get(ndim, "")


def _level0(data: Any) -> Any:
    return data[0] if isinstance(data, (list, tuple)) else data


def _units(meta: dict, axes: str) -> dict[str, str]:
    from .core.readers import ngff_unit

    units = meta.get("units")
    if not units:
        return {}
    spatial = [a for a in axes if a in "zyx"]
    units = list(units)[-len(spatial):]
    out = {}
    for a, u in zip(spatial, units):
        name = ngff_unit(str(u))
        if name and name != "pixel":
            out[a] = name
    return out


def _scale(meta: dict, axes: str) -> dict[str, float]:
    scale = list(meta.get("scale") or [])
    names = [a for a in axes if a != "c"] if meta.get("rgb") else list(axes)
    if len(scale) != len(names):
        return {}
    return {a: float(s) for a, s in zip(names, scale) if a in "tzyx"}


def write_ome_zarr(path: str, layer_data: list[tuple[Any, dict, str]]) -> list[str]:
    """npe2 multi-layer writer: ``[(data, meta, layer_type), ...]`` -> ``[path]``."""
    import zarr
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image, write_labels

    images = [d for d in layer_data if d[2] == "image"]
    labels = [d for d in layer_data if d[2] == "labels"]
    if not images and not labels:
        return []
    p = Path(path)
    if not p.name.lower().endswith(".zarr"):
        p = p.with_name(p.name + ".ome.zarr")
    base_data, base_meta, _ = images[0] if images else labels[0]
    base = _level0(base_data)
    axes = _axes(base.ndim, bool(base_meta.get("rgb")))
    if not axes:
        raise ValueError(f"cannot write a {base.ndim}-D layer as OME-Zarr (2 to 5 dimensions)")
    if base_meta.get("rgb"):  # channels first, as NGFF wants
        import numpy as np

        base = np.moveaxis(np.asarray(base), -1, 0)
        axes = "c" + axes[:-1]
    fmt = FormatV05()
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".part", dir=p.parent))
    try:
        root = zarr.open_group(str(tmp / "store"), mode="w", zarr_format=3)
        scale = _scale(base_meta, axes)
        write_image(base, root, axes=axes, fmt=fmt, scale_factors=(), scale=scale or None,
                    axes_units=_units(base_meta, axes) or None, name=base_meta.get("name") or p.stem)
        used: set[str] = set()
        for data, meta, _ in labels:
            lab = _level0(data)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(meta.get("name") or "labels")) or "labels"
            while name in used:
                name += "_"
            used.add(name)
            laxes = _axes(lab.ndim)
            write_labels(lab, root, name=name, axes=laxes, fmt=fmt, scale_factors=(),
                         scale=_scale(meta, laxes) or None, axes_units=_units(meta, laxes) or None)
        if p.exists():
            if not (p / "zarr.json").exists() and not (p / ".zattrs").exists():
                raise ValueError(f"{p} exists and is not a zarr store; not replacing it")
            old = tmp / "old"
            os.replace(p, old)
        os.replace(tmp / "store", p)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [str(p)]
