"""Paintings survive crashes: debounced, atomic TIFF autosave and reload.

A painting is saved next to its image's source file (``<stem>_paint.tif``) when the image came
from a writable folder, else in the per-user data folder, keyed by a hash of the image's name
and shape. Class names go to a small JSON file beside it. Writing happens in a worker thread
on a copy of the data, so painting never stutters.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Container, Iterable

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from . import _layers

DEBOUNCE_MS = 1500


def data_dir() -> Path:
    env = os.environ.get("NAPARI_UNET_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-unet", appauthor=False))


def paint_shape(image_layer: Any) -> tuple[int, ...]:
    shape = tuple(image_layer.data.shape if not image_layer.multiscale else image_layer.data[0].shape)
    return shape[:-1] if image_layer.rgb else shape


def autosave_path(image_layer: Any, taken: Container[Path] = ()) -> Path:
    """Where the painting of ``image_layer`` is saved; never one of ``taken`` (the files of the
    other paintings open in the viewer: two paintings must not share a file)."""
    shape = paint_shape(image_layer)
    src = getattr(getattr(image_layer, "source", None), "path", None)
    if src:
        p = Path(src)
        if p.is_file() and os.access(p.parent, os.W_OK):
            stem = p.name.split(".")[0] or p.stem
            if p.parent / f"{stem}_paint.tif" not in taken:
                return p.parent / f"{stem}_paint.tif"
    key = hashlib.sha1(f"{image_layer.name}|{shape}".encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", image_layer.name).strip("_")[:60] or "image"
    path, n = data_dir() / "paintings" / f"{safe}-{key}.tif", 1
    while path in taken:
        n += 1
        path = data_dir() / "paintings" / f"{safe}-{key}-{n}.tif"
    return path


def load_painting(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray | None, list[str] | None]:
    """The saved painting at ``path`` if it exists and has ``shape`` (and its class names)."""
    if not path.is_file():
        return None, None
    import tifffile

    try:
        data = tifffile.imread(path)
    except Exception:
        return None, None
    if tuple(data.shape) != tuple(shape):
        return None, None
    names = None
    side = path.with_suffix(".json")
    if side.is_file():
        try:
            names = json.loads(side.read_text()).get("class_names")
        except (OSError, ValueError):
            names = None
    return np.ascontiguousarray(data), names


def _write(path: Path, data: np.ndarray, class_names: list[str]) -> Path:
    from napari_unet.core.io import atomic_path, write_tiff

    path.parent.mkdir(parents=True, exist_ok=True)
    write_tiff(path, data, axes="ZYX"[-data.ndim:] if data.ndim <= 3 else None)
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"class_names": class_names}, indent=1))
    return path


def _on_undo_redo(layer: Any, callback: Any) -> None:
    """Call ``callback`` after the layer's undo/redo (Ctrl+Z, Ctrl+Shift+Z): napari's Labels
    rewrites the data in place there and emits neither ``paint`` nor ``data``, so an undone
    stroke would otherwise come back from the autosave on reopening."""
    for name in ("undo", "redo"):
        original = getattr(layer, name, None)
        if original is None or getattr(original, "_napari_unet_autosave", False):
            continue

        def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
            result = _original(*args, **kwargs)
            callback()
            return result

        wrapped._napari_unet_autosave = True  # type: ignore[attr-defined]
        setattr(layer, name, wrapped)  # the key bindings call layer.undo()/redo() on the instance


def _key(layer: Any) -> int:
    return id(_layers.unwrap(layer))  # the layer, not the plugin proxy in front of it


class Autosaver(QObject):
    """Watches painting layers and saves each one ``DEBOUNCE_MS`` after its last change;
    ``saved`` (the path) fires on the main thread after each save."""

    saved = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._watched: dict[int, tuple[Any, Path, QTimer]] = {}
        self._workers: list[Any] = []
        self.last_saved: Path | None = None

    def watch(self, layer: Any, path: Path) -> None:
        if _key(layer) in self._watched:
            return
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(DEBOUNCE_MS)
        timer.timeout.connect(lambda: self.save_now(layer))
        self._watched[_key(layer)] = (_layers.unwrap(layer), path, timer)

        def restart(event: Any = None) -> None:
            try:
                timer.start()
            except RuntimeError:  # the widget (and its timer) is gone
                pass

        layer.events.paint.connect(restart)
        layer.events.data.connect(restart)
        _on_undo_redo(layer, restart)

    def path_of(self, layer: Any) -> Path | None:
        entry = self._watched.get(_key(layer))
        return entry[1] if entry else None

    def paths(self, layers: Iterable[Any]) -> set[Path]:
        """The files of the watched paintings among ``layers``."""
        return {entry[1] for layer in layers if (entry := self._watched.get(_key(layer)))
                and entry[0] is _layers.unwrap(layer)}

    def move(self, layer: Any, path: Path) -> bool:
        """Save ``layer`` to ``path`` from now on (its image was renamed): what was saved goes
        there now and the old files go. Refused (False, the old file kept) when ``path`` already
        holds a saved painting: another image's, never overwritten."""
        entry = self._watched.get(_key(layer))
        if entry is None or entry[1] == path:
            return entry is not None
        if path.exists() or path.with_suffix(".json").exists():
            return False
        old, timer = entry[1], entry[2]
        self._watched[_key(layer)] = (_layers.unwrap(layer), path, timer)
        if old.is_file():  # strokes were saved: keep them under the new name only
            timer.stop()
            self.save_now(layer, wait=True)
            for stale in (old, old.with_suffix(".json")):
                stale.unlink(missing_ok=True)
        return True

    def changed(self, layer: Any) -> None:
        """Schedule a save (e.g. after the class list changed)."""
        entry = self._watched.get(_key(layer))
        if entry:
            entry[2].start()

    def save_now(self, layer: Any, *, wait: bool = False) -> None:
        from napari.qt.threading import create_worker

        entry = self._watched.get(_key(layer))
        if entry is None:
            return
        _, path, _ = entry
        data = np.array(layer.data, copy=True)
        names = _layers.class_names_of(layer)
        if wait:
            self._done(_write(path, data, names))
            return
        worker = create_worker(_write, path, data, names, _start_thread=False)
        worker.returned.connect(self._done)
        worker.finished.connect(lambda: self._workers.remove(worker) if worker in self._workers else None)
        self._workers.append(worker)
        worker.start()

    def _done(self, path: Path) -> None:
        self.last_saved = path
        try:
            self.saved.emit(path)
        except RuntimeError:  # the widget (and this QObject) is gone
            pass

    def flush(self) -> None:
        """Save every layer with a pending change now (synchronously)."""
        for layer, _path, timer in list(self._watched.values()):
            if timer.isActive():
                timer.stop()
                self.save_now(layer, wait=True)

    def busy(self) -> bool:
        return bool(self._workers)
