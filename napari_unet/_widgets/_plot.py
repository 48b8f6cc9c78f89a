"""A small live loss/validation chart painted with QPainter (cheap: no matplotlib in the loop)."""
from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

TRAIN_COLOR = QColor("#f0a030")
VAL_COLOR = QColor("#56b4e9")
IOU_COLOR = QColor("#2ca02c")
MAX_POINTS = 600  # drawn; older points are thinned, never dropped from the record


class LossPlot(QWidget):
    """Training loss (line), validation loss (dots) and prediction stability (right axis, 0-1;
    see ``napari_unet.core.events.QUALITY_HELP``)
    against the step."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.clear()

    def clear(self) -> None:
        self.train: list[tuple[int, float]] = []
        self.val: list[tuple[int, float]] = []
        self.iou: list[tuple[int, float]] = []
        self.update()

    def add_train(self, step: int, loss: float) -> None:
        if math.isfinite(loss):
            self.train.append((step, loss))
            self.update()

    def add_val(self, step: int, loss: float, mean_iou: float | None = None) -> None:
        if math.isfinite(loss):
            self.val.append((step, loss))
        if mean_iou is not None and math.isfinite(mean_iou):
            self.iou.append((step, mean_iou))
        self.update()

    @staticmethod
    def _thin(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
        if len(points) <= MAX_POINTS:
            return points
        k = -(-len(points) // MAX_POINTS)
        # mean of each run of k points keeps the curve's level; the newest point is exact
        out = [(points[i + k - 1][0] if i + k <= len(points) else points[-1][0],
                sum(p[1] for p in points[i:i + k]) / len(points[i:i + k]))
               for i in range(0, len(points), k)]
        out[-1] = points[-1]
        return out

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt name)
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, QColor("#1e2126"))
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        left, right, top, bottom = 40, 30, 18, 20
        plot = QRectF(left, top, max(10, w - left - right), max(10, h - top - bottom))
        p.setPen(QPen(QColor("#444a52"), 1))
        p.drawRect(plot)

        p.setPen(TRAIN_COLOR)
        p.drawText(QPointF(left, 12), "loss")
        p.setPen(VAL_COLOR)
        p.drawText(QPointF(left + 36, 12), "● val loss")
        p.setPen(IOU_COLOR)
        p.drawText(QPointF(left + 108, 12), "-- stability")

        if not self.train and not self.val:
            p.setPen(QColor("#8a9099"))
            p.drawText(plot, Qt.AlignCenter, "the loss curve appears here while training")
            return
        pts = self._thin(self.train)
        steps = [s for s, _ in pts] + [s for s, _ in self.val]
        losses = [v for _, v in pts] + [v for _, v in self.val]
        x0, x1 = min(steps), max(max(steps), min(steps) + 1)
        y1 = max(losses) * 1.05 if losses else 1.0
        y0 = 0.0
        if y1 <= y0:
            y1 = y0 + 1.0

        def xy(s: float, v: float, lo: float = y0, hi: float = y1) -> QPointF:
            return QPointF(plot.left() + (s - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (v - lo) / (hi - lo) * plot.height())

        # axes labels
        p.setPen(QColor("#8a9099"))
        p.drawText(QRectF(0, plot.top() - 7, left - 4, 14), Qt.AlignRight | Qt.AlignVCenter, f"{y1:.2g}")
        p.drawText(QRectF(0, plot.bottom() - 7, left - 4, 14), Qt.AlignRight | Qt.AlignVCenter, "0")
        p.drawText(QRectF(plot.left(), plot.bottom() + 2, 80, 14), Qt.AlignLeft, f"step {x0}")
        p.drawText(QRectF(plot.right() - 80, plot.bottom() + 2, 80, 14), Qt.AlignRight, f"{x1}")
        p.drawText(QRectF(plot.right() + 2, plot.top() - 7, right, 14), Qt.AlignLeft | Qt.AlignVCenter, "1")

        if len(pts) > 1:
            path = QPainterPath(xy(*pts[0]))
            for s, v in pts[1:]:
                path.lineTo(xy(s, v))
            p.setPen(QPen(TRAIN_COLOR, 1.5))
            p.drawPath(path)
        p.setPen(Qt.NoPen)
        p.setBrush(VAL_COLOR)
        for s, v in self.val[-MAX_POINTS:]:
            p.drawEllipse(xy(s, v), 3, 3)
        if self.iou:
            pen = QPen(IOU_COLOR, 1.5, Qt.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.NoBrush)
            path = QPainterPath(xy(self.iou[0][0], self.iou[0][1], 0.0, 1.0))
            for s, v in self.iou[1:]:
                path.lineTo(xy(s, v, 0.0, 1.0))
            if len(self.iou) == 1:
                p.drawEllipse(xy(self.iou[0][0], self.iou[0][1], 0.0, 1.0), 2, 2)
            p.drawPath(path)
