"""OME-Zarr (OME-NGFF 0.4 / 0.5) prediction stores, and pixel-size metadata for TIFF outputs.

A prediction store is an NGFF image whose level ``0`` holds the probabilities (float32,
``c, [z,] y, x``) with a label image at ``labels/prediction/0`` (values 1..K). Arrays are
created empty, chunked on the prediction blocks, so that every block writes its own chunks
(no locks); the metadata comes from ``ome_zarr.writer``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import UserError
from .labels import labels_dtype
from .pixels import PixelSize

__all__ = ["create_prediction_store", "tiff_pixel_kwargs", "write_prediction"]

NGFF_VERSIONS = ("0.4", "0.5")
DEFAULT_NGFF = "0.5"
# label colours: class 1 (background) transparent, the others from a small palette
_PALETTE = [(255, 0, 0), (0, 200, 0), (0, 120, 255), (255, 200, 0), (200, 0, 255), (0, 220, 220)]


def _fmt(version: str):
    from ome_zarr.format import FormatV04, FormatV05

    if version not in NGFF_VERSIONS:
        raise UserError(f"NGFF version must be one of {NGFF_VERSIONS}, got {version!r}")
    return FormatV04() if version == "0.4" else FormatV05()


def _axes(names: str, pixel: PixelSize) -> list[dict]:
    out = []
    for a in names.lower():
        if a == "c":
            out.append({"name": "c", "type": "channel"})
        elif a == "t":
            out.append({"name": "t", "type": "time"})
        else:
            d = {"name": a, "type": "space"}
            if pixel.unit:
                d["unit"] = pixel.unit
            out.append(d)
    return out


def create_prediction_store(path: str | Path, spatial: Sequence[int], classes: int,
                            chunks: Sequence[int], *, pixel: PixelSize | None = None,
                            class_names: Sequence[str] | None = None,
                            class_values: Sequence[int] | None = None, name: str = "prediction",
                            version: str = DEFAULT_NGFF, extra_attrs: dict | None = None):
    """Create the (empty) NGFF prediction store at ``path``; return the root zarr group."""
    import zarr
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    fmt = _fmt(version)
    zf = 2 if version == "0.4" else 3
    pixel = pixel or PixelSize()
    spatial = tuple(int(s) for s in spatial)
    names = "tzyx" if len(spatial) == 4 else "zyx"[-len(spatial):]
    values = list(class_values or range(1, classes + 1))
    ldtype = labels_dtype(max(values))
    root = zarr.open_group(str(path), mode="w", zarr_format=zf)
    # classes first (c, [z,] y, x); a time-lapse puts t before c, as NGFF orders axes (t, c, z, y, x)
    pnames = "tc" + names[1:] if names[0] == "t" else "c" + names
    pshape = tuple(classes if a == "c" else spatial[names.index(a)] for a in pnames)
    pchunks = tuple(classes if a == "c" else chunks[names.index(a)] for a in pnames)
    kw: dict[str, Any] = {}
    if zf == 3:
        kw["dimension_names"] = list(pnames)
    root.create_array("0", shape=pshape, chunks=pchunks, dtype="float32", fill_value=0.0, **kw)
    write_multiscales_metadata(
        root, [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": pixel.for_axes(pnames.upper())}]}],
        fmt=fmt, axes=_axes(pnames, pixel), name=name)
    scale = [1.0] + pixel.for_axes(names.upper())
    labels = root.create_group("labels")
    pred = labels.create_group("prediction")
    if zf == 3:
        kw["dimension_names"] = list(names)
    pred.create_array("0", shape=spatial, chunks=tuple(chunks), dtype=ldtype, fill_value=0, **kw)
    write_multiscales_metadata(
        pred, [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale[1:]}]}],
        fmt=fmt, axes=_axes(names, pixel), name="prediction")
    colors = [{"label-value": int(v), "rgba": [0, 0, 0, 0] if i == 0 else [*_PALETTE[(i - 1) % len(_PALETTE)], 255]}
              for i, v in enumerate(values)]
    props = [{"label-value": int(v), "class": str((class_names or [])[i]) if class_names and i < len(class_names)
              else f"class {v}"} for i, v in enumerate(values)]
    write_label_metadata(labels, "prediction", colors=colors, properties=props, fmt=fmt)
    if extra_attrs:
        root.attrs.update(extra_attrs)
    return root


def tiff_pixel_kwargs(pixel: PixelSize | None, spatial_axes: str) -> dict:
    """tifffile.imwrite keyword arguments carrying ``pixel`` (resolution tags + metadata).

    X/Y go into the standard resolution tags (pixels per centimetre for metric units, so any
    TIFF reader gets them); Z spacing, the unit and all sizes go into the shaped JSON metadata
    (``spacing``/``unit`` as ImageJ names them), which :mod:`.readers` reads back.
    """
    if not pixel:
        return {}
    to_um = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "centimeter": 1e4, "meter": 1e6,
             "angstrom": 1e-4}.get(pixel.unit or "")
    meta: dict[str, Any] = {"pixel_size": {k: float(v) for k, v in pixel.sizes.items()}}
    if pixel.unit:
        meta["unit"] = {"micrometer": "um"}.get(pixel.unit, pixel.unit)
    if "z" in pixel.sizes and "Z" in spatial_axes:
        meta["spacing"] = float(pixel.sizes["z"])
    kw: dict[str, Any] = {"extra_metadata": meta}
    sx, sy = pixel.sizes.get("x"), pixel.sizes.get("y")
    if sx and sy:
        if to_um is not None:  # pixels per centimetre
            kw["resolution"] = (1e4 / (sx * to_um), 1e4 / (sy * to_um))
            kw["resolutionunit"] = 3
        else:
            kw["resolution"] = (1.0 / sx, 1.0 / sy)
            kw["resolutionunit"] = 1
    return kw


def write_prediction(path: str | Path, probs: np.ndarray, labels: np.ndarray, *,
                     pixel: PixelSize | None = None, class_names: Sequence[str] | None = None,
                     class_values: Sequence[int] | None = None, name: str = "prediction",
                     version: str = DEFAULT_NGFF) -> Path:
    """Write in-memory results (probabilities ``(classes, *spatial)``, labels) as an OME-Zarr
    prediction store at ``path``, atomically: built in a temporary folder beside it, renamed."""
    import os
    import shutil
    import tempfile

    path = Path(path)
    spatial = labels.shape
    chunks = tuple(min(s, c) for s, c in zip(spatial, (1, 16, 512, 512)[-len(spatial):]))
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        root = create_prediction_store(tmp / "store", spatial, probs.shape[0], chunks, pixel=pixel,
                                       class_names=class_names, class_values=class_values, name=name,
                                       version=version, extra_attrs={"napari_unet": {"written_by": "napari-unet"}})
        root["0"][...] = np.moveaxis(probs, 0, 1) if labels.ndim == 4 else probs  # (t, c, ...) for a movie
        root["labels/prediction/0"][...] = labels
        if path.exists():
            os.replace(path, tmp / "old")
        os.replace(tmp / "store", path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path
