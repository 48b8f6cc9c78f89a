"""The model shared by the Train, Predict and Batch widgets of one viewer."""
from __future__ import annotations

import weakref
from typing import Any

from psygnal import Signal


class ModelState:
    """Holds the current model (a torch module from napari_unet.core, or None) and where it
    came from. ``changed`` fires on every change: a new model (trained, loaded, reverted) and
    a new ``source`` (e.g. "saved to ..." after Save), so every widget showing the model line
    stays in step."""

    changed = Signal(object)

    def __init__(self) -> None:
        self.model: Any = None
        self._source: str = ""
        self.previous: tuple[Any, str] | None = None   # the model the last run replaced
        # the running training's stop event (set by the Train widget that started it): one
        # run at a time per viewer, whichever Train widget (a dock, the tabs' page) asks
        self.training: Any = None

    @property
    def source(self) -> str:
        return self._source

    @source.setter
    def source(self, value: str) -> None:
        self._source = value
        self.changed.emit(self.model)

    def set(self, model: Any, source: str, previous: tuple[Any, str] | None = None) -> None:
        """Replace the model; ``previous`` (model, source) is kept for :meth:`revert`."""
        self.model, self._source = model, source
        self.previous = previous
        self.changed.emit(model)

    def saved(self, path: Any) -> None:
        """The model was written to ``path``: every widget's model line says so."""
        self.source = f"saved to {path}"

    def revert(self) -> bool:
        """Swap the current model with the one the last training run replaced (one click
        back, and one click forward again). Returns False when there is none."""
        if self.previous is None:
            return False
        prev, src = self.previous
        self.set(prev, f"reverted: {src}", previous=(self.model, self.source))
        return True

    def describe(self) -> str:
        if self.model is None:
            return "no model yet: train one or load a model file"
        meta = getattr(self.model, "meta", {}) or {}
        names = ", ".join(meta.get("class_names", []))
        total = (meta.get("training") or {}).get("total_steps")
        steps = f", {total} steps in all" if total else ""
        from ..core.pooling import describe_pooling

        pooled = describe_pooling(meta)  # anisotropic voxels: e.g. "pooled Z x2, Y x8, X x8 (voxel 3x1x1)"
        return f"{meta.get('dims', '?')}D U-Net{' ' + pooled if pooled else ''}, classes: {names} ({self.source}{steps})"

    def require(self) -> Any:
        from ._common import UserError

        if self.model is None:
            raise UserError("No model yet: train one in the Train widget or load a model file.")
        return self.model


_STATES: "weakref.WeakKeyDictionary[Any, ModelState]" = weakref.WeakKeyDictionary()


def model_state(viewer: Any) -> ModelState:
    """The one ModelState of ``viewer`` (created on first use), held in a weak mapping keyed by
    the viewer: it goes away with the viewer, and no id() can be reused by a later viewer.
    Plugin widgets receive the viewer wrapped in a proxy, a different object per widget: key
    on the viewer itself. (A napari Viewer is a pydantic model that takes no new attributes,
    and hashes by identity, so a WeakKeyDictionary is the clean place for it.)"""
    viewer = getattr(viewer, "__wrapped__", viewer)
    state = _STATES.get(viewer)
    if state is None:
        state = _STATES[viewer] = ModelState()
    return state
