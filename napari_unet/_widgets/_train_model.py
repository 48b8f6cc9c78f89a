"""The Train widget's model actions (a mixin): the model line, Save, Load and Revert.

Expects ``self.state`` (the viewer's ModelState), ``self.model_label``, ``self.revert_btn`` and
``self.is_running()`` from the widget."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import QFileDialog

from ._common import UserError, show_info, user_action


class ModelActions:
    def _model_changed(self, *_: Any) -> None:
        try:
            self.model_label.setText(self.state.describe())
            self.revert_btn.setEnabled(self.state.previous is not None and not self.is_running())
        except RuntimeError:
            pass

    @user_action
    def revert(self) -> None:
        """Swap the current model with the one the last continued run started from."""
        if self.is_running():
            raise UserError("Stop training before reverting the model.")
        if not self.state.revert():
            raise UserError("Nothing to revert to: continue training a model first.")
        show_info(f"Model: {self.state.describe()}")

    @user_action
    def save_model(self, path: str | None = None) -> Path | None:
        model = self.state.require()
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Save model", "unet.pt", "U-Net model (*.pt)")
            if not path:
                return None
        from napari_unet.core.io import save_model

        out = save_model(model, path)
        self.state.saved(out)  # every widget's model line says "saved to ..."
        show_info(f"Model saved to {Path(out).name}")  # the full path: the model line
        return out

    @user_action
    def load_model(self, path: str | None = None) -> Any:
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Load model", "", "U-Net model or bioimage.io package (*.pt *.zip)")
            if not path:
                return None
        from napari_unet.core.io import load_model

        model = load_model(path)
        self.state.set(model, f"loaded from {Path(path).name}")
        show_info(f"Loaded model {Path(path).name}")
        return model
