"""Make docs/screenshots/*.png: one real napari window per step of the workflow.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tests/gui/_screenshots.py [OUT_DIR]

(Not collected by pytest: the leading underscore.)
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SIZE = (1360, 840)


def pump(seconds: float = 0.3) -> None:
    from qtpy.QtWidgets import QApplication

    t = time.monotonic()
    while time.monotonic() - t < seconds:
        QApplication.processEvents()
        time.sleep(0.01)


def shoot(viewer, name: str) -> None:
    import imageio.v3 as iio
    from PIL import Image

    pump(0.5)
    img = viewer.screenshot(canvas_only=False, flash=False)
    path = OUT / f"{name}.png"
    # a 256-colour palette keeps each PNG small; the UI has few colours
    Image.fromarray(img[..., :3]).quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    print(f"{path} {path.stat().st_size // 1024} KB")
    del iio


def window(*docks: str):
    import napari

    viewer = napari.Viewer(show=True, title="napari-unet")
    viewer.window._qt_window.resize(*SIZE)
    widgets = {}
    for d in docks:
        _dw, widgets[d] = viewer.window.add_plugin_dock_widget("napari-unet", d, tabify=False)
    return viewer, widgets


def wait(cond, timeout: float = 120.0) -> None:
    t = time.monotonic()
    while not cond():
        pump(0.05)
        if time.monotonic() - t > timeout:
            raise TimeoutError("gave up waiting")


def main() -> None:
    import os
    import tempfile

    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("NAPARI_UNET_DATA_DIR", tempfile.mkdtemp())
    from napari.utils import notifications

    notifications.show_info = lambda msg: print("info:", msg)  # no toasts over the canvas
    OUT.mkdir(parents=True, exist_ok=True)

    # 1. annotate: the sample's strokes, the painting layer selected in paint mode
    viewer, w = window("Annotate")
    viewer.open_sample("napari-unet", "nuclei_2d")
    a = w["Annotate"]
    a.create_paint_layer()
    a.class_list.setCurrentRow(1)
    viewer.camera.zoom *= 1.6
    shoot(viewer, "1_annotate")

    # 2. training: loss curve, validation and live preview
    viewer.window.remove_dock_widget("all")
    _dw, t = viewer.window.add_plugin_dock_widget("napari-unet", "Train")
    t.set_limit(60, "seconds")
    t.preview_every = 2.0
    t.start()
    wait(lambda: not t.is_running())
    viewer.layers["nuclei 2d truth"].visible = False
    shoot(viewer, "2_train")

    # 3. predict
    viewer.window.remove_dock_widget("all")
    _dw, p = viewer.window.add_plugin_dock_widget("napari-unet", "Predict")
    viewer.layers.remove("nuclei 2d preview")
    p.image_combo.set_layer("nuclei 2d")
    p.run()
    wait(lambda: p.worker is None)
    viewer.layers["nuclei 2d paint"].visible = False
    for layer in viewer.layers:  # the labels over the image; the probability layers stay listed
        if layer.name.startswith("nuclei 2d p("):
            layer.visible = False
    viewer.layers.selection.active = viewer.layers["nuclei 2d labels"]
    shoot(viewer, "3_predict")

    # 4. evaluate against the ground truth
    viewer.window.remove_dock_widget("all")
    _dw, e = viewer.window.add_plugin_dock_widget("napari-unet", "Evaluate")
    e.pred_combo.set_layer("nuclei 2d labels")
    e.truth_combo.set_layer("nuclei 2d truth")
    e.run()
    wait(lambda: e.worker is None)  # (scoring runs in a worker)
    for layer in viewer.layers:
        layer.visible = layer.name in ("nuclei 2d", "nuclei 2d labels errors")
    shoot(viewer, "4_evaluate")

    # 5. batch: the 3D stack and a second copy, segmented with the same (2D) model
    viewer.window.remove_dock_widget("all")
    viewer.layers.clear()
    viewer.open_sample("napari-unet", "nuclei_3d")
    for layer in list(viewer.layers)[1:]:
        viewer.layers.remove(layer)
    viewer.add_image(np.ascontiguousarray(viewer.layers[0].data[:, ::-1]), name="nuclei 3d flipped",
                     colormap="gray", visible=False)
    _dw, b = viewer.window.add_plugin_dock_widget("napari-unet", "Batch")
    b.write.setChecked(True)
    b.out_dir.setText(tempfile.mkdtemp(prefix="napari-unet-batch-"))
    b.run()
    wait(lambda: b.worker is None)
    viewer.dims.set_current_step(0, 12)
    shoot(viewer, "5_batch")
    viewer.close()


if __name__ == "__main__":
    main()
