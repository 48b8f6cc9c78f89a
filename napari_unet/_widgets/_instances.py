"""The Predict widget's "instances" option: split the foreground class into objects (a seeded
watershed, ``core.instances``) in a worker thread, shown as a Labels layer ``<name>_instances``.
"Update instances" recomputes them from the probabilities already shown, so the minimum size and
the seed separation can be tuned without predicting again."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFormLayout, QPushButton, QSpinBox, QVBoxLayout, QWidget

from . import _layers
from ._common import UserError, hint, start_worker, user_action


def instances_name(image_name: str) -> str:
    return f"{image_name}_instances"


class InstanceOptions(QWidget):
    """Checkbox + parameters + "Update instances"; ``sources()`` gives (image name, foreground
    probability, meta) for every image predicted so far."""

    def __init__(self, viewer: Any, sources: Callable[[], list[tuple[str, np.ndarray, dict]]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._sources = sources
        self.worker: Any = None
        self.enabled = QCheckBox("instances: split touching objects (Labels layer)")
        self.min_size = QSpinBox()
        self.min_size.setRange(0, 10_000_000)
        self.min_size.setValue(10)
        self.min_size.setSuffix(" px")
        self.min_size.setToolTip("Objects smaller than this (pixels, or voxels in 3D) are removed.")
        self.seed_distance = QDoubleSpinBox()
        self.seed_distance.setRange(0.0, 10_000.0)
        self.seed_distance.setDecimals(2)
        self.seed_distance.setValue(5.0)
        self.seed_distance.setToolTip("Smallest distance between the centres of two touching objects, in "
                                      "the image's scale units (its pixel size). Larger: fewer splits.")
        self.update_btn = QPushButton("Update instances")
        self.update_btn.setToolTip("Recompute the instances from the probabilities already predicted")
        self.update_btn.clicked.connect(self.update_all)
        self.status = hint("")
        form = QFormLayout()
        form.addRow("min size", self.min_size)
        form.addRow("seed separation", self.seed_distance)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.enabled)
        lay.addLayout(form)
        lay.addWidget(self.update_btn)
        lay.addWidget(self.status)
        self.enabled.toggled.connect(self._sync)
        self._sync(False)

    def _sync(self, on: bool) -> None:
        for w in (self.min_size, self.seed_distance, self.update_btn):
            w.setEnabled(bool(on))

    def _spacing(self, name: str, nd: int) -> tuple[float, ...] | None:
        layer = next((lay for lay in self.viewer.layers if lay.name == name), None)
        return tuple(float(s) for s in layer.scale[-nd:]) if layer is not None else None

    def compute(self, items: list[tuple[str, np.ndarray, dict]]) -> None:
        """Compute and show instances for ``items`` in the background."""
        from napari_unet.core.instance_outputs import foreground_index
        from napari_unet.core.instances import instance_labels

        if self.worker is not None:
            raise UserError("Instances are already being computed.")
        params = dict(min_size=self.min_size.value(), seed_distance=self.seed_distance.value())
        jobs = []
        for name, probs, meta in items:
            idx, value = foreground_index(meta)
            jobs.append((name, probs[idx], self._spacing(name, probs.ndim - 1), value))

        def work():
            for name, prob, spacing, value in jobs:
                yield name, instance_labels(prob, spacing=spacing, **params), value

        self.status.setText("splitting objects…")
        self.update_btn.setEnabled(False)
        self.worker = start_worker(work, yielded=self._show, finished=self._done)

    def _show(self, item: tuple[str, np.ndarray, int]) -> None:
        name, lab, value = item
        layer = show_instances(self.viewer, name, lab, class_value=value)
        self.status.setText(f"{layer.name}: {int(lab.max(initial=0))} objects")

    def _done(self) -> None:
        self.worker = None
        self._sync(self.enabled.isChecked())

    @user_action
    def update_all(self, *_: Any) -> None:
        items = self._sources()
        if not items:
            raise UserError("Nothing predicted yet: press Predict first.")
        self.compute(items)


def show_instances(viewer: Any, image_name: str, lab: np.ndarray, *, class_value: int = 2) -> Any:
    """Add (or update in place) the Labels layer ``<image>_instances``, on the image's grid."""
    for layer in viewer.layers:
        info = _layers.info(layer)
        if info.get("role") == "instances" and info.get("image") == image_name:
            layer.data = lab
            return layer
    image = next((layer for layer in viewer.layers if layer.name == image_name), None)
    geo = {}
    if image is not None:
        geo = {"scale": image.scale[-lab.ndim:], "translate": image.translate[-lab.ndim:]}
    with _layers.result_layer(viewer, image_name):
        layer = viewer.add_labels(lab, name=instances_name(image_name), opacity=0.5,
                                  metadata=_layers.tag("instances", image_name, class_value=class_value), **geo)
    return layer
