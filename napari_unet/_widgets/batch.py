"""Batch: segment every open image (or the selected ones) with the current model, one after
another in the background, optionally writing <name>_probs.tif / <name>_labels.tif."""
from __future__ import annotations

import os
from pathlib import Path
import threading
from typing import Any

from qtpy.QtWidgets import (QCheckBox, QFileDialog, QHBoxLayout, QLineEdit, QProgressBar,
                            QPushButton, QVBoxLayout, QWidget)

from ._common import UserError, heading, hint, image_layers, show_info, start_worker, user_action
from ._results import Progress, Result, image_items, predict_images, show_result
from ._state import model_state


class BatchWidget(QWidget):
    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state = model_state(napari_viewer)
        self.worker: Any = None
        self._cancel = threading.Event()
        self.done: list[str] = []
        self.files: list[str] = []

        self.only_selected = QCheckBox("only the image layers selected in the layer list")
        self.add_layers = QCheckBox("add result layers to the viewer")
        self.add_layers.setChecked(True)
        self.write = QCheckBox("write <name>_probs.tif and <name>_labels.tif to:")
        self.out_dir = QLineEdit()
        self.out_dir.setPlaceholderText("output folder")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse)
        self.run_btn = QPushButton("Segment all open images")
        self.run_btn.setStyleSheet("font-weight: bold;")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = hint("")
        self.model_label = hint(self.state.describe())
        self.state.changed.connect(self._model_changed)

        lay = QVBoxLayout(self)
        lay.addWidget(heading("Model"))
        lay.addWidget(self.model_label)
        lay.addWidget(heading("Images"))
        lay.addWidget(self.only_selected)
        lay.addWidget(self.add_layers)
        lay.addWidget(self.write)
        row = QHBoxLayout()
        row.addWidget(self.out_dir)
        row.addWidget(browse)
        lay.addLayout(row)
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
        if self.worker is not None:
            raise UserError("A batch is already running.")
        model = self.state.require()
        layers = self.targets()
        if not layers:
            raise UserError("No images to segment: open image layers"
                            + (" and select some of them." if self.only_selected.isChecked() else "."))
        out_dir = None
        if self.write.isChecked():
            text = self.out_dir.text().strip()
            if not text:
                raise UserError("Choose an output folder (or untick writing files).")
            out_dir = Path(text).expanduser()
            if out_dir.exists() and not out_dir.is_dir():
                raise UserError(f"{out_dir} is a file, not a folder.")
            out_dir.mkdir(parents=True, exist_ok=True)
            if not os.access(out_dir, os.W_OK):
                raise UserError(f"Cannot write to {out_dir}.")
        items = image_items(layers, model, hint="; tick 'only selected' and leave it out")
        self._model = model
        self.done, self.files = [], []

        self._cancel = cancel = threading.Event()

        def work():
            return (yield from predict_images(model, items, out_dir=out_dir, uncertainty=False, cancel=cancel))

        self.progress.setValue(0)
        self.status.setText(f"segmenting {len(items)} image(s)…")
        self._set_running(True)
        self.worker = start_worker(work, yielded=self._on_event, finished=self._on_finished)

    def cancel(self, *_: Any) -> None:
        if self.worker is not None:
            self._cancel.set()
            self.status.setText("cancelling after the current tiles…")

    def _set_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, Progress):
            self.progress.setValue(int(1000 * (ev.index + ev.done / max(ev.total, 1)) / ev.count))
            self.status.setText(f"{ev.index + 1}/{ev.count} {ev.image}: tile {ev.done}/{ev.total}")
        elif isinstance(ev, Result):
            self.done.append(ev.image)
            self.files.extend(ev.files)
            if self.add_layers.isChecked():
                show_result(self.viewer, ev, self._model, probabilities=False)

    def _on_finished(self) -> None:
        aborted = self._cancel.is_set()
        self.worker = None
        self._set_running(False)
        where = f"; files in {Path(self.files[0]).parent}" if self.files else ""
        if aborted:
            self.status.setText(f"cancelled after {len(self.done)} image(s){where}")
        elif self.done:
            self.progress.setValue(1000)
            self.status.setText(f"segmented {len(self.done)} image(s){where}")
            show_info(f"Segmented {len(self.done)} image(s){where}")
