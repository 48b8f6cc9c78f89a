"""Live preview plumbing: what the user is looking at, handed safely to the training thread.

The main thread keeps ``PreviewSource`` up to date (dims or selection changed); the training
thread calls it (never touching a layer) and gets ``(key, image)``; the Preview event comes
back to the main thread with the same key, and ``show_preview`` writes it into the
"<image> preview" layer.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import _layers

SLAB = 16  # z-slices around the current one that a 3D model previews


class PreviewSource:
    def __init__(self, dims: int = 2) -> None:
        self.dims = dims
        self._lock = threading.Lock()
        self._current: tuple[Any, np.ndarray] | None = None

    def update(self, viewer: Any, image_layer: Any | None) -> None:
        """Main thread: remember the slice (2D model) or slab (3D model) now shown."""
        if image_layer is None:
            with self._lock:
                self._current = None
            return
        data = _layers.full_data(image_layer)
        nd = len(data.shape) - (1 if image_layer.rgb else 0)
        if nd == 2:
            key, part = (image_layer.name, None, None), data
        else:
            z = int(round(image_layer.world_to_data(viewer.dims.point)[-3]))
            z = min(max(z, 0), data.shape[0] - 1)
            if self.dims == 2:
                key, part = (image_layer.name, z, z + 1), data[z]
            else:
                z0 = max(0, min(z - SLAB // 2, data.shape[0] - SLAB))
                z1 = min(data.shape[0], z0 + SLAB)
                key, part = (image_layer.name, z0, z1), data[z0:z1]
        part = np.asarray(part)  # only what is previewed is read (lazy arrays stay lazy)
        # RGB: channels first, as the model (trained with channel_axis) takes them
        current = (key, np.moveaxis(part, -1, 0) if image_layer.rgb else part)
        with self._lock:
            self._current = current

    def __call__(self) -> tuple[Any, np.ndarray] | None:
        """Training thread: the latest (key, image) or None."""
        with self._lock:
            return self._current


def preview_layer(viewer: Any, image: Any) -> Any:
    """The "<image> preview" layer, created (zeros, additive, so invisible until the first
    preview) if missing. Creating it leaves the user's layer selection as it was: napari
    selects a new layer, which would take the brush away from a painting in progress."""
    layer = _layers.find_role(viewer.layers, image.name, "preview")
    if layer is not None:
        return layer
    shape = tuple(_layers.full_data(image).shape)
    shape = shape[:-1] if image.rgb else shape
    nd = len(shape)
    with _layers.kept_selection(viewer.layers):
        layer = viewer.add_image(
            np.zeros(shape, np.float32), name=f"{image.name} preview", colormap="inferno",
            contrast_limits=(0.0, 1.0), blending="additive", opacity=0.6,
            scale=image.scale[-nd:], translate=image.translate[-nd:],
            metadata=_layers.tag("preview", image.name))
    _layers.keep_painting_on_top(viewer, image.name)
    return layer


def show_preview(viewer: Any, key: Any, probabilities: np.ndarray) -> Any | None:
    """Main thread: write the foreground probability (1 - p(background)) into the image's
    preview layer (created on first use). Returns the layer."""
    if key is None:
        return None
    name, z0, z1 = key
    image = next((layer for layer in viewer.layers if layer.name == name), None)
    if image is None:
        return None
    fg = 1.0 - probabilities[0]
    layer = preview_layer(viewer, image)
    if z0 is None:
        layer.data[...] = fg
    elif fg.ndim == layer.data.ndim - 1:  # a 2D model's slice
        layer.data[z0] = fg
    else:
        layer.data[z0:z1] = fg
    layer.refresh()
    return layer


def clear_preview(viewer: Any, key: Any) -> None:
    """Main thread: empty the image's preview layer, if it has one (a model that cannot predict
    that image must not leave another model's preview in place)."""
    layer = None if key is None else _layers.find_role(viewer.layers, key[0], "preview")
    if layer is not None:
        layer.data[...] = 0
        layer.refresh()
