"""Batch: segment every open image (or the selected ones) with the current model, one after
another in the background, optionally writing <name>_probs.tif / <name>_labels.tif."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                            QSpinBox, QWidget)

from ._channels import channel_axis, channel_combo
from ._common import UserError, heading, image_layers, scrolled_layout, show_info, user_action
from ._results import (PredictionPanel, Result, image_items, layer_pixel_size, rgb_channel_axis,
                       show_result)


class BatchWidget(PredictionPanel, QWidget):
    busy_message = "A batch is already running."

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._init_panel(napari_viewer, "Segment all open images")
        self.done: list[str] = []
        self.files: list[str] = []

        self.only_selected = QCheckBox("only the image layers selected in the layer list")
        self.add_layers = QCheckBox("add result layers to the viewer")
        self.add_layers.setChecked(True)
        self.channel = channel_combo()
        self.per_object = QCheckBox("one class per object (classes that are kinds of object)")
        self.per_object.setToolTip("Models of more than two classes: each connected object takes the class "
                                   "with the most probability over it (dim and bright nuclei, cell types); "
                                   "not for parts of one object (nucleus and cytoplasm). Ticked by itself for "
                                   "a model whose paint held one class in each object.")
        self._per_object_from_model = False   # ticked by the model (a user's choice stays)
        self.per_object.toggled.connect(self._per_object_chosen)
        self.write = QCheckBox("write the results to:")
        self.format = QComboBox()
        self.format.addItems(["TIFF: <name>_probs.tif, <name>_labels.tif", "OME-Zarr: <name>.ome.zarr"])
        self.workers = QSpinBox()
        self.workers.setRange(0, 256)
        self.workers.setSpecialValueText("none (this process)")
        self.workers.setToolTip("Predict block by block on a local dask cluster of this many worker "
                                "processes (needs an output folder; the files are written there)")
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("output folder")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse)

        lay = scrolled_layout(self)
        lay.addWidget(heading("Model"))
        lay.addWidget(self.model_label)
        lay.addWidget(heading("Images"))
        lay.addWidget(self.only_selected)
        lay.addWidget(self.add_layers)
        crow = QHBoxLayout()
        crow.addWidget(QLabel("channel axis"))
        crow.addWidget(self.channel, 1)
        lay.addLayout(crow)
        lay.addWidget(self.per_object)
        lay.addWidget(self.write)
        row = QHBoxLayout()
        row.addWidget(self.out_dir)
        row.addWidget(browse)
        lay.addLayout(row)
        frow = QHBoxLayout()
        frow.addWidget(QLabel("as"))
        frow.addWidget(self.format, 1)
        lay.addLayout(frow)
        wrow = QHBoxLayout()
        wrow.addWidget(QLabel("dask workers"))
        wrow.addWidget(self.workers, 1)
        lay.addLayout(wrow)
        lay.addLayout(self.buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch(1)
        self._model_changed()   # a model already there (trained before this widget opened)

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder")
        if path:
            self.out_dir.setText(path)
            self.write.setChecked(True)

    def targets(self) -> list[Any]:
        layers = image_layers(self.viewer)
        if self.only_selected.isChecked():
            layers = [layer for layer in layers if layer in self.viewer.layers.selection]
        return layers

    @user_action
    def run(self, *_: Any) -> None:
        model, layers = self._model_and_targets(
            "No images to segment: open image layers"
            + (" and select some of them." if self.only_selected.isChecked() else "."))
        out_dir = None
        if self.workers.value() and not self.write.isChecked():
            raise UserError("Dask workers write their results to files: tick writing and choose an output folder.")
        if self.write.isChecked():
            text = self.out_dir.text().strip()
            if not text:
                raise UserError("Choose an output folder (or untick writing files).")
            out_dir = Path(text).expanduser()
        per_object: bool | str = self.per_object.isChecked()
        if per_object and self._per_object_from_model:
            per_object = "auto"   # the model's suggestion: where the image and the engine allow it
        if per_object is True and model.meta.get("classes", 2) <= 2:
            raise UserError("One class per object is for models of more than two classes; this one has "
                            f"{model.meta.get('classes')}. Untick it.")
        if per_object is True and self.workers.value():
            raise UserError("One class per object needs each image's labels in one piece: it is not "
                            "available with dask workers yet. Untick one of them.")
        ca = rgb_channel_axis(layers, model, channel_axis(self.channel))
        items = image_items(layers, model, hint="; tick 'only selected' and leave it out", channel_axis=ca)
        if out_dir is not None:  # the same output policy as the command line, before any work
            from napari_unet.core.outputs import check_output, prepare_folder

            from ._results import safe_stem

            prepare_folder(out_dir)
            for name, _data in items:
                if self.format.currentIndex() == 1:
                    from napari_unet.core.distributed import check_store_output

                    check_store_output(out_dir / f"{safe_stem(name)}.ome.zarr", [], False)
                    continue
                for suffix in ("_probs.tif", "_labels.tif"):
                    check_output(out_dir / f"{safe_stem(name)}{suffix}")
        # pixel size from each layer's scale (and units), into every file written
        pixels = {name: layer_pixel_size(layer, data.ndim - (ca is not None))
                  for layer, (name, data) in zip(layers, items)}
        self.done, self.files = [], []
        self._start(model, items, f"segmenting {len(items)} image(s)…", out_dir=out_dir, uncertainty=False,
                    channel_axis=ca, out_format="ome-zarr" if self.format.currentIndex() == 1 else "tiff",
                    pixels=pixels, workers=self.workers.value(), one_class_per_object=per_object)

    def _per_object_chosen(self, *_: Any) -> None:
        self._per_object_from_model = False

    def _follow_model(self, model: Any) -> None:
        from napari_unet.core.postprocess import suggests_one_class_per_object

        if suggests_one_class_per_object(getattr(model, "meta", None)):
            if not self.per_object.isChecked():
                self.per_object.setChecked(True)
                self._per_object_from_model = True
        elif self._per_object_from_model:
            self.per_object.setChecked(False)

    def _on_result(self, result: Result) -> None:
        self.done.append(result.image)
        self.files.extend(result.files)
        if self.add_layers.isChecked():
            show_result(self.viewer, result, self._model, probabilities=False)

    def _on_finished(self, aborted: bool) -> None:
        where = f"; files in {Path(self.files[0]).parent}" if self.files else ""
        skipped = self.skipped_text()
        if aborted:
            self.status.setText(f"cancelled after {len(self.done)} image(s){where}{skipped}")
        elif self.done:
            self.progress.setValue(1000)
            self.status.setText(f"segmented {len(self.done)} image(s){where}{skipped}")
            self.status.setToolTip("\n".join(self.files))
            # where the files are: the status line
            show_info(f"Segmented {len(self.done)} image(s){skipped}.")
        elif skipped:
            self.status.setText(f"segmented no image{skipped}")
