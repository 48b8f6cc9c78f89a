"""Evaluate: per-class IoU/Dice of a prediction against ground truth (per slice on stacks),
as a copyable table, plus an error overlay layer (true/false positives, false negatives).

Scoring runs in a worker through the job panel (core.evaluate_job: progress, Cancel); the
table, the summary and the overlay layer are made on the main thread when the result comes."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtWidgets import (QAbstractItemView, QApplication, QComboBox, QFileDialog, QFormLayout,
                            QHBoxLayout, QLabel, QPushButton, QTableWidget, QTableWidgetItem,
                            QVBoxLayout, QWidget)

from napari_unet.core.metrics import format_score

from . import _layers
from ._object_scores import ROLE as OBJECT_ERRORS
from ._object_scores import ObjectScores
from ._common import LayerCombo, UserError, heading, hint, scrolled_layout, show_info, user_action
from ._job_panel import ResultJobPanel
from ._truth import float_hint, is_truth, no_truth_message, truth_data

COLUMNS = ["scope", "class", "IoU", "Dice", "TP", "FP", "FN"]
SHOWN = ["class", "IoU", "Dice", "TP", "FP", "FN"]  # the table merges scope into class


TRUTH_ZERO_CHOICES = [("auto", "auto (detect a complete mask)"),
                      ("background", "background (a complete mask)"),
                      ("unlabeled", "unlabeled (ignored, as in paintings)")]


def _is_labels(layer: Any) -> bool:
    return type(layer).__name__ == "Labels" and _layers.role(layer) not in ("errors", "paint", OBJECT_ERRORS)


class EvaluateWidget(ResultJobPanel, QWidget):
    cancel_message = "cancelling…"

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.rows: list[list[Any]] = []
        self.result: dict | None = None
        self.overlay: Any = None

        self.pred_combo = LayerCombo(napari_viewer, _is_labels, placeholder="(no labels layer)")
        # a mask opened with File > Open is an integer Image layer: offered too (_truth.py)
        self.truth_combo = LayerCombo(napari_viewer, lambda layer: is_truth(napari_viewer, layer),
                                      placeholder="(no labels layer or integer image)")
        self.truth_combo.setToolTip("Labels layers, and integer images such as a mask opened with "
                                    "File > Open (converted when scoring; a float image is not a mask).")
        self.truth_zero = QComboBox()  # items: TRUTH_ZERO_CHOICES' labels, data = core's truth_zero
        for value, text in TRUTH_ZERO_CHOICES:
            self.truth_zero.addItem(text, value)
        self.truth_zero.setToolTip(
            "background: a complete mask (binary 0/1, 0/255, instance ids): 0 is background (class 1), "
            "every other value foreground (class 2).\nunlabeled: 0 is ignored, as in paintings.\n"
            "auto: background for a boolean mask, 0 with one other value, or 0 with instance ids; "
            "unlabeled otherwise. The result says which was used.")
        # the job panel of Predict and Batch (Run, Cancel, progress, status): scoring a large
        # stack takes a while, and runs in a worker
        self._init_job_panel("Evaluate")
        self._scored: tuple[str, str] | None = None  # (prediction, truth) names of the running job
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(SHOWN))
        self.table.setHorizontalHeaderLabels(SHOWN)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.table.setMinimumHeight(160)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.copy_btn = QPushButton("Copy table")
        self.save_btn = QPushButton("Save CSV…")
        self.copy_btn.clicked.connect(self.copy)
        self.save_btn.clicked.connect(lambda: self.save_csv())
        self.legend = QLabel("")
        self.legend.setWordWrap(True)

        lay = scrolled_layout(self)
        form = QFormLayout()
        form.addRow("prediction", self.pred_combo)
        form.addRow("ground truth", self.truth_combo)
        form.addRow("truth 0 is", self.truth_zero)
        lay.addLayout(form)
        lay.addLayout(self.buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.summary)
        lay.addWidget(self.table)
        row = QHBoxLayout()
        row.addWidget(self.copy_btn)
        row.addWidget(self.save_btn)
        lay.addLayout(row)
        lay.addWidget(heading("Error overlay"))
        lay.addWidget(self.legend)
        lay.addWidget(hint("Truth 0 is either unlabeled (ignored, as in paintings) or background "
                           "(a complete mask); the summary says which reading was used."))
        self.objects = ObjectScores(napari_viewer, lambda: (self.pred_combo.layer(), self.truth_combo.layer()))
        lay.addWidget(self.objects)
        lay.addStretch(1)
        self._default_choices()
        napari_viewer.layers.events.inserted.connect(self._default_choices)

    def _default_choices(self, *_: Any) -> None:
        try:
            for combo, role in ((self.pred_combo, "labels"), (self.truth_combo, "truth")):
                current = combo.layer()
                if current is None or _layers.role(current) != role:
                    for layer in self.viewer.layers:
                        if _layers.role(layer) == role and type(layer).__name__ == "Labels":
                            combo.set_layer(layer.name)
                            break
        except RuntimeError:
            pass

    # ------------------------------------------------------------------ actions
    @user_action
    def run(self, *_: Any) -> Any:
        """Check the choices (a mistake is one notification) and start scoring in a worker;
        returns the worker (None after a mistake). The result arrives in ``self.result``."""
        from napari_unet.core.evaluate_job import iter_evaluate_job

        self._check_idle()
        self._clear_scores()  # a refused run must not leave the earlier pair's scores on show
        pred_layer, truth_layer = self.pred_combo.layer(), self.truth_combo.layer()
        if pred_layer is None or truth_layer is None:
            raise UserError(no_truth_message(self.viewer))
        if pred_layer is truth_layer:
            raise UserError("The prediction and the ground truth are the same layer." + float_hint(self.viewer))
        pred, truth = np.asarray(pred_layer.data), truth_data(truth_layer)
        if pred.shape != truth.shape:
            raise UserError(f"Shapes do not match: prediction '{pred_layer.name}' is {pred.shape}, "
                            f"ground truth '{truth_layer.name}' is {truth.shape}.")
        names, zero = _layers.info(pred_layer).get("class_names"), self.truth_zero.currentData()
        if zero != "background" and truth.dtype.kind != "b" and not truth.any():  # as the command line
            raise UserError(f"The ground truth '{truth_layer.name}' holds no labelled pixel (all 0): nothing "
                            "to score. If it is a mask whose 0 means background (an image without objects), "
                            "choose 'truth 0 is: background'.")
        # copies: the user may paint on either layer while the worker scores
        pred, truth = pred.copy(), truth.copy()
        self._scored = (pred_layer.name, truth_layer.name)
        self._layer_geometry = (pred_layer.scale, pred_layer.translate)
        self._scored_image = _layers.info(pred_layer).get("image")  # its painting stays on top
        self.result = None
        self._start_job(lambda cancel: iter_evaluate_job(pred, truth, truth_zero=zero, name=pred_layer.name,
                                                         class_names=names, cancel=cancel),
                        f"scoring '{pred_layer.name}'…")
        return self.worker

    def _clear_scores(self) -> None:
        """Forget the shown scores (summary, table, legend); the overlay layer stays a layer."""
        self.rows, self.result = [], None
        self.summary.setText("")
        self.legend.setText("")
        self.table.setRowCount(0)
        self.status.setText("")

    def _show(self, scores: Any) -> None:
        """Main thread: the table, the summary, the overlay layer and its legend."""
        from napari_unet.core.metrics import ERROR_NAMES

        pred_name, truth_name = self._scored
        result, self.rows, self.result, self.counts = scores.result, scores.rows, scores.result, scores.counts
        self._fill_table(self.rows)
        note = f"<br>{result['note']}" if result.get("note") else ""
        self.summary.setText(f"mean IoU <b>{format_score(result['mean_iou'])}</b> · mean Dice "
                             f"<b>{format_score(result['mean_dice'])}</b> · {result['pixels']:,} px compared, "
                             f"{result['ignored']:,} ignored<br>{result['truth_note']}{note}")
        cmap = {None: "transparent", 0: "transparent", **_layers.ERROR_COLORS}
        existing = [layer for layer in self.viewer.layers
                    if _layers.role(layer) == "errors" and _layers.info(layer).get("image") == pred_name]
        if existing:
            self.overlay = existing[0]
            self.overlay.data = scores.errors
        else:
            scale, translate = self._layer_geometry
            with _layers.result_layer(self.viewer, self._scored_image):
                self.overlay = self.viewer.add_labels(
                    scores.errors, name=f"{pred_name} errors", colormap=cmap, opacity=0.7, scale=scale,
                    translate=translate, metadata=_layers.tag("errors", pred_name))
        self.legend.setText("  ".join(
            f"<span style='color:{_layers.ERROR_COLORS[code]}'>■</span> {ERROR_NAMES[code]} "
            f"{self.counts[code]:,}" for code in sorted(ERROR_NAMES)))
        self.status.setText(f"scored '{pred_name}' against '{truth_name}'")

    def _fill_table(self, rows: list[list[Any]]) -> None:
        self.table.setRowCount(len(rows))
        for i, (scope, *row) in enumerate(rows):
            if scope != "all":
                row[0] = f"{scope} · {row[0]}"
            for j, v in enumerate(row):
                text = format_score(v) if isinstance(v, float) else str(v)  # NaN: "n/a"
                self.table.setItem(i, j, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()

    def as_csv(self, delimiter: str = ",") -> str:
        buf = io.StringIO()
        w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
        w.writerow(COLUMNS)
        for row in self.rows:
            w.writerow([format_score(v, ".6f") if isinstance(v, float) else v for v in row])
        return buf.getvalue()

    @user_action
    def copy(self, *_: Any) -> None:
        if not self.rows:
            raise UserError("Nothing to copy yet: press Evaluate first.")
        QApplication.clipboard().setText(self.as_csv("\t"))
        show_info("Scores copied (tab-separated): paste them into a spreadsheet.")

    @user_action
    def save_csv(self, path: str | None = None) -> str | None:
        if not self.rows:
            raise UserError("Nothing to save yet: press Evaluate first.")
        if path is None:  # the dialog asks before replacing a file
            path, _ = QFileDialog.getSaveFileName(self, "Save scores", "scores.csv", "CSV (*.csv)")
            if not path:
                return None
        else:  # a script's path: never over a file that is not scores of ours
            _check_csv_target(Path(path))
        from napari_unet.core.io import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(self.as_csv())
        self.status.setText(f"scores saved to {path}")
        show_info(f"Scores saved to {Path(path).name}.")
        return path


def _check_csv_target(path: Path) -> None:
    """Refuse to replace a folder, or a file that is not a scores CSV of ours (its header)."""
    if path.is_dir():
        raise UserError(f"Cannot save the scores to {path}: it is a folder.")
    if not path.exists():
        return
    header = ",".join(COLUMNS)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\r\n")
    except OSError:
        first = ""
    if path.suffix.lower() != ".csv" or first != header:
        raise UserError(f"Not saving the scores to {path.name}: that file exists and is not a scores CSV "
                        "of napari-unet; choose another name (Save CSV… asks before replacing a file).")
