"""Train: run napari_unet.core.train.iter_train (by default in a child process, through
core.train_process, so the GIL never stalls the viewer) from a worker thread, with a live
loss curve, a progress bar, a Stop button and a live preview of the slice on screen."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                            QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                            QSpinBox, QWidget)
from qtpy.QtCore import Qt, QTimer
from superqt import QCollapsible

from . import _layers
from ._common import UserError, find_layer, heading, hint, scrolled_layout, start_worker, user_action
from ._plot import LossPlot
from ._preview import PreviewSource, preview_layer
from ._state import model_state
from ._train_events import TrainEvents
from ._train_dims import DimsChoice
from ._train_lifecycle import STARTING, TrainLifecycle, _Closer, _prestart
from ._train_model import ModelActions

START_NEW, START_CURRENT, START_FILE = "new model", "continue current model", "fine-tune a model file"


class TrainWidget(TrainEvents, ModelActions, TrainLifecycle, DimsChoice, QWidget):
    preview_every = 3.0  # seconds between live previews

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = model_state(napari_viewer)
        self.worker: Any = None
        self._stop: threading.Event | None = None
        self._task_id: Any = None
        self.finished_reason: str | None = None
        self._previous: tuple[Any, str] | None = None   # what the run replaces (Revert)
        self._continued = False   # the run continues the current model ("trained N more steps")
        self._device_before = ""
        self._step_offset = 0
        self.preview = PreviewSource()
        self._empty_preview: Any = None

        # data
        self.pairs = QListWidget()
        self.pairs.setMaximumHeight(90)
        # model
        self.dims = QComboBox()
        self.dims.addItems(["2D (slice by slice on stacks)", "3D"])
        self.dims.activated.connect(self._dims_picked)  # the user's choice; until then the data's
        self.dims_hint = hint("")
        self.dims_hint.setVisible(False)
        self.pairs.itemChanged.connect(self.suggest_dims)
        self.start_from = QComboBox()
        self.start_from.addItems([START_NEW, START_CURRENT, START_FILE])
        self.init_path = QLineEdit()
        self.init_path.setPlaceholderText("model file (.pt, or a bioimage.io .zip)")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_init)
        self.init_row = QWidget()
        r = QHBoxLayout(self.init_row)
        r.setContentsMargins(0, 0, 0, 0)
        r.addWidget(self.init_path)
        r.addWidget(browse)
        self.init_row.setVisible(False)
        self.start_from.currentTextChanged.connect(lambda t: self.init_row.setVisible(t == START_FILE))
        self.start_from.currentTextChanged.connect(self.suggest_dims)  # a new model: the data's choice
        self.limit_kind = QComboBox()
        self.limit_kind.addItems(["seconds", "steps"])
        self.limit = QSpinBox()
        self.limit.setRange(1, 10_000_000)
        self.limit.setValue(60)
        self.limit_kind.currentTextChanged.connect(
            lambda t: self.limit.setValue(60 if t == "seconds" else 500))
        limit_row = QHBoxLayout()
        limit_row.addWidget(self.limit)
        limit_row.addWidget(self.limit_kind)
        self.live_preview = QCheckBox("live preview of the slice on screen")
        self.live_preview.setChecked(True)
        self.keep_better = QCheckBox("keep the better model when continuing")
        self.keep_better.setChecked(True)
        self.keep_better.setToolTip(
            "At the end of a continued run, score the new and the previous weights on all the "
            "paint (your corrections included) and keep the one that fits it better; with "
            "nothing new painted, the new weights must either fit it better and put the "
            "boundaries clearly closer to the image's edges, or give a clearly steadier "
            "prediction (the mirrored image's agreeing with it) while fitting the paint nearly "
            "as well. 'Revert' swaps to the other one "
            "(the run's own weights when the previous model was kept); untick this box to "
            "always take the new weights.")

        # advanced
        self.base_channels = QSpinBox()
        self.base_channels.setRange(0, 128)
        self.base_channels.setSpecialValueText("auto")
        self.depth = QSpinBox()
        self.depth.setRange(0, 6)
        self.depth.setSpecialValueText("auto")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.unpainted_bg = QCheckBox("unpainted pixels are background")
        self.unpainted_bg.setToolTip("For fully painted masks where 0 means background")
        self.separate_process = QCheckBox("train in a separate process")
        self.separate_process.setChecked(True)
        self.separate_process.setToolTip(
            "Keeps the viewer fluid: a training thread shares Python's GIL with napari and "
            "stalls it for up to half a second at a time (benchmarks/ui_responsiveness.py)")
        adv = QCollapsible("Advanced")
        adv_w = QWidget()
        form = QFormLayout(adv_w)
        form.addRow("network width", self.base_channels)
        form.addRow("network depth", self.depth)
        form.addRow("device", self.device)
        form.addRow(self.unpainted_bg)
        form.addRow(self.separate_process)
        adv.addWidget(adv_w)

        # run
        self.train_btn = QPushButton("Train")
        self.train_btn.setStyleSheet("font-weight: bold;")
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.train_btn.clicked.connect(self.start)
        self.stop_btn.clicked.connect(self.stop)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.device_label = QLabel("device: –")
        self.status = QLabel("")
        self.val_label = QLabel("")
        for lab in (self.device_label, self.status, self.val_label):
            lab.setWordWrap(True)
        from napari_unet.core.events import QUALITY_HELP

        self.val_label.setToolTip(QUALITY_HELP)
        self.plot = LossPlot()

        # model
        self.model_label = hint(self.state.describe())
        self.save_btn = QPushButton("Save model…")
        self.load_btn = QPushButton("Load model…")
        self.revert_btn = QPushButton("Revert")
        self.revert_btn.setToolTip("Swap back to the model the last training run replaced")
        self.revert_btn.setEnabled(False)
        self.revert_btn.clicked.connect(lambda: self.revert())
        self.save_btn.clicked.connect(lambda: self.save_model())
        self.load_btn.clicked.connect(lambda: self.load_model())

        lay = scrolled_layout(self)
        lay.addWidget(heading("Training data (image + painting)"))
        lay.addWidget(self.pairs)
        form = QFormLayout()
        form.addRow("model", self.dims)
        form.addRow("", self.dims_hint)
        form.addRow("start from", self.start_from)
        form.addRow("", self.init_row)
        form.addRow("stop after", limit_row)
        lay.addLayout(form)
        lay.addWidget(self.live_preview)
        lay.addWidget(self.keep_better)
        lay.addWidget(adv)
        row = QHBoxLayout()
        row.addWidget(self.train_btn, 2)
        row.addWidget(self.stop_btn, 1)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.device_label)
        lay.addWidget(self.status)
        lay.addWidget(self.plot)
        lay.addWidget(self.val_label)
        lay.addWidget(heading("Model"))
        lay.addWidget(self.model_label)
        row = QHBoxLayout()
        row.addWidget(self.save_btn)
        row.addWidget(self.load_btn)
        row.addWidget(self.revert_btn)
        lay.addLayout(row)
        from ._export import ExportAction

        self.bioimageio = ExportAction(self)  # "Export for bioimage.io…"
        lay.addWidget(self.bioimageio.button)
        lay.addStretch(1)

        ev = napari_viewer.layers.events
        for e in (ev.inserted, ev.removed, _layers.follow_renames(napari_viewer).renamed):
            e.connect(self.refresh_pairs)  # a renamed image or painting: the list follows
        napari_viewer.dims.events.current_step.connect(self._update_preview_source)
        napari_viewer.layers.selection.events.active.connect(self._update_preview_source)
        self.state.changed.connect(self._model_changed)
        self.destroyed.connect(_Closer(self))
        self.refresh_pairs()
        # a warm training process for the first click: started in the background once the dock
        # is shown (torch is imported there, never in the viewer's process)
        QTimer.singleShot(0, _prestart)

    # ------------------------------------------------------------------ data
    def refresh_pairs(self, *_: Any) -> None:
        try:
            checked = {self.pairs.item(i).data(Qt.UserRole): self.pairs.item(i).checkState()
                       for i in range(self.pairs.count())}  # by layer: a renamed one keeps its tick
        except RuntimeError:
            return
        self.pairs.clear()
        for image in [layer for layer in self.viewer.layers if _layers.is_image(layer)]:
            paint = _layers.find_role(self.viewer.layers, image.name, "paint")
            if paint is None:
                continue
            item = QListWidgetItem(image.name)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setData(Qt.UserRole, image.unique_id)
            item.setCheckState(checked.get(image.unique_id, Qt.Checked))
            item.setToolTip(f"{image.name} + {paint.name}")
            self.pairs.addItem(item)
        if self.pairs.count() == 0:
            item = QListWidgetItem("(no painted image: use Annotate first)")
            item.setFlags(Qt.NoItemFlags)
            self.pairs.addItem(item)
        self.suggest_dims()

    def chosen_pairs(self) -> list[tuple[Any, Any]]:
        out = []
        for i in range(self.pairs.count()):
            item = self.pairs.item(i)
            if item.flags() & Qt.ItemIsUserCheckable and item.checkState() == Qt.Checked:
                image = find_layer(self.viewer, item.text(), _layers.is_image)
                if image is not None:
                    paint = _layers.find_role(self.viewer.layers, image.name, "paint")
                    if paint is not None:
                        out.append((image, paint))
        return out

    def _browse_init(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Model to fine-tune", "",
                                              "U-Net model or bioimage.io package (*.pt *.zip)")
        if path:
            self.init_path.setText(path)

    def set_limit(self, value: int, kind: str = "seconds") -> None:
        self.limit_kind.setCurrentText(kind)
        self.limit.setValue(value)

    # ------------------------------------------------------------------ run
    def is_running(self) -> bool:
        return self.worker is not None

    @user_action
    def start(self, *_: Any) -> None:
        if self.is_running() or self.state.training is not None:   # any Train widget of this viewer
            raise UserError("Training is already running." if self.is_running() else
                            "Training is already running (in another Train widget of this viewer).")
        pairs = self.chosen_pairs()
        if not pairs:
            raise UserError("Nothing to train on: paint some strokes on an image (Annotate "
                            "widget) and tick it in the training data list.")
        dims = 3 if self.dims.currentIndex() == 1 else 2
        images, labels, class_names = [], [], None
        rgb: bool | None = None
        for image, paint in pairs:
            img = np.asarray(_layers.full_data(image))
            if rgb is None:
                rgb = bool(image.rgb)
            elif rgb != bool(image.rgb):
                raise UserError("Train on RGB images or on single-channel images, not both at once "
                                f"('{image.name}' differs from '{pairs[0][0].name}').")
            spatial = img.shape[:-1] if image.rgb else img.shape
            if spatial != tuple(paint.data.shape):
                raise UserError(f"'{image.name}' has shape {img.shape} but its painting "
                                f"'{paint.name}' has shape {tuple(paint.data.shape)}.")
            if dims == 3 and len(spatial) != 3:
                raise UserError(f"A 3D model needs (Z, Y, X) stacks; '{image.name}' is {img.ndim}D. "
                                "Choose the 2D model.")
            lab = np.array(paint.data, copy=True)  # painting may go on while we train
            if not self.unpainted_bg.isChecked() and not lab.any():
                raise UserError(f"'{paint.name}' has no paint yet: paint a few strokes of each class.")
            images.append(img)
            labels.append(lab)
            class_names = class_names or _layers.class_names_of(paint)
        kwargs: dict[str, Any] = dict(dims=dims, class_names=class_names, classes=len(class_names),
                                      device=self.device.currentText(),
                                      unpainted_is_background=self.unpainted_bg.isChecked(),
                                      channel_axis=-1 if rgb else None,
                                      preview_every=self.preview_every,
                                      spacing=_layers.train_spacing(pairs, dims))  # 3D: the layer's scale
        if self.limit_kind.currentText() == "steps":
            kwargs["steps"] = self.limit.value()
        else:
            kwargs["time_limit"] = float(self.limit.value())
        if self.base_channels.value():
            kwargs["base_channels"] = self.base_channels.value()
        if self.depth.value():
            kwargs["depth"] = self.depth.value()
        mode = self.start_from.currentText()
        # the model this run replaces, for Revert (a new or fine-tuned one replaces it too)
        self._previous = (self.state.model, self.state.source) if self.state.model is not None else None
        self._continued = mode == START_CURRENT
        if mode == START_CURRENT:
            import copy

            current = self.state.require()
            # the run may change the model in place: keep an untouched copy for Revert
            self._previous = (copy.deepcopy(current), self.state.source)
            kwargs["model"] = current
            kwargs["keep_better"] = self.keep_better.isChecked()
        elif mode == START_FILE:
            path = self.init_path.text().strip()
            if not path or not Path(path).is_file():
                raise UserError(f"Choose an existing model file to fine-tune (got '{path}').")
            kwargs["init"] = path
            kwargs["keep_better"] = self.keep_better.isChecked()
        if self.live_preview.isChecked():
            self.preview.dims = dims
            self._update_preview_source()
            kwargs["preview"] = self.preview
            current = self.preview()
            shown = find_layer(self.viewer, current[0][0], _layers.is_image) if current else None
            if shown is not None:  # add the layer now, on the click, not as a stall mid-training
                had = _layers.find_role(self.viewer.layers, shown.name, "preview") is not None
                layer = preview_layer(self.viewer, shown)
                self._empty_preview = None if had else layer
        self._stop = threading.Event()
        kwargs["stop"] = self._stop

        in_process = not self.separate_process.isChecked()
        names = [(image.name, paint.name) for image, paint in pairs]

        def run():
            if in_process:
                from napari_unet.core.train import iter_train as engine
            else:
                from napari_unet.core.train_process import iter_train_process as engine
            try:
                return (yield from engine(images, labels, **kwargs))
            except (ValueError, TypeError) as e:   # the engine's refusal, told with the layers' names
                from ._common import Failed
                from ._train_words import widget_words

                return Failed(widget_words(str(e) or type(e).__name__, names))
            except RuntimeError as e:  # the training process did not start or died: one clear message
                if type(e).__name__ != "TrainProcessError":
                    raise
                from ._common import Failed

                return Failed(f"Training could not run: {e}")

        if mode == START_CURRENT and self.plot.train:
            # the chart keeps the whole history: this run's steps continue the last one's
            self._step_offset = self.plot.train[-1][0]
        else:
            self.plot.clear()
            self._step_offset = 0
        self.progress.setValue(0)
        self.status.setText("starting…")
        self._device_before = self.device_label.text()   # shown again if the run never starts
        self.device_label.setText(STARTING)
        self.val_label.setText("")
        self.finished_reason = None
        self._t0 = time.monotonic()
        self._set_running(True)
        self.worker = start_worker(run, yielded=self._on_event, finished=self._on_finished)
        self.state.training = self._stop   # this run's token: no other Train widget starts one
        self._register_task()

    def _update_preview_source(self, *event: Any) -> None:
        if event and self.worker is None:
            return  # a dims/selection event while not training: nothing to preview (start() calls this)
        active = self.viewer.layers.selection.active
        image = None
        if active is not None:
            name = _layers.info(active).get("image") if not _layers.is_image(active) else active.name
            image = find_layer(self.viewer, name, _layers.is_image) if name else None
        if image is None:
            pairs = self.chosen_pairs()
            image = pairs[0][0] if pairs else None
        if image is not None and self.dims.currentIndex() == 1 and len(_layers.full_data(image).shape) != 3:
            image = None
        self.preview.update(self.viewer, image)
