"""The 'channel axis' choice of Predict and Batch: which axis of an image layer holds channels
(a (2, Y, X) layer is two channels of one plane, not two Z slices, when the user says so)."""
from __future__ import annotations

from qtpy.QtWidgets import QComboBox

_CHOICES = [("none (one channel)", None), ("axis 0 (C, [Z,] Y, X)", 0), ("axis 1 (Z, C, Y, X)", 1),
            ("last axis ([Z,] Y, X, C)", -1)]


def channel_combo() -> QComboBox:
    combo = QComboBox()
    for text, _ in _CHOICES:
        combo.addItem(text)
    combo.setToolTip("Which axis of the image holds its channels, for models trained on several "
                     "channels; 'none': the image is one channel (a 3D layer is a Z stack).")
    return combo


def channel_axis(combo: QComboBox) -> int | None:
    return _CHOICES[max(0, combo.currentIndex())][1]

