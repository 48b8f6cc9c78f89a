"""Annotate: one click gives an image its painting layer, with a class list and autosave."""
from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (QHBoxLayout, QInputDialog, QLabel, QListWidget, QListWidgetItem,
                            QMessageBox, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from . import _layers
from ._autosave import Autosaver, autosave_path, load_painting, paint_shape
from ._common import LayerCombo, UserError, heading, hint, scrolled_layout, show_info, user_action

DEFAULT_CLASSES = ["background", "foreground"]


def _swatch(color: str) -> QIcon:
    pm = QPixmap(14, 14)
    pm.fill(QColor(color))
    return QIcon(pm)


class AnnotateWidget(QWidget):
    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.autosaver = Autosaver(self)
        self.autosaver.saved.connect(self._autosaved)
        self._removed: tuple | None = None  # (layer, value, name, flat indices of its strokes)

        self.image_combo = LayerCombo(napari_viewer, _layers.is_image, placeholder="(open an image)")
        self.create_btn = QPushButton("Start painting")
        self.create_btn.setToolTip("Create this image's painting layer (or re-attach the saved one)")
        self.create_btn.clicked.connect(self.create_paint_layer)

        self.class_list = QListWidget()
        self.class_list.setMaximumHeight(130)
        self.class_list.currentRowChanged.connect(self._select_class)
        self.class_list.itemChanged.connect(self._item_renamed)
        self.add_btn = QPushButton("Add")
        self.rename_btn = QPushButton("Rename")
        self.remove_btn = QPushButton("Remove")
        self.add_btn.clicked.connect(lambda: self.add_class())
        self.rename_btn.clicked.connect(self._rename_dialog)
        self.remove_btn.clicked.connect(lambda: self.remove_class())
        self.undo_remove_btn = QPushButton("Undo remove")
        self.undo_remove_btn.setEnabled(False)
        self.undo_remove_btn.setToolTip("Bring back the last removed class and its strokes")
        self.undo_remove_btn.clicked.connect(lambda: self.undo_remove())

        self.brush = QSpinBox()
        self.brush.setRange(1, 200)
        self.brush.setValue(8)
        self.brush.setSuffix(" px")
        self.brush.valueChanged.connect(self._set_brush)
        self.status = hint("")

        lay = scrolled_layout(self)
        lay.addWidget(heading("Image"))
        lay.addWidget(self.image_combo)
        lay.addWidget(self.create_btn)
        lay.addWidget(heading("Classes"))
        lay.addWidget(self.class_list)
        row = QHBoxLayout()
        for b in (self.add_btn, self.rename_btn, self.remove_btn):
            row.addWidget(b)
        lay.addLayout(row)
        lay.addWidget(self.undo_remove_btn)
        row = QHBoxLayout()
        row.addWidget(QLabel("Brush size"))
        row.addWidget(self.brush)
        lay.addLayout(row)
        lay.addWidget(hint("Label 0 is unlabeled (ignored in training): erase with it. Paint a "
                           "few strokes of every class; on stacks, paint a few slices. "
                           "Double-click a class to rename it."))
        lay.addWidget(self.status)
        lay.addStretch(1)

        _layers.follow_renames(napari_viewer).renamed.connect(self._layer_renamed)
        self.image_combo.currentTextChanged.connect(self._image_changed)
        self._image_changed()

    # ------------------------------------------------------------------ state
    def image_layer(self) -> Any:
        return self.image_combo.layer()

    def paint_layer(self) -> Any:
        image = self.image_layer()
        return None if image is None else _layers.find_role(self.viewer.layers, image.name, "paint")

    def class_names(self) -> list[str]:
        layer = self.paint_layer()
        return _layers.class_names_of(layer) if layer is not None else list(DEFAULT_CLASSES)

    def _image_changed(self, *_: Any) -> None:
        layer = self.paint_layer()
        self.create_btn.setText("Select painting layer" if layer is not None else "Start painting")
        if layer is not None:
            self._adopt(layer)
        self._fill_classes()

    def _fill_classes(self) -> None:
        names = self.class_names()
        self.class_list.blockSignals(True)
        row = max(self.class_list.currentRow(), 0)
        self.class_list.clear()
        for value, name in enumerate(names, start=1):
            item = QListWidgetItem(_swatch(_layers.class_color(value)), name)
            item.setFlags(item.flags() | Qt.ItemIsEditable)
            item.setToolTip(f"label value {value}")
            self.class_list.addItem(item)
        self.class_list.blockSignals(False)
        layer = self.paint_layer()
        if layer is not None and 1 <= layer.selected_label <= len(names):
            row = layer.selected_label - 1
        self.class_list.setCurrentRow(min(row, len(names) - 1))

    # ------------------------------------------------------------------ actions
    @user_action
    def create_paint_layer(self, *_: Any) -> Any:
        image = self.image_layer()
        if image is None:
            raise UserError("No image to paint on: open an image layer first.")
        existing = self.paint_layer()
        if existing is None:
            shape = paint_shape(image)
            path = autosave_path(image, self._paths_in_use())
            data, names = load_painting(path, shape)
            reloaded = data is not None
            if data is None:
                data = np.zeros(shape, np.uint8)
            names = names or list(DEFAULT_CLASSES)
            existing = self.viewer.add_labels(
                data, name=_layers.paint_name(image.name), scale=image.scale[-len(shape):],
                translate=image.translate[-len(shape):], opacity=0.8,
                colormap=_layers.paint_colormap(len(names)),
                metadata=_layers.tag("paint", image.name, class_names=names))
            existing.selected_label = 2
            existing.brush_size = max(2, int(round(min(shape[-2:]) / 48)))
            if reloaded:
                self.status.setText(f"reloaded from {path}")
                show_info(f"Reloaded the saved painting of '{image.name}'.")
        self._adopt(existing)
        existing.visible = True
        _layers.keep_painting_on_top(self.viewer, image.name)
        self.viewer.layers.selection.active = existing
        existing.mode = "paint"
        if self.viewer.dims.ndisplay == 3:
            self.viewer.dims.ndisplay = 2  # paint slice by slice
        self.create_btn.setText("Select painting layer")
        self._fill_classes()
        return existing

    def _adopt(self, layer: Any) -> None:
        image = self.image_layer()
        meta = dict(layer.metadata)
        if _layers.role(layer) != "paint" and image is not None:
            meta.update(_layers.tag("paint", image.name, class_names=_layers.class_names_of(layer)))
            layer.metadata = meta
        if image is not None and self.autosaver.path_of(layer) is None:
            path = autosave_path(image, self._paths_in_use(layer))
            self.autosaver.watch(layer, path)
            # nothing is written until the first stroke: say so until the first save
            self.status.setText(f"will autosave to {path}" if not path.is_file() else f"autosaved to {path}")
        self.brush.blockSignals(True)
        self.brush.setValue(int(round(layer.brush_size)))
        self.brush.blockSignals(False)

    def _paths_in_use(self, but: Any = None) -> set:
        """The autosave files of the paintings in the viewer (``but`` one)."""
        but = _layers.unwrap(but)
        return self.autosaver.paths(layer for layer in self.viewer.layers if _layers.unwrap(layer) is not but)

    def _layer_renamed(self, layer: Any, old: str, new: str) -> None:
        """An image was renamed (its painting already follows): its autosave file follows too,
        unless the new name's file holds another image's painting (then it keeps its own)."""
        paint = _layers.find_role(self.viewer.layers, new, "paint") if _layers.is_image(layer) else None
        if paint is None or self.autosaver.path_of(paint) is None:
            return
        try:  # (a closed widget's autosaver and label are gone: nothing to do)
            path = autosave_path(layer, self._paths_in_use(paint))
            moved = self.autosaver.move(paint, path)
            self.status.setText(f"autosaves to {self.autosaver.path_of(paint)}" + (
                "" if moved else f" ({path.name} holds another painting)"))
        except RuntimeError:
            pass

    def _autosaved(self, path: Any) -> None:
        try:
            self.status.setText(f"autosaved to {path}")
        except RuntimeError:
            pass

    def _set_names(self, names: list[str], layer: Any = None) -> None:
        layer = layer if layer is not None else self.paint_layer()
        if layer is None:
            raise UserError("Start painting first: there is no painting layer for this image.")
        meta = dict(layer.metadata)
        meta[_layers.KEY] = {**_layers.info(layer), "class_names": list(names)}
        layer.metadata = meta
        layer.colormap = _layers.paint_colormap(len(names))
        self.autosaver.changed(layer)
        self._fill_classes()

    @user_action
    def add_class(self, name: str | None = None) -> None:
        names = self.class_names()
        self._set_names(names + [name or f"class {len(names) + 1}"])
        self.class_list.setCurrentRow(len(names))

    @user_action
    def rename_class(self, value: int, name: str) -> None:
        names = self.class_names()
        if not 1 <= value <= len(names):
            raise UserError(f"There is no class {value}.")
        if not name.strip():
            raise UserError("A class needs a name.")
        names[value - 1] = name.strip()
        self._set_names(names)

    @user_action
    def remove_class(self, value: int | None = None) -> bool:
        """Remove a class; if it has strokes, only after the user confirms. Its strokes become
        unlabeled and the classes above it move down one value; ``undo_remove`` restores both.
        Returns whether the class was removed."""
        names = self.class_names()
        value = value or self.class_list.currentRow() + 1
        if value == 1:
            raise UserError("Class 1 is the background class and cannot be removed.")
        if len(names) <= 2:
            raise UserError("A model needs at least two classes (background and one more).")
        layer = self.paint_layer()
        if layer is None:
            raise UserError("Start painting first: there is no painting layer for this image.")
        if not 1 <= value <= len(names):
            raise UserError(f"There is no class {value}.")
        data = layer.data
        mine = data == value
        strokes = np.flatnonzero(mine)
        if strokes.size and QMessageBox.question(
                self, "Remove class",
                f"Remove class '{names[value - 1]}' (label {value})?\n\nIts {strokes.size:,} painted "
                "pixels become unlabeled and the classes after it move down one label value. "
                "'Undo remove' brings them back.",
                QMessageBox.Yes | QMessageBox.No, QMessageBox.No) != QMessageBox.Yes:
            return False
        data[mine] = 0  # its strokes become unlabeled; higher classes move down
        del mine
        higher = data > value
        data[higher] -= 1
        layer.data = data
        self._removed = (layer, value, names[value - 1], strokes)
        del names[value - 1]
        self._set_names(names)
        self.undo_remove_btn.setText(f"Undo remove '{self._removed[2]}'")
        self.undo_remove_btn.setEnabled(True)
        return True

    @user_action
    def undo_remove(self) -> None:
        """Bring back the last removed class: its name, its label value and its strokes (where
        those pixels are still unlabeled); classes painted since keep their strokes."""
        if self._removed is None:
            raise UserError("Nothing to undo: no class was removed.")
        layer, value, name, strokes = self._removed
        if layer not in self.viewer.layers:
            self._removed = None
            self.undo_remove_btn.setEnabled(False)
            raise UserError(f"The painting layer '{layer.name}' of class '{name}' is gone.")
        data = layer.data
        data[data >= value] += 1  # the classes above it move back up (strokes painted since too)
        where = np.unravel_index(strokes, data.shape)
        free = data[where] == 0
        data[tuple(ix[free] for ix in where)] = value
        layer.data = data
        names = _layers.class_names_of(layer)
        names.insert(value - 1, name)
        self._set_names(names, layer)
        self._removed = None
        self.undo_remove_btn.setText("Undo remove")
        self.undo_remove_btn.setEnabled(False)
        show_info(f"Class '{name}' is back with {int(free.sum()):,} painted pixels.")

    def _rename_dialog(self) -> None:
        value = self.class_list.currentRow() + 1
        names = self.class_names()
        if not 1 <= value <= len(names):
            return
        name, ok = QInputDialog.getText(self, "Rename class", f"Name of class {value}:",
                                        text=names[value - 1])
        if ok:
            self.rename_class(value, name)

    def _item_renamed(self, item: QListWidgetItem) -> None:
        value, name = self.class_list.row(item) + 1, item.text()
        QTimer.singleShot(0, lambda: self.rename_class(value, name))

    def _select_class(self, row: int) -> None:
        layer = self.paint_layer()
        if layer is not None and row >= 0:
            layer.selected_label = row + 1

    def _set_brush(self, size: int) -> None:
        layer = self.paint_layer()
        if layer is not None:
            layer.brush_size = size
