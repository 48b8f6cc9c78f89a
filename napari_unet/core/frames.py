"""Time-lapse images in the prediction job (core.jobs; Predict and Batch): a (T, Z, Y, X) layer (napari puts time first)
is predicted frame by frame, every frame normalised with the statistics of the whole movie, as
the command line's block engine does for OME-Zarr/TIFF inputs with a T axis."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np


def is_time_lapse(shape: tuple[int, ...], channel_axis: int | None) -> bool:
    """Four spatial axes (after the channel axis): T first, then (Z, Y, X)."""
    n = len(shape)
    return n - (channel_axis is not None) == 4 and (channel_axis is None or channel_axis % n != 0)


def frame_channel_axis(ndim: int, channel_axis: int | None) -> int | None:
    return None if channel_axis is None else channel_axis % ndim - 1


def spatial_axes(nd: int) -> str:
    return "TZYX" if nd == 4 else "ZYX"[-nd:]


def iter_predict_frames(model: Any, image: np.ndarray, *, tile: Any = "auto",
                        channel_axis: int | None = None, out: np.ndarray | None = None,
                        batch_size: Any = "auto", device: Any = "auto") -> Iterator[Any]:
    """Like ``iter_predict`` for a time-lapse: yields PredictProgress over all frames' tiles,
    then PredictDone with probabilities ``(classes, T, *frame)``."""
    from napari_unet.core.normalize import percentile_stats
    from napari_unet.core.predict import PredictDone, PredictProgress, iter_predict, prepare_image

    meta = model.meta
    fca = frame_channel_axis(image.ndim, channel_axis)
    frames = image.shape[0]
    frame_spatial = prepare_image(image[0], meta, fca).shape[1:]
    cf = image[None] if channel_axis is None else np.moveaxis(image, channel_axis % image.ndim, 0)
    norm = meta.get("normalization", {})
    stats = percentile_stats(cf, norm.get("low", 1.0), norm.get("high", 99.8), channel_axis=0)
    if out is None:
        out = np.empty((meta["classes"], frames, *frame_spatial), np.float32)
    for t in range(frames):
        gen = iter_predict(model, image[t], tile=tile, channel_axis=fca, out=out[:, t], stats=stats,
                           batch_size=batch_size, device=device)
        try:
            for ev in gen:
                if isinstance(ev, PredictProgress):
                    yield PredictProgress(t * ev.total + ev.done, frames * ev.total, ev.tile_shape)
        finally:
            gen.close()
    yield PredictDone(out)
