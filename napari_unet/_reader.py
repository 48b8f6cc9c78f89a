"""napari reader contribution for napari-unet's own TIFF outputs: ``<stem>_labels.tif`` opens as
a Labels layer and ``<stem>_probs.tif`` as one image layer per class, with the pixel size recorded
in the file as the layer scale. Files napari-unet did not write are left to other readers."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable


def get_reader(path: Any) -> Callable | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(str(path))
    name = p.name.lower()
    if not name.endswith(("_labels.tif", "_probs.tif", "_labels.tiff", "_probs.tiff")):
        return None
    from .core.outputs import is_ours

    if not is_ours(p):
        return None
    return read_output


def _scale(p: Path, nd: int) -> dict:
    from .core.readers import input_pixel_size

    px = input_pixel_size(p)
    if not px:
        return {}
    axes = "TZYX"[-nd:] if nd == 4 else "ZYX"[-nd:]
    scale = px.for_axes(axes)
    out: dict = {"scale": scale}
    if px.unit:
        out["units"] = [px.unit] * nd
    return out


def read_output(path: Any) -> list[tuple]:
    import tifffile

    p = Path(str(path[0] if isinstance(path, (list, tuple)) else path))
    data = tifffile.memmap(p, mode="r") if _contiguous(p) else tifffile.imread(p)
    stem = p.name.rsplit("_", 1)[0]
    if p.name.lower().startswith(f"{stem.lower()}_labels"):
        return [(data, {"name": f"{stem} labels", **_scale(p, data.ndim)}, "labels")]
    classes = data.shape[0]
    meta = {"name": [f"{stem} p(class {k + 1})" for k in range(classes)], "channel_axis": 0,
            "contrast_limits": [(0.0, 1.0)] * classes, "blending": "additive",
            "visible": [k > 0 for k in range(classes)], **_scale(p, data.ndim - 1)}
    return [(data, meta, "image")]


def _contiguous(p: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(p) as t:
            return t.series[0].dataoffset is not None
    except Exception:
        return False
