"""Predict: tiled prediction of the chosen image(s) in the background, with progress and cancel;
adds per-class probability layers, a labels layer and an uncertainty layer."""
from __future__ import annotations

import threading
from typing import Any

from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                            QProgressBar, QPushButton, QSpinBox, QVBoxLayout, QWidget)

from . import _layers
from ._common import LayerCombo, UserError, heading, hint, show_info, start_worker, user_action
from ._results import Progress, Result, image_items, predict_images, show_result
from ._state import model_state


class PredictWidget(QWidget):
    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = model_state(napari_viewer)
        self.worker: Any = None
        self._cancel = threading.Event()
        self.results: dict[str, dict] = {}

        self.image_combo = LayerCombo(napari_viewer, _layers.is_image, placeholder="(open an image)")
        self.mode = QComboBox()
        self.mode.addItems(["most likely class (argmax)", "threshold on the foreground"])
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.01, 0.99)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.threshold.setEnabled(False)
        self.mode.currentIndexChanged.connect(lambda i: self.threshold.setEnabled(i == 1))
        self.tile = QSpinBox()
        self.tile.setRange(0, 4096)
        self.tile.setSingleStep(64)
        self.tile.setSpecialValueText("auto")
        self.probs = QCheckBox("probability layer per class")
        self.probs.setChecked(True)
        self.uncertainty = QCheckBox("uncertainty (entropy) layer")
        self.uncertainty.setChecked(True)
        self.run_btn = QPushButton("Predict")
        self.run_btn.setStyleSheet("font-weight: bold;")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.status = hint("")
        self.model_label = hint(self.state.describe())
        self.state.changed.connect(self._model_changed)

        lay = QVBoxLayout(self)
        lay.addWidget(heading("Image"))
        lay.addWidget(self.image_combo)
        lay.addWidget(hint("With several image layers selected in the layer list, all of "
                           "them are predicted."))
        lay.addWidget(heading("Model"))
        lay.addWidget(self.model_label)
        form = QFormLayout()
        form.addRow("labels", self.mode)
        form.addRow("threshold", self.threshold)
        form.addRow("tile size", self.tile)
        lay.addLayout(form)
        lay.addWidget(self.probs)
        lay.addWidget(self.uncertainty)
        row = QHBoxLayout()
        row.addWidget(self.run_btn, 2)
        row.addWidget(self.cancel_btn, 1)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)

    def _model_changed(self, *_: Any) -> None:
        try:
            self.model_label.setText(self.state.describe())
        except RuntimeError:
            pass

    def targets(self) -> list[Any]:
        selected = [layer for layer in self.viewer.layers.selection if _layers.is_image(layer)]
        if len(selected) > 1:
            return [layer for layer in self.viewer.layers if layer in selected]
        layer = self.image_combo.layer()
        return [layer] if layer is not None else []

    @user_action
    def run(self, *_: Any) -> None:
        if self.worker is not None:
            raise UserError("A prediction is already running.")
        model = self.state.require()
        layers = self.targets()
        if not layers:
            raise UserError("No image selected: choose an image layer to predict.")
        threshold = None
        if self.mode.currentIndex() == 1:
            if model.meta.get("classes") != 2:
                raise UserError("A threshold needs a two-class model; this one has "
                                f"{model.meta.get('classes')} classes. Use argmax.")
            threshold = self.threshold.value()
        items = image_items(layers, model)
        tile = self.tile.value() or "auto"
        want_unc = self.uncertainty.isChecked()
        self._model = model

        self._cancel = cancel = threading.Event()

        def work():
            return (yield from predict_images(model, items, tile=tile, threshold=threshold,
                                              uncertainty=want_unc, cancel=cancel))

        self.results = {}
        self.progress.setValue(0)
        self.status.setText(f"predicting {len(items)} image(s)…")
        self._set_running(True)
        self.worker = start_worker(work, yielded=self._on_event, finished=self._on_finished)

    def cancel(self, *_: Any) -> None:
        if self.worker is not None:
            self._cancel.set()
            self.status.setText("cancelling…")

    def _set_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, Progress):
            frac = (ev.index + ev.done / max(ev.total, 1)) / ev.count
            self.progress.setValue(int(1000 * frac))
            self.status.setText(f"{ev.image}: tile {ev.done}/{ev.total}")
        elif isinstance(ev, Result):
            self.results[ev.image] = show_result(self.viewer, ev, self._model,
                                                 probabilities=self.probs.isChecked())
            self.status.setText(f"{ev.image}: done")

    def _on_finished(self) -> None:
        aborted = self._cancel.is_set()
        self.worker = None
        self._set_running(False)
        if aborted:
            self.status.setText("cancelled")
        elif self.results:
            self.progress.setValue(1000)
            show_info(f"Predicted {', '.join(self.results)}")
