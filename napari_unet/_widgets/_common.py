"""Small Qt helpers shared by the widgets: notifications, layer pickers, the worker adapter."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import QComboBox, QFrame, QLabel, QScrollArea, QSizePolicy, QStyle, QVBoxLayout, QWidget

from . import _layers


from napari_unet.core.errors import UserError  # noqa: E402  (one class for the API, CLI and widgets)


# ----------------------------------------------------------------------------- layout

class _Scroll(QScrollArea):
    """A frameless, vertical-only scroll area as wide as its content needs: a dock never cuts
    the widget's right side off. Its height hint stays QScrollArea's (capped at 24 text lines):
    a dock asks for a moderate height and scrolls in whatever it gets."""

    def _bar(self) -> int:   # room for the vertical bar (napari's style draws it wider than its hint)
        bar = self.verticalScrollBar()
        return max(bar.sizeHint().width(), bar.width() if bar.isVisible() else 0,
                   self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self)) + 2

    def eventFilter(self, obj, ev):  # noqa: N802 (Qt)
        # the content's layout changed (polished, a label's text grew): the dock asks again
        if obj is self.widget() and ev.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(obj, ev)

    def sizeHint(self):  # noqa: N802 (Qt)
        hint, w = super().sizeHint(), self.widget()
        if w is not None:
            hint.setWidth(w.sizeHint().width() + self._bar())
        return hint

    def minimumSizeHint(self):  # noqa: N802 (Qt)
        hint, w = super().minimumSizeHint(), self.widget()
        if w is not None:
            hint.setWidth(w.minimumSizeHint().width() + self._bar())
        return hint


def scrolled_layout(widget: QWidget) -> QVBoxLayout:
    """The layout a dock widget fills, inside a scroll area: docked one by one, the plugin's
    widgets stacked taller than a laptop screen (Train and Predict ask for 1,230 px) and napari
    grew the window past the screen's bottom; now each scrolls in the room it gets. In the
    tabbed dock (tabs.py) a page gets the whole height and scrolls the same way."""
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    scroll = _Scroll()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    inner = QWidget()
    scroll.setWidget(inner)
    outer.addWidget(scroll)
    return QVBoxLayout(inner)


# ----------------------------------------------------------------------------- notifications
# Looked up on every call so tests can monkeypatch napari.utils.notifications.show_*.

def show_error(msg: str) -> None:
    from napari.utils import notifications

    notifications.show_error(msg)


def show_warning(msg: str) -> None:
    from napari.utils import notifications

    notifications.show_warning(msg)


def show_info(msg: str) -> None:
    from napari.utils import notifications

    notifications.show_info(msg)


def user_action(method: Callable) -> Callable:
    """Decorate a button handler: a UserError (or a core ValueError/TypeError, whose messages
    name the problem) becomes an error notification instead of a traceback dialog."""

    @functools.wraps(method)
    def wrapper(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (UserError, ValueError, TypeError, FileNotFoundError) as e:
            show_error(str(e))
            return None

    return wrapper


# ----------------------------------------------------------------------------- layer pickers

class LayerCombo(QComboBox):
    """A combo box listing the viewer's layers that pass ``accept``; follows adds, removals
    and renames, and keeps the current choice when it can."""

    def __init__(self, viewer: Any, accept: Callable[[Any], bool], parent: QWidget | None = None,
                 placeholder: str = "(none)") -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._accept = accept
        self._placeholder = placeholder
        self.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        events = viewer.layers.events
        for ev in (events.inserted, events.removed, events.moved):
            ev.connect(self.refresh)
        events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.destroyed.connect(functools.partial(_disconnect_all, viewer, self.refresh))
        self.refresh()

    def _watch_name(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            layer.events.name.connect(self.refresh)

    def refresh(self, event: Any = None) -> None:
        try:
            current = self.currentText()
        except RuntimeError:  # the C++ side is gone
            return
        names = [layer.name for layer in self._viewer.layers if self._accept(layer)]
        self.blockSignals(True)
        self.clear()
        if names:
            self.addItems(names)
        else:
            self.addItem(self._placeholder)
        if current in names:
            self.setCurrentText(current)
        else:
            selected = [layer.name for layer in self._viewer.layers.selection if self._accept(layer)]
            if selected:
                self.setCurrentText(selected[0])
        self.blockSignals(False)
        self.currentTextChanged.emit(self.currentText())

    def layer(self) -> Any | None:
        return find_layer(self._viewer, self.currentText(), self._accept)

    def set_layer(self, name: str) -> None:
        self.refresh()
        self.setCurrentText(name)


def _disconnect_all(viewer: Any, callback: Callable, *_: Any) -> None:
    events = viewer.layers.events
    for ev in (events.inserted, events.removed, events.moved):
        try:
            ev.disconnect(callback)
        except Exception:
            pass
    for layer in viewer.layers:
        try:
            layer.events.name.disconnect(callback)
        except Exception:
            pass


def find_layer(viewer: Any, name: str, accept: Callable[[Any], bool] = lambda _: True) -> Any | None:
    """The layer called ``name`` (if it passes ``accept``), else None."""
    for layer in viewer.layers:
        if layer.name == name and accept(layer):
            return layer
    return None


def image_layers(viewer: Any) -> list[Any]:
    return [layer for layer in viewer.layers if _layers.is_image(layer)]


def selected_or_all_images(viewer: Any) -> list[Any]:
    chosen = [layer for layer in viewer.layers.selection if _layers.is_image(layer)]
    return chosen or image_layers(viewer)


# ----------------------------------------------------------------------------- worker adapter

@dataclass(frozen=True)
class Failed:
    """Returned by a guarded generator when the engine refused the input (a ValueError etc.)."""

    message: str


def guarded(gen_fn: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """Wrap a generator function so the engine's input errors end it with a ``Failed`` result
    (shown as one clear message) instead of a traceback; real bugs still go to ``errored``."""

    @functools.wraps(gen_fn)
    def run(*args: Any, **kwargs: Any):
        try:
            return (yield from gen_fn(*args, **kwargs))
        except (ValueError, TypeError, FileNotFoundError, MemoryError) as e:
            return Failed(str(e) or type(e).__name__)

    return run


def start_worker(gen_fn: Callable[[], Iterator], *, yielded: Callable | None = None,
                 returned: Callable | None = None, finished: Callable | None = None,
                 errored: Callable | None = None):
    """Run ``gen_fn()`` in napari's generator thread worker. ``returned`` gets the generator's
    return value unless it was a ``Failed`` (then an error notification is shown);
    ``finished`` always runs (success, error or quit), so re-enable buttons there."""
    from napari.qt.threading import create_worker

    worker = create_worker(guarded(gen_fn), _start_thread=False)
    if yielded is not None:
        worker.yielded.connect(yielded)

    def _returned(value: Any) -> None:
        if isinstance(value, Failed):
            show_error(value.message)
        elif returned is not None:
            returned(value)

    worker.returned.connect(_returned)
    if errored is not None:
        worker.errored.connect(errored)
    if finished is not None:
        worker.finished.connect(finished)
    worker.start()
    return worker


# ----------------------------------------------------------------------------- looks

def heading(text: str) -> QLabel:
    label = QLabel(f"<b>{text}</b>")
    label.setContentsMargins(0, 6, 0, 0)
    return label


def hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #9aa0a6; font-size: 11px;")
    label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return label


def separator() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.HLine)
    line.setFrameShadow(QFrame.Sunken)
    return line
