"""All of the plugin's widgets as tabs in one dock (the "napari-unet" entry of the Plugins
menu, and what ``napari-unet gui`` opens): one step on screen at a time. Each page scrolls on
its own (the widgets do, _common.scrolled_layout), so the dock fits any screen height."""
from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QTabWidget, QVBoxLayout, QWidget

# (tab title, module, class): the order of the workflow
PAGES = (("Annotate", "annotate", "AnnotateWidget"), ("Train", "train", "TrainWidget"),
         ("Predict", "predict", "PredictWidget"), ("Evaluate", "evaluate", "EvaluateWidget"),
         ("Batch", "batch", "BatchWidget"), ("Measure", "measure", "MeasureWidget"))


class UNetTabs(QWidget):
    """One dock, one tab per step; ``page(title)`` gives a page's widget. The pages share the
    viewer's model state (_state.py) exactly as separately docked widgets do."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        import importlib

        super().__init__(parent)
        self.viewer = napari_viewer
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.pages: dict[str, QWidget] = {}
        for title, module, cls in PAGES:
            widget = getattr(importlib.import_module(f"{__package__}.{module}"), cls)(napari_viewer)
            self.tabs.addTab(widget, title)
            self.pages[title] = widget
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tabs)

    def page(self, title: str) -> QWidget:
        return self.pages[title]

    def show_page(self, title: str) -> QWidget:
        self.tabs.setCurrentIndex(list(self.pages).index(title))
        return self.pages[title]
