"""Measure objects: a sortable table per object of an instance Labels layer (size in physical
units from the layer's scale, mean intensity, centroid, bounding box, class); clicking a row
centres the viewer on the object; "Save CSV…"."""
from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (QAbstractItemView, QFileDialog, QFormLayout, QHBoxLayout, QPushButton,
                            QTableWidget, QTableWidgetItem, QWidget)

from . import _layers
from ._common import LayerCombo, UserError, hint, scrolled_layout, show_info, user_action

NONE = "(none)"


def _is_objects(layer: Any) -> bool:
    return type(layer).__name__ == "Labels" and _layers.role(layer) not in ("paint", "errors", "object_errors")


def _is_class_labels(layer: Any) -> bool:
    return type(layer).__name__ == "Labels" and _layers.role(layer) == "labels"


class _Num(QTableWidgetItem):
    """A cell that sorts by number."""

    def __init__(self, value: Any) -> None:
        super().__init__(f"{value:.4g}" if isinstance(value, float) else str(value))
        self.value = value

    def __lt__(self, other: QTableWidgetItem) -> bool:
        a, b = self.value, getattr(other, "value", None)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return a < b
        return str(a) < str(b)


class MeasureWidget(QWidget):
    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.rows: list[dict] = []
        self.layer: Any = None
        self.objects_combo = LayerCombo(napari_viewer, _is_objects, placeholder="(no labels layer)")
        self.image_combo = LayerCombo(napari_viewer, lambda la: _layers.is_image(la), placeholder=NONE)
        self.class_combo = LayerCombo(napari_viewer, _is_class_labels, placeholder=NONE)
        self.run_btn = QPushButton("Measure")
        self.run_btn.setStyleSheet("font-weight: bold;")
        self.run_btn.clicked.connect(self.run)
        self.table = QTableWidget(0, 0)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.setMinimumHeight(220)
        self.table.cellClicked.connect(self.centre_on_row)
        self.save_btn = QPushButton("Save CSV…")
        self.save_btn.clicked.connect(lambda: self.save_csv())
        self.status = hint("")

        form = QFormLayout()
        form.addRow("objects", self.objects_combo)
        form.addRow("intensity image", self.image_combo)
        form.addRow("classes", self.class_combo)
        lay = scrolled_layout(self)
        lay.addLayout(form)
        lay.addWidget(hint("Objects: an instance Labels layer (e.g. '<image>_instances' from Predict). "
                           "Sizes use the layer's scale (pixel size). Click a row to centre the object."))
        lay.addWidget(self.run_btn)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.save_btn)
        lay.addLayout(row)
        lay.addWidget(self.status)
        self._default_choice()

    def _default_choice(self) -> None:
        for layer in self.viewer.layers:
            if _layers.role(layer) == "instances":
                self.objects_combo.set_layer(layer.name)
                image = _layers.info(layer).get("image")
                if image and any(la.name == image for la in self.viewer.layers):
                    self.image_combo.set_layer(image)
                break

    @user_action
    def run(self, *_: Any) -> list[dict]:
        from napari_unet.core.measure import measure_objects

        layer = self.objects_combo.layer()
        if layer is None:
            raise UserError("Choose an objects (instance labels) layer to measure.")
        lab = np.asarray(_layers.full_data(layer))
        image = self.image_combo.layer()
        img = None
        if image is not None:
            img = _layers.full_data(image)
            if tuple(img.shape) != lab.shape:
                raise UserError(f"'{image.name}' is {tuple(img.shape)}, the objects '{layer.name}' {lab.shape}.")
        cls_layer = self.class_combo.layer()
        classes, names = None, None
        if cls_layer is not None and cls_layer is not layer:
            classes = np.asarray(cls_layer.data)
            if classes.shape != lab.shape:
                raise UserError(f"'{cls_layer.name}' is {classes.shape}, the objects '{layer.name}' {lab.shape}.")
            names = _layers.info(cls_layer).get("class_names")
        rows = measure_objects(lab, image=img, classes=classes, class_names=names,
                               spacing=tuple(float(s) for s in layer.scale[-lab.ndim:]))
        self.rows, self.layer = rows, layer
        self._fill(rows)
        self.status.setText(f"{len(rows)} objects in '{layer.name}'")
        return rows

    def _fill(self, rows: list[dict]) -> None:
        cols = list(rows[0]) if rows else ["label"]
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.table.setColumnCount(len(cols))
        self.table.setHorizontalHeaderLabels(cols)
        self.table.setRowCount(len(rows))
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                item = _Num(r[c])
                if j == 0:
                    item.setData(Qt.UserRole, i)  # the row's index in self.rows, kept through sorting
                self.table.setItem(i, j, item)
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()

    def centre_on_row(self, row: int, *_: Any) -> None:
        """Centre the camera (and the slider of a stack) on the object of table row ``row``."""
        item = self.table.item(row, 0)
        if item is None or self.layer is None:
            return
        r = self.rows[int(item.data(Qt.UserRole))]
        nd = self.layer.ndim
        axes = "zyx"[-nd:]
        data_pos = np.array([r[f"centroid_{a}"] for a in axes])
        world = np.asarray(self.layer.data_to_world(data_pos))
        if nd == 3:
            self.viewer.dims.set_point(0, world[0])
        self.viewer.camera.center = tuple(world[-2:]) if self.viewer.dims.ndisplay == 2 else tuple(world)

    @user_action
    def save_csv(self, path: str | None = None) -> str | None:
        from napari_unet.core.measure import write_objects_csv

        if not self.rows:
            raise UserError("Nothing to save yet: press Measure first.")
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save measurements", "objects.csv", "CSV (*.csv)")
            if not path:
                return None
        write_objects_csv(path, self.rows)
        show_info(f"Measurements saved to {path}")
        return path
