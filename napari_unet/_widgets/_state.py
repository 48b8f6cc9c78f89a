"""The model shared by the Train, Predict and Batch widgets of one viewer."""
from __future__ import annotations

import weakref
from typing import Any

from psygnal import Signal


class ModelState:
    """Holds the current model (a torch module from napari_unet.core, or None) and where it
    came from; ``changed`` fires whenever it is replaced."""

    changed = Signal(object)

    def __init__(self) -> None:
        self.model: Any = None
        self.source: str = ""

    def set(self, model: Any, source: str) -> None:
        self.model, self.source = model, source
        self.changed.emit(model)

    def describe(self) -> str:
        if self.model is None:
            return "no model yet: train one or load a model file"
        meta = getattr(self.model, "meta", {}) or {}
        names = ", ".join(meta.get("class_names", []))
        return f"{meta.get('dims', '?')}D U-Net, classes: {names} ({self.source})"

    def require(self) -> Any:
        from ._common import UserError

        if self.model is None:
            raise UserError("No model yet: train one in the Train widget or load a model file.")
        return self.model


_STATES: dict[int, tuple[weakref.ref, ModelState]] = {}


def model_state(viewer: Any) -> ModelState:
    """The one ModelState of ``viewer`` (created on first use). Plugin widgets receive the
    viewer wrapped in a proxy, a different object per widget: key on the viewer itself."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    key = id(viewer)
    entry = _STATES.get(key)
    if entry is not None and entry[0]() is viewer:
        return entry[1]
    for k in [k for k, (ref, _) in _STATES.items() if ref() is None]:
        del _STATES[k]
    state = ModelState()
    _STATES[key] = (weakref.ref(viewer), state)
    return state
