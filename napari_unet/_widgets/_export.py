"""The Train widget's "Export for bioimage.io…" button: the current model as a bioimage.io
package (core.bioimageio_export), written and tested in a worker thread."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog, QPushButton

from . import _layers
from ._common import UserError, show_info, start_worker, user_action

LABEL = "Export for bioimage.io…"


class ExportAction:
    """A button (``self.button``) for a widget with ``state`` (the shared model) and, optionally,
    ``chosen_pairs()`` (image layers like the training data, for the test image and cover)."""

    def __init__(self, widget: Any) -> None:
        self.widget = widget
        self.worker: Any = None
        self.last: Any = None  # the last Exported result
        self.button = QPushButton(LABEL)
        self.button.setToolTip(
            "Write the model as a bioimage.io model package (.zip) for deepImageJ, ilastik, QuPath "
            "or another lab's napari; bioimageio.core tests it before it is written. "
            "Needs: pip install 'napari-unet[bioimageio]'")
        self.button.clicked.connect(lambda: self.export())

    def _test_image(self, meta: dict) -> Any:
        """The first training image, if the model takes it (else the export makes one)."""
        from napari_unet.core.predict import prepare_image

        try:
            pairs = self.widget.chosen_pairs()
        except Exception:
            pairs = []
        for image, _paint in pairs:
            data = _layers.full_data(image)
            try:
                prepare_image(data, meta, None)
            except (UserError, ValueError, TypeError):
                continue
            return data
        return None

    @user_action
    def export(self, path: str | None = None, *, run_test: bool = True) -> Any:
        from napari_unet.core.bioimageio_export import (PackageTestFailed, export_bioimageio,
                                                        require_bioimageio)
        from napari_unet.core.model import model_meta

        if self.worker is not None:
            raise UserError("An export is already running.")
        model = self.widget.state.require()
        require_bioimageio()
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self.widget, "Export for bioimage.io", "model.zip",
                                                  "bioimage.io model package (*.zip)")
            if not path:
                return None
        if not path.lower().endswith(".zip"):
            path += ".zip"
        snapshot = copy.deepcopy(model)  # training may replace or move the model meanwhile
        test_image = self._test_image(model_meta(snapshot))

        def run():
            yield None
            try:  # the file dialog has asked about replacing an existing file
                return export_bioimageio(snapshot, path, test_image=test_image, run_test=run_test,
                                         overwrite=True)
            except PackageTestFailed as e:
                from ._common import Failed

                return Failed(str(e))

        self.button.setEnabled(False)
        self.button.setText("Exporting…")
        self.worker = start_worker(run, returned=self._done, finished=self._finished)
        return self.worker

    def _done(self, res: Any) -> None:
        self.last = res
        tested = "" if res.summary is None else f"; bioimageio.core test_model: {res.summary.status}"
        show_info(f"Exported the model to {Path(res.path)}{tested}")

    def _finished(self) -> None:
        self.worker = None
        try:
            self.button.setEnabled(True)
            self.button.setText(LABEL)
        except RuntimeError:  # the widget is gone
            pass
