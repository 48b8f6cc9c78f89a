"""The Train widget's model actions (a mixin): the model line, Save, Load and Revert.

Expects ``self.state`` (the viewer's ModelState), ``self.model_label``, ``self.revert_btn``,
``self.is_running()``, and for the preview ``self.viewer``, ``self.preview`` (PreviewSource),
``self.live_preview``, ``self.device`` and ``self._update_preview_source`` from the widget."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog

from . import _layers
from ._common import UserError, show_info, start_worker, user_action
from ._preview import clear_preview, show_preview


class ModelActions:
    def _model_changed(self, *_: Any) -> None:
        try:
            self.model_label.setText(self.state.describe())
            self.revert_btn.setEnabled(self.state.previous is not None and not self.is_running())
        except RuntimeError:
            pass

    @user_action
    def revert(self) -> None:
        """Swap the current model with the one the last training run replaced."""
        if self.is_running() or self.state.training is not None:
            raise UserError("Stop training before reverting the model.")
        if not self.state.revert():
            raise UserError("Nothing to revert to: no training run has replaced a model yet.")
        show_info(f"Model: {self.state.describe()}")
        self.refresh_preview()

    def refresh_preview(self) -> Any:
        """The preview layer of the slice on screen showed another model (before Revert or
        Load): predict it again with the current one, in the background. Returns the worker, or
        None when there is no preview layer to update (or live preview is off)."""
        model = self.state.model
        if model is None or not self.live_preview.isChecked() or self.is_running():
            return None
        self.preview.dims = int(model.meta.get("dims", 2))
        self._update_preview_source()
        item = self.preview()
        if item is None or _layers.find_role(self.viewer.layers, item[0][0], "preview") is None:
            return None
        key, image = item
        device = self.device.currentText()

        def job():
            from napari_unet.core.predict import PredictDone, iter_predict

            ca = 0 if model.meta.get("in_channels", 1) > 1 else None   # the source's channels come first
            try:
                for ev in iter_predict(model, image, device=device, channel_axis=ca):
                    if isinstance(ev, PredictDone):
                        return ev.probabilities
                    yield
            except (ValueError, TypeError):   # a model for other images (dims, channels)
                return None

        def shown(probabilities: Any) -> None:
            if self.state.model is not model or self.is_running():   # something newer since
                return
            if probabilities is not None:
                show_preview(self.viewer, key, probabilities)
            else:   # the other model's preview must not stay: none for this one
                clear_preview(self.viewer, key)

        return start_worker(job, returned=shown)

    @user_action
    def save_model(self, path: str | None = None) -> Path | None:
        """Save the current model. A ``path`` given here (a script, a test) never replaces a file
        that is not a napari-unet model (core's refusal); one chosen in the file dialog may,
        since the dialog asked the user before replacing it."""
        model = self.state.require()
        asked = path is None
        if asked:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", "unet.pt", "U-Net model (*.pt)")
            if not path:
                return None
        from napari_unet.core.io import save_model

        out = save_model(model, path, overwrite=asked)
        self.state.saved(out)  # every widget's model line says "saved to ..."
        show_info(f"Model saved to {Path(out).name}")  # the full path: the model line
        return out

    @user_action
    def load_model(self, path: str | None = None) -> Any:
        if self.state.training is not None:   # its end would replace the loaded model
            raise UserError("Stop training before loading a model.")
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load model", "", "U-Net model or bioimage.io package (*.pt *.zip)")
            if not path:
                return None
        from napari_unet.core.io import load_model

        model = load_model(path)
        self.state.set(model, f"loaded from {Path(path).name}")
        show_info(f"Loaded model {Path(path).name}")
        self.refresh_preview()
        return model
