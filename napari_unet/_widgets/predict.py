"""Predict: tiled prediction of the chosen image(s) in the background, with progress and cancel;
adds per-class probability layers, a labels layer and an uncertainty layer."""
from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QVBoxLayout, QWidget

from . import _layers
from ._channels import channel_axis, channel_combo
from ._common import LayerCombo, UserError, heading, hint, scrolled_layout, show_info, user_action
from ._instances import InstanceOptions
from ._results import PredictionPanel, Result, image_items, rgb_channel_axis, show_result


class PredictWidget(PredictionPanel, QWidget):
    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._init_panel(napari_viewer, "Predict")
        self.results: dict[str, dict] = {}

        self.image_combo = LayerCombo(napari_viewer, _layers.is_image, placeholder="(open an image)")
        self.mode = QComboBox()
        self.mode.addItems(["most likely class (argmax)", "threshold on the foreground",
                            "one class per object (kinds of object)"])
        self.mode.setToolTip("one class per object: for classes that are kinds of object (dim and bright "
                             "nuclei, cell types), each connected object takes the class with the most "
                             "probability over it; not for parts of one object (nucleus and cytoplasm). "
                             "Chosen by itself for a model whose paint held one class in each object.")
        self._mode_from_model = False   # the mode was set by the model (a user's choice stays)
        self.mode.currentIndexChanged.connect(self._mode_chosen)
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
        self.channel = channel_combo()
        self.probs = QCheckBox("probability layer per class")
        self.probs.setChecked(True)
        self.uncertainty = QCheckBox("uncertainty (entropy) layer")
        self.uncertainty.setChecked(True)
        self._probs: dict[str, tuple[Any, dict]] = {}  # image -> (probabilities, model meta)
        self.instances = InstanceOptions(napari_viewer, self._instance_sources)

        lay = scrolled_layout(self)
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
        form.addRow("channel axis", self.channel)
        lay.addLayout(form)
        lay.addWidget(self.probs)
        lay.addWidget(self.uncertainty)
        lay.addWidget(self.instances)
        lay.addLayout(self.buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self._model_changed()   # a model already there (trained before this widget opened)

    def targets(self) -> list[Any]:
        selected = [layer for layer in self.viewer.layers.selection if _layers.is_image(layer)]
        if len(selected) > 1:
            return [layer for layer in self.viewer.layers if layer in selected]
        layer = self.image_combo.layer()
        return [layer] if layer is not None else []

    @user_action
    def run(self, *_: Any) -> None:
        model, layers = self._model_and_targets("No image selected: choose an image layer to predict.")
        threshold = None
        if self.mode.currentIndex() == 1:
            if model.meta.get("classes") != 2:
                raise UserError("A threshold needs a two-class model; this one has "
                                f"{model.meta.get('classes')} classes. Use argmax.")
            threshold = self.threshold.value()
        per_object: bool | str = self.mode.currentIndex() == 2
        if per_object and self._mode_from_model:
            per_object = "auto"   # the model's suggestion: not on a time-lapse or beyond memory
        if per_object is True and model.meta.get("classes", 2) <= 2:
            raise UserError("One class per object is for models of more than two classes; this one has "
                            f"{model.meta.get('classes')}. Use argmax.")
        ca = rgb_channel_axis(layers, model, channel_axis(self.channel))
        items = image_items(layers, model, channel_axis=ca)
        self.results, self._probs = {}, {}
        self._start(model, items, f"predicting {len(items)} image(s)…", tile=self.tile.value() or "auto",
                    threshold=threshold, uncertainty=self.uncertainty.isChecked(), channel_axis=ca,
                    one_class_per_object=per_object)

    def _mode_chosen(self, *_: Any) -> None:
        self._mode_from_model = False

    def _follow_model(self, model: Any) -> None:
        from napari_unet.core.postprocess import suggests_one_class_per_object

        if suggests_one_class_per_object(getattr(model, "meta", None)):
            if self.mode.currentIndex() == 0:   # (a threshold the user chose stays)
                self.mode.setCurrentIndex(2)
                self._mode_from_model = True
        elif self._mode_from_model:
            self.mode.setCurrentIndex(0)

    def _on_result(self, result: Result) -> None:
        self.results[result.image] = show_result(self.viewer, result, self._model,
                                                 probabilities=self.probs.isChecked())
        self._probs[result.image] = (result.probabilities, self._model.meta)
        self.status.setText(f"{result.image}: done")

    def _on_finished(self, aborted: bool) -> None:
        if aborted:
            self.status.setText("cancelled")
        elif self.results:
            self.progress.setValue(1000)
            names = list(self.results)
            self.status.setText(f"predicted {', '.join(names)}{self.skipped_text()}")
            show_info(f"Predicted '{names[0]}'." if len(names) == 1 else f"Predicted {len(names)} images.")
            if self.instances.enabled.isChecked():
                self.instances.compute([(n, *self._probs[n]) for n in self.results])
        elif self.skipped:
            self.status.setText(f"predicted no image{self.skipped_text()}")

    def _instance_sources(self) -> list[tuple[str, Any, dict]]:
        names = {layer.name for layer in self.viewer.layers}
        return [(n, p, meta) for n, (p, meta) in self._probs.items() if n in names]
