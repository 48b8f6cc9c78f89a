"""Input checks shared by prediction and training (numpy only): one validator per kind of input.

- images: :func:`as_channels_first` (shape, dtype, channels for a ``dims``-D model),
  :func:`prepare_image` (the same against a model's metadata), :func:`check_finite` (NaN/inf and
  the float32 range);
- training images: :func:`check_image` (the image checks plus NaN/inf);
- labels: :func:`napari_unet.core.labels.check_labels` (re-exported here) and, for paintings,
  :func:`check_train_labels` on top of it;
- options: :func:`check_threshold`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UserError, UserTypeError, option, say
from .labels import check_labels, labels_dtype
from .limits import check_label_range

__all__ = ["as_channels_first", "guess_channel_axis", "prepare_image", "check_finite", "check_threshold", "check_labels",
           "check_image", "check_train_labels", "unpainted_to_background", "F32_MAX"]


def as_channels_first(image: Any, name: str, dims: int, channel_axis: int | None,
                      in_channels: int | None = None) -> np.ndarray:
    """Check an image for a ``dims``-D model and return a channels-first view (no copy).

    Shared by prediction and training so that both accept and refuse the same images with the
    same messages. ``in_channels``: the model's channel count, when there is a model.
    """
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        if isinstance(image, (list, tuple)):
            image = np.asarray(image)
        else:
            raise UserTypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if not isinstance(image, np.ndarray):
        image = np.asarray(image)
    if image.dtype.kind not in "buif":
        raise UserTypeError(f"{name} dtype {image.dtype} is not supported; use an integer or float image")
    if image.size == 0:
        raise UserError(f"{name} is empty (shape {image.shape})")
    if channel_axis is not None:
        if not isinstance(channel_axis, (int, np.integer)) or not -image.ndim <= channel_axis < image.ndim:
            raise UserError(f"{option('channel_axis', repr(channel_axis))} is out of range for {name} of shape {image.shape}")
        if in_channels is not None and image.shape[channel_axis] != in_channels:
            raise UserError(f"{name} has {image.shape[channel_axis]} channels on axis {channel_axis} "
                             f"but the model expects {in_channels}")
        image = np.moveaxis(image, channel_axis, 0)
    else:
        if in_channels not in (None, 1) and image.ndim == dims:  # no axis that could hold them
            raise UserError(f"the model takes {in_channels} channels, {name} has 1 (shape {tuple(image.shape)})")
        if in_channels not in (None, 1):
            raise UserError(f"the model expects {in_channels} channels: pass {option('channel_axis', 'N')} to say which "
                             f"axis of {name} holds them")
        if image.ndim == 3 and image.shape[-1] in (3, 4) and min(image.shape[:2]) > 4:
            raise UserError(f"{name} of shape {image.shape} looks like RGB(A) but takes 1 channel "
                             f"here: convert it to grayscale, or pass {option('channel_axis', -1)} to use its "
                             "channels (with a model trained on them)")
        image = image[None]
    spatial = image.ndim - 1
    if dims == 2 and spatial not in (2, 3):
        raise UserError(f"a 2D model{say(' (dims=2)', '')} takes (Y, X) or (Z, Y, X) images; {name} has "
                         f"{spatial} spatial dims (shape {image.shape[1:]})")
    if dims == 3 and spatial != 3:
        hint = say("; use a 2D model (dims=2)", "; use a 2D model (train with --dims 2)") if spatial == 2 else ""
        raise UserError(f"a 3D model{say(' (dims=3)', '')} takes (Z, Y, X) volumes; {name} has {spatial} "
                         f"spatial dims (shape {image.shape[1:]}){hint}")
    return image


MAX_GUESSED_CHANNELS = 8


def guess_channel_axis(shape: tuple[int, ...], *, spatial_shape: tuple[int, ...] | None = None,
                       in_channels: int | None = None) -> int | None:
    """The axis of an image of ``shape`` that holds channels, when a file's layout leaves no
    doubt, else None (the caller then says what to pass). For files given on the command line,
    where an RGB TIFF or PNG arrives as ``(Y, X, 3)`` and a multi-channel one often as
    ``(C, Y, X)``; the Python API never guesses.

    ``spatial_shape`` (training: the labels' shape): the axis whose removal leaves exactly that
    shape. ``in_channels`` (prediction: the model's channel count, above 1): an axis of that size.
    When the last axis qualifies it wins (the interleaved RGB convention napari also follows);
    otherwise exactly one axis must qualify. Only axes of at most ``MAX_GUESSED_CHANNELS``
    values are channels (a longer one is a spatial axis).
    """
    shape = tuple(int(v) for v in shape)
    if spatial_shape is not None:
        spatial_shape = tuple(int(v) for v in spatial_shape)
        if len(shape) != len(spatial_shape) + 1:
            return None
        axes = [a for a in range(len(shape)) if shape[:a] + shape[a + 1:] == spatial_shape]
    elif in_channels is not None and in_channels > 1:
        axes = [a for a in range(len(shape)) if shape[a] == in_channels]
    else:
        return None
    axes = [a for a in axes if shape[a] <= MAX_GUESSED_CHANNELS]
    if not axes:
        return None
    if axes[-1] == len(shape) - 1:
        return -1
    return axes[0] if len(axes) == 1 else None


def prepare_image(image: Any, meta: dict, channel_axis: int | None) -> np.ndarray:
    """Check ``image`` against the model and return a channels-first view (no copy)."""
    return as_channels_first(image, "image", meta["dims"], channel_axis, meta["in_channels"])


F32_MAX = float(np.finfo(np.float32).max)


def check_finite(image: np.ndarray, chunk_bytes: int = 64 << 20, *, name: str = "image",
                 doing: str = "predicting") -> None:
    """Raise UserError if a float image holds NaN/inf, or (float64) finite values beyond the
    float32 range the model computes in (checked in chunks, no full-size temp)."""
    if image.dtype.kind != "f":
        return
    flat_axis = int(np.argmax(image.shape))
    n = image.shape[flat_axis]
    per = max(1, int(chunk_bytes // max(1, image.nbytes // n)))
    wide = image.dtype.itemsize > 4
    for s in range(0, n, per):
        part = np.take(image, range(s, min(n, s + per)), axis=flat_axis) if flat_axis else image[s:s + per]
        if not np.isfinite(part).all():
            raise UserError(f"{name} contains NaN or infinite values; replace them "
                            f"(e.g. numpy.nan_to_num) before {doing}")
        if wide and part.size:
            big = float(np.abs(part).max())
            if big > F32_MAX:
                raise UserError(f"{name} holds values up to {big:.3g}, beyond the float32 range "
                                f"(about {F32_MAX:.3g}) the model computes in; rescale it before {doing}")


def check_threshold(threshold: float | None, classes: int) -> None:
    """A threshold is a probability (0..1) and needs a two-class model; checked before predicting."""
    if threshold is None:
        return
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)):
        raise UserTypeError(f"threshold must be a number between 0 and 1, got {threshold!r}")
    if not 0.0 <= float(threshold) <= 1.0:
        raise UserError(f"{option('threshold', threshold)}: a threshold is a probability between 0 and 1")
    if classes != 2:
        raise UserError(f"{option('threshold', threshold)} needs a two-class model, this one has "
                        f"{classes} classes (its labels are the most probable class)")


def check_image(image: Any, name: str, dims: int, channel_axis: int | None) -> np.ndarray:
    """Return a channels-first view ``(C, *spatial)`` of a training image after checking it
    (the same checks and messages as prediction, plus NaN/inf)."""
    image = as_channels_first(image, name, dims, channel_axis)
    check_finite(image, name=name, doing="training")
    return image


def check_train_labels(labels: Any, name: str, spatial_shape: tuple[int, ...],
                       image_name: str, unpainted_is_background: bool) -> np.ndarray:
    """Integer labels of the image's spatial shape; 0 = unlabeled (or background, see option)."""
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise UserTypeError(f"{name} must be a numpy array, got {type(labels).__name__}")
    arr = check_labels(labels, name, whole_floats=False)
    if tuple(arr.shape) != tuple(spatial_shape):
        raise UserError(f"{name} has shape {tuple(arr.shape)} but {image_name} has shape "
                         f"{tuple(spatial_shape)}; labels must match the image pixel for pixel")
    if arr.size:
        check_label_range(int(arr.max()), name)
    return unpainted_to_background(arr) if unpainted_is_background else arr


def unpainted_to_background(labels: np.ndarray) -> np.ndarray:
    """A full mask whose 0 means background: 0 becomes class 1 (background)."""
    return np.where(labels == 0, 1, labels).astype(labels_dtype(int(labels.max(initial=0))))
