"""Time-lapse images in the prediction job (core.jobs; Predict and Batch): a (T, Z, Y, X) layer (napari puts time first)
is predicted frame by frame, every frame normalised with the statistics of the whole movie, as
the command line's block engine does for OME-Zarr/TIFF inputs with a T axis; and whether a
(Z, Y, X) array's planes look like a time series rather than a z-stack (:func:`unlike_planes`)."""
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


# planes whose neighbours correlate less than this share of neighbouring pixels within a plane
# are a time series or widely spaced planes, where a 3D model mixes what moved or changed:
# z-stacks read 0.88-1.02 (ovule 0.97, the synthetic stack 1.00, StarDist's nuclei 1.02, the CHO
# stack 0.88), the HeLa time series 0.78 (there 3D scored 0.785 against 0.885 slice by slice), a
# bacteria time series 0.31 (docs/quality.md)
PLANE_LIKENESS = 0.85
MIN_PLANES = 5      # fewer planes than this: more likely channels than a stack (RGBA, 3-4 dyes)
CROP = 256          # plane_likeness reads on a centre crop of this size, on up to 6 pairs of planes


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def plane_likeness(data: Any) -> tuple[float, float] | None:
    """(mean correlation of neighbouring planes, of neighbouring rows within a plane) on a centre
    crop of up to 6 pairs of planes; None where a plane is flat (nothing to read)."""
    z, y, x = data.shape
    y0, x0 = max(0, (y - CROP) // 2), max(0, (x - CROP) // 2)
    starts = sorted({int(i) for i in np.linspace(0, z - 2, min(6, z - 1))})
    between, within = [], []
    for i in starts:
        pair = np.asarray(data[i:i + 2, y0:y0 + CROP, x0:x0 + CROP], dtype=np.float32)
        if pair[0].std() == 0 or pair[1].std() == 0:
            return None
        between.append(_corr(pair[0], pair[1]))
        within.append(_corr(pair[0][:-1], pair[0][1:]))
    return float(np.mean(between)), float(np.mean(within))


def unlike_planes(data: Any) -> tuple[float, float] | None:
    """(between, within) from :func:`plane_likeness` when a (Z, Y, X) array's planes are much less
    alike than neighbouring pixels (a time series or widely spaced planes, where a 3D model mixes
    what moved); None for a z-stack, or where nothing can be read."""
    alike = plane_likeness(data)
    if alike is not None and alike[1] > 0.5 and alike[0] < PLANE_LIKENESS * alike[1]:
        return alike
    return None
