"""Instance labels inside an OME-Zarr prediction store (``napari-unet predict --instances --format
ome-zarr``): the foreground class's probabilities at level ``0`` are split into objects
(:func:`.instances.instance_labels`, in slabs when large, read chunk by chunk) and written as a
second NGFF label image, ``labels/instances/0`` (uint16/uint32, 0 = background), with the same
axes and scale as ``labels/prediction``, listed in ``labels``' metadata so that ome-zarr's
reader and napari open it. Written under a hidden name and renamed when complete."""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .instance_outputs import foreground_index
from .instances import WHOLE_LIMIT, instance_labels

NAME = "instances"


class _Channel:
    """One class of the store's probabilities ``(c, *spatial)``, read slab by slab."""

    def __init__(self, parr: Any, index: int) -> None:
        self.parr, self.index = parr, index
        self.shape, self.dtype = tuple(parr.shape[1:]), np.dtype(parr.dtype)

    def __getitem__(self, idx: Any) -> np.ndarray:
        idx = idx if isinstance(idx, tuple) else (idx,)
        return np.asarray(self.parr[(self.index,) + idx])


def _ome(attrs: dict) -> dict:
    return attrs.get("ome", attrs)  # NGFF 0.5 nests its metadata under "ome"


def write_store_instances(store: str | os.PathLike, meta: dict, *, class_value: int | None = None,
                          threshold: float = 0.5, min_size: int = 10, seed_distance: float = 5.0,
                          sigma: float = 1.0, spacing: Sequence[float] | None = None,
                          method: str = "distance") -> tuple[str, int]:
    """Add ``labels/instances/0`` to the prediction store ``store``; return (its path, objects).

    ``spacing``: voxel size per axis for ``seed_distance``/``sigma`` (default: the store's
    pixel size). A time-lapse store (t, c, z, y, x) is split frame by frame."""
    import zarr
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_label_metadata, write_multiscales_metadata

    from .errors import UserError

    root = zarr.open_group(str(store), mode="r+")
    zf = root.metadata.zarr_format
    fmt = FormatV05() if zf == 3 else FormatV04()
    parr, pred = root["0"], root["labels/prediction/0"]
    ms = copy.deepcopy(_ome(dict(root["labels/prediction"].attrs))["multiscales"][0])
    frames = len(parr.shape) == 5
    if frames and _ome(dict(root.attrs))["multiscales"][0]["axes"][0]["name"] != "t":
        raise UserError(f"{store}: unexpected axes for a prediction store")
    idx, _ = foreground_index(meta, class_value)
    spatial = tuple(pred.shape)
    if spacing is None:
        scale = ms["datasets"][0]["coordinateTransformations"][0]["scale"]
        spacing = tuple(float(s) for s in scale[1:]) if frames else tuple(float(s) for s in scale)
    kw = dict(threshold=threshold, min_size=min_size, seed_distance=seed_distance, sigma=sigma,
              spacing=spacing, method=method)
    labels_dir = Path(store) / "labels"
    tmp_name = f".{NAME}.partial"
    for name in (tmp_name, NAME):
        shutil.rmtree(labels_dir / name, ignore_errors=True)
    group = root["labels"].create_group(tmp_name)
    extra = {"dimension_names": [a["name"] for a in ms["axes"]]} if zf == 3 else {}
    big = int(np.prod(spatial)) > WHOLE_LIMIT
    if frames:
        found = [instance_labels(np.asarray(parr[t, idx]), **kw) for t in range(spatial[0])] if not big else None
        dtype = np.uint32 if big or max(int(f.max(initial=0)) for f in found) >= 65536 else np.uint16
        arr = group.create_array("0", shape=spatial, chunks=pred.chunks, dtype=dtype, fill_value=0, **extra)
        n = 0
        for t in range(spatial[0]):
            lab = found[t] if found is not None else instance_labels(np.asarray(parr[t, idx]), **kw)
            arr[t] = lab
            n = max(n, int(lab.max(initial=0)))  # ids are per frame
    elif not big:
        lab = instance_labels(np.asarray(parr[idx]), **kw)
        arr = group.create_array("0", shape=spatial, chunks=pred.chunks, dtype=lab.dtype, fill_value=0, **extra)
        arr[...] = lab
        n = int(lab.max(initial=0))
    else:  # slabs read from the store, ids written straight into it
        arr = group.create_array("0", shape=spatial, chunks=pred.chunks, dtype=np.uint32, fill_value=0, **extra)
        instance_labels(_Channel(parr, idx), out=arr, **kw)
        n = max((int(np.asarray(arr[s:s + pred.chunks[0]]).max(initial=0))
                 for s in range(0, spatial[0], pred.chunks[0])), default=0)
    write_multiscales_metadata(group, ms["datasets"], fmt=fmt, axes=ms["axes"], name=NAME)
    os.replace(labels_dir / tmp_name, labels_dir / NAME)
    root = zarr.open_group(str(store), mode="r+")
    lg = root["labels"]
    listed = [x for x in _ome(dict(lg.attrs)).get("labels", []) if x != NAME]
    if zf == 3:
        lg.attrs["ome"] = {**_ome(dict(lg.attrs)), "labels": listed}
    else:
        lg.attrs["labels"] = listed
    write_label_metadata(lg, NAME, fmt=fmt, properties=[{"label-value": 0, "meaning": "background"}])
    return str(Path(store) / "labels" / NAME / "0"), n
