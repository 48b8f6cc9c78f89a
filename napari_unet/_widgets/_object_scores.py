"""Evaluate's object scores: match predicted and true objects (``core.objects``) at IoU
0.5..0.95, a table per threshold, and an overlay of matched / missed / false objects.

The matching runs in a worker through the job panel (core.evaluate_job.iter_object_job:
progress, Cancel); the table, the summary and the overlay are made on the main thread."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from qtpy.QtWidgets import QAbstractItemView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from napari_unet.core.metrics import format_score

from . import _layers
from ._common import UserError, heading, hint, user_action
from ._job_panel import ResultJobPanel
from ._truth import truth_data

COLUMNS = ["IoU ≥", "TP", "FP", "FN", "precision", "recall", "F1", "AP", "mean IoU"]
KEYS = ["threshold", "tp", "fp", "fn", "precision", "recall", "f1", "ap", "mean_matched_iou"]
ROLE = "object_errors"


class ObjectScores(ResultJobPanel, QWidget):
    """``layers()`` gives the (prediction, truth) layers chosen in the Evaluate widget."""

    def __init__(self, viewer: Any, layers: Callable[[], tuple[Any, Any]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._layers = layers
        self.result: dict | None = None
        self.overlay: Any = None
        self.counts: dict[int, int] = {}
        self.cancel_message = "cancelling…"
        self._init_job_panel("Score objects")
        self._scored: Any = None  # the prediction layer of the running job
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.table.setMinimumHeight(120)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(heading("Objects"))
        lay.addWidget(hint("Objects are matched one to one at IoU ≥ threshold. An instance mask "
                           "(0 and many ids) is used as is; class labels or a binary mask become "
                           "objects by connected components. AP = TP / (TP + FP + FN)."))
        lay.addLayout(self.buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.summary)
        lay.addWidget(self.table)

    @user_action
    def run(self, *_: Any) -> Any:
        """Check the choices (a mistake is one notification) and start the matching in a
        worker; returns the worker (None after a mistake). The scores arrive in ``self.result``."""
        from napari_unet.core.evaluate_job import iter_object_job

        self._check_idle()
        pred_layer, truth_layer = self._layers()
        if pred_layer is None or truth_layer is None:
            raise UserError("Choose a prediction labels layer and a ground truth (a labels layer or an integer image).")
        pred, truth = np.asarray(pred_layer.data), truth_data(truth_layer)  # an integer image too
        if pred.shape != truth.shape:
            raise UserError(f"Shapes do not match: prediction '{pred_layer.name}' is {pred.shape}, "
                            f"ground truth '{truth_layer.name}' is {truth.shape}.")
        pred, truth = pred.copy(), truth.copy()  # the user may paint on either layer meanwhile
        self._scored = pred_layer
        self.result = None
        self._start_job(lambda cancel: iter_object_job(pred, truth, name=pred_layer.name, cancel=cancel),
                        f"matching objects of '{pred_layer.name}'…")
        return self.worker

    def _show(self, scored: Any) -> None:
        """Main thread: the table, the summary and the overlay layer."""
        from napari_unet.core.objects import OVERLAY_NAMES

        res = self.result = scored.result
        self.table.setRowCount(len(res["thresholds"]))
        for i, row in enumerate(res["thresholds"]):
            for j, key in enumerate(KEYS):
                v = row[key]
                self.table.setItem(i, j, QTableWidgetItem(f"{v:.2f}" if key == "threshold" else
                                                          format_score(v) if isinstance(v, float) else str(v)))
        self.table.resizeColumnsToContents()
        r50 = res["thresholds"][0]
        self.summary.setText(
            f"<b>{res['n_true']}</b> true, <b>{res['n_pred']}</b> predicted objects · at IoU 0.5: "
            f"F1 <b>{format_score(r50['f1'])}</b>, {r50['tp']} matched, {r50['fn']} missed, {r50['fp']} false · "
            f"{res['splits']} split, {res['merges']} merged · mean AP {format_score(res['mean_ap'])}<br>" +
            (f"{res['note']}<br>" if res.get("note") else "") +
            "  ".join(f"<span style='color:{_layers.ERROR_COLORS[c]}'>■</span> {OVERLAY_NAMES[c]}s"
                      for c in sorted(OVERLAY_NAMES)))
        self.overlay = self._show_overlay(self._scored, scored.overlay)
        self.counts = scored.counts
        self.status.setText(f"matched the objects of '{self._scored.name}'")

    def _show_overlay(self, pred_layer: Any, ov: np.ndarray) -> Any:
        for layer in self.viewer.layers:
            if _layers.role(layer) == ROLE and _layers.info(layer).get("image") == pred_layer.name:
                layer.data = ov
                return layer
        cmap = {None: "transparent", 0: "transparent", **{k: _layers.ERROR_COLORS[k] for k in (1, 2, 3)}}
        with _layers.result_layer(self.viewer, _layers.info(pred_layer).get("image")):
            return self.viewer.add_labels(ov, name=f"{pred_layer.name} object errors", colormap=cmap,
                                          opacity=0.6, scale=pred_layer.scale, translate=pred_layer.translate,
                                          metadata=_layers.tag(ROLE, pred_layer.name))
