"""Layer conventions shared by the widgets and the sample data (no Qt, no torch).

Every layer the plugin makes carries ``metadata["napari_unet"] = {"role": ..., "image": ...}``
so the widgets can find an image's painting, truth, prediction and preview layers again,
even after the user renames them (renaming the image: :func:`follow_renames` keeps ``image``
in step). Label values: 0 = unlabeled, 1 = background, 2..K = classes.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

from psygnal import Signal

KEY = "napari_unet"

# class value -> colour (1 = background). Chosen to read well on a dark canvas and for the
# common colour-vision deficiencies (Okabe-Ito-like).
CLASS_COLORS = ["#56b4e9", "#e69f00", "#009e73", "#cc79a7", "#f0e442", "#d55e00", "#0072b2",
                "#ffffff"]
# per-class probability colormaps (napari names), class 1 first
PROB_COLORMAPS = ["blue", "yellow", "green", "magenta", "cyan", "red", "bop orange", "gray"]
ERROR_COLORS = {1: "#2ca02c", 2: "#ff3b30", 3: "#1e90ff", 4: "#ffcc00"}  # TP, FP, FN, wrong


def class_color(value: int) -> str:
    return CLASS_COLORS[(value - 1) % len(CLASS_COLORS)]


def paint_colormap(n_classes: int, background_visible: bool = True) -> dict:
    """Direct colormap for a painting/prediction layer: 0 transparent, 1..K class colours."""
    cmap: dict[Any, str] = {None: "transparent", 0: "transparent"}
    for v in range(1, max(n_classes, 2) + 8):
        cmap[v] = class_color(v)
    if not background_visible:
        cmap[1] = "transparent"
    return cmap


def tag(role: str, image: str | None = None, **extra: Any) -> dict:
    return {KEY: {"role": role, "image": image, **extra}}


def info(layer: Any) -> dict:
    meta = getattr(layer, "metadata", None) or {}
    value = meta.get(KEY)
    return value if isinstance(value, dict) else {}


def role(layer: Any) -> str | None:
    return info(layer).get("role")


def paint_name(image_name: str) -> str:
    return f"{image_name} paint"


def full_data(layer: Any) -> Any:
    """The layer's full-resolution array. For a multiscale layer that is level 0:
    ``np.asarray(layer.data)`` would give the smallest level instead."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def is_image(layer: Any) -> bool:
    """A user image (not one of our probability/preview/uncertainty layers). ``__class__``, not
    ``type()``: napari hands a plugin's viewer the active layer behind a proxy."""
    return layer.__class__.__name__ == "Image" and role(layer) in (None, "image")


def find_role(layers: Iterable[Any], image_name: str, wanted: str) -> Any | None:
    """The layer with ``role == wanted`` made for ``image_name`` (metadata first, then name)."""
    layers = list(layers)
    for layer in layers:
        if role(layer) == wanted and info(layer).get("image") == image_name:
            return layer
    if wanted == "paint":  # by name: a Labels layer called "<image> paint" made for no other image
        for layer in layers:
            if (layer.__class__.__name__ == "Labels" and layer.name == paint_name(image_name)
                    and info(layer).get("image") in (None, image_name)):
                return layer
    return None


class Renames:
    """Follows the renames of a viewer's layers: when an image is renamed, every layer made for
    it (``info(layer)["image"]`` was the old name: painting, truth, preview, results) is retagged
    with the new name before anyone else hears of the rename. ``renamed`` (layer, old, new)
    then fires for every renamed layer."""

    renamed = Signal(object, str, str)

    def __init__(self, layers: Any) -> None:
        self._layers = layers
        self._names: dict[int, str] = {}
        for layer in layers:
            self._watch(layer)
        layers.events.inserted.connect(lambda e: self._watch(e.value))
        layers.events.removed.connect(lambda e: self._forget(e.value))

    def _watch(self, layer: Any) -> None:
        self._names[id(layer)] = layer.name
        layer.events.name.connect(self._renamed, position="first")  # before the widgets' refresh

    def _forget(self, layer: Any) -> None:
        self._names.pop(id(layer), None)
        layer.events.name.disconnect(self._renamed)

    def _renamed(self, event: Any) -> None:
        layer = event.source
        old, new = self._names.get(id(layer)), layer.name
        self._names[id(layer)] = new
        if old is None or old == new:
            return
        if is_image(layer):
            for other in list(self._layers):
                if info(other).get("image") == old:
                    meta = dict(other.metadata)
                    meta[KEY] = {**info(other), "image": new}
                    other.metadata = meta
                    if role(other) == "paint" and other.name == paint_name(old):
                        other.name = paint_name(new)  # a painting the user has not named
        self.renamed.emit(layer, old, new)


_RENAMES: "weakref.WeakKeyDictionary[Any, Renames]" = weakref.WeakKeyDictionary()


def unwrap(obj: Any) -> Any:
    """The object behind napari's plugin proxy (a different proxy per widget and per access)."""
    return getattr(obj, "__wrapped__", obj)


def follow_renames(viewer: Any) -> Renames:
    """The viewer's :class:`Renames`, made on the first call and shared by every widget; keyed
    weakly by the (unwrapped) viewer like ``_state.model_state``."""
    viewer = unwrap(viewer)
    renames = _RENAMES.get(viewer)
    if renames is None:
        renames = _RENAMES[viewer] = Renames(viewer.layers)
    return renames


def class_names_of(layer: Any, default_classes: int = 2) -> list[str]:
    names = info(layer).get("class_names")
    if names and len(names) >= 2:
        return list(names)
    return ["background"] + ["foreground" if default_classes == 2 else f"class {i}"
                             for i in range(2, default_classes + 1)]


@contextmanager
def kept_selection(layers: Any) -> Iterator[None]:
    """Restore the layer selection (active layer and selected set) after the block: napari
    selects a layer that is added, which would take the brush away from a painting."""
    sel = layers.selection
    active, chosen = sel.active, set(sel)
    try:
        yield
    finally:
        if active is not None:
            sel.active = active  # selects only it
        else:
            sel.clear()
        sel.update(chosen)


def keep_painting_on_top(viewer: Any, image_name: str) -> None:
    """Move the painting of ``image_name`` above every other layer (previews and results
    must never hide it) without changing the selection (the brush stays where it was)."""
    paint = find_role(viewer.layers, image_name, "paint")
    if paint is None:
        return
    layers = viewer.layers
    idx = layers.index(paint)
    if idx != len(layers) - 1:
        with kept_selection(layers):
            layers.move(idx, len(layers))


@contextmanager
def result_layer(viewer: Any, image_name: str | None) -> Iterator[None]:
    """Add a result layer (prediction, overlay) inside the block: the selection stays as it was
    (a brush in use stays in use) and the painting of ``image_name``, if any, stays on top."""
    with kept_selection(viewer.layers):
        yield
    if image_name:
        keep_painting_on_top(viewer, image_name)


def train_spacing(pairs: list, dims: int) -> tuple[float, ...] | None:
    """The voxel size (Z, Y, X) for 3D training: the first image layer's ``scale`` (its last
    three values); None for 2D or an isotropic scale (napari's default of 1s included)."""
    if dims != 3 or not pairs:
        return None
    scale = tuple(float(s) for s in pairs[0][0].scale[-3:])
    if len(scale) != 3 or max(scale) <= min(scale) * (1 + 1e-6) or min(scale) <= 0:
        return None
    return scale
