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
        self.previous: tuple[Any, str] | None = None   # the model a continued run started from

    def set(self, model: Any, source: str, previous: tuple[Any, str] | None = None) -> None:
        """Replace the model; ``previous`` (model, source) is kept for :meth:`revert`."""
        self.model, self.source = model, source
        self.previous = previous
        self.changed.emit(model)

    def revert(self) -> bool:
        """Swap the current model with the one the last continued run started from (one
        click back, and one click forward again). Returns False when there is none."""
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
        return f"{meta.get('dims', '?')}D U-Net, classes: {names} ({self.source}{steps})"

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
