"""The Train widget's model choice (2D or 3D) follows the data until the user picks one: a stack
(Z, Y, X) gets a 3D model, which learns from the planes nobody painted too (a stack painted on
every 6th plane, 60 s: the ovule 0.627 in 3D against 0.560 slice by slice; docs/quality.md), and
anything else a 2D one. A hint under the choice says why; a time series (its first axis labelled
"t" or "time", or planes much less alike than neighbouring pixels) or a short stack that may be
channels keeps 2D."""
from __future__ import annotations

from typing import Any

from napari_unet.core.frames import MIN_PLANES, unlike_planes

from . import _layers

TIME_LABELS = ("t", "time", "frame", "frames")


def stack_reason(image: Any, cache: dict | None = None) -> tuple[bool, str, bool]:
    """(a 3D model suits ``image``, the sentence that says why, whether that sentence is worth
    showing on its own: a stack, a time series, a few planes; not a plain 2D or RGB image).
    ``cache`` keeps the planes' likeness per array (a lazy stack is read once, not on every
    layer added)."""
    if getattr(image, "rgb", False):
        return False, f"'{image.name}' is an RGB image", False
    data = _layers.full_data(image)
    shape = tuple(data.shape)
    if len(shape) != 3:
        return False, f"'{image.name}' is {len(shape)}D", False
    labels = tuple(str(a).lower() for a in (getattr(image, "axis_labels", None) or ()))
    if labels and labels[0] in TIME_LABELS:
        return False, (f"'{image.name}' is a time series (its first axis is '{labels[0]}'): each "
                       "frame on its own"), True
    if shape[0] < MIN_PLANES:
        return False, (f"'{image.name}' has {shape[0]} planes: channels rather than a stack? "
                       "Choose 3D if they are planes"), True
    key, cache = (id(data), shape), {} if cache is None else cache
    if key not in cache:
        cache[key] = unlike_planes(data)
    alike = cache[key]
    if alike is not None:
        return False, (f"the planes of '{image.name}' differ more than neighbouring pixels do "
                       f"(correlation {alike[0]:.2f} between planes, {alike[1]:.2f} within one): "
                       "a time series, or widely spaced planes? Choose 3D for a z-stack"), True
    return True, (f"3D: '{image.name}' is a stack of {shape[0]} planes, and a 3D model learns from the "
                  "planes you did not paint too. A time series? Choose 2D"), True


class DimsChoice:
    """Mixin for TrainWidget: ``self.dims`` (the combo box), ``self.dims_hint`` (a hint label),
    ``self.start_from``, ``self.chosen_pairs()`` and ``self.is_running()`` come from the widget."""

    _dims_by_user = False

    def _dims_picked(self, *_: Any) -> None:
        """The user chose in the combo box: the data no longer decide."""
        self._dims_by_user = True
        self.dims_hint.setVisible(False)

    def suggest_dims(self, *_: Any) -> None:
        """Set 2D or 3D from the ticked training images, unless the user chose, a run is on, or
        the run continues a model (whose own dims then apply)."""
        try:
            if self._dims_by_user or self.is_running() or self.start_from.currentIndex() != 0:
                return
            images = [image for image, _paint in self.chosen_pairs()]
        except RuntimeError:   # the widget was deleted
            return
        cache = self.__dict__.setdefault("_likeness", {})
        reasons = [stack_reason(image, cache) for image in images]
        three = bool(reasons) and all(ok for ok, _why, _shown in reasons)
        self.dims.setCurrentIndex(1 if three else 0)
        if three:
            text = reasons[0][1]
        elif any(ok for ok, _why, _shown in reasons):  # stacks beside other images: why it is 2D
            text = next(f"2D: {why}" for ok, why, _shown in reasons if not ok)
        else:
            text = next((f"2D: {why}" for _ok, why, shown in reasons if shown), "")
        self.dims_hint.setText(text)
        self.dims_hint.setVisible(bool(text))
