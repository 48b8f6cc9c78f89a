"""`napari-unet gui`: napari with the plugin's widgets as tabs in one dock and the sample data open.

Without a display (no DISPLAY/WAYLAND_DISPLAY on Linux, or Qt cannot start) it says so and
runs the headless demo instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

DOCK = "All steps (tabs)"  # the manifest's one-dock contribution (_widgets/tabs.py)


def has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _fallback(reason: str, demo_out_dir: Path) -> int:
    print(f"napari-unet gui: {reason}; running the headless demo instead "
          f"(results in {demo_out_dir}).", file=sys.stderr)
    from ._demo import run_demo

    return run_demo(Path(demo_out_dir))


def run_gui(sample: bool = True, demo_out_dir: Path = Path("napari-unet-demo")) -> int:
    if not has_display():
        return _fallback("no display found (DISPLAY/WAYLAND_DISPLAY unset)", demo_out_dir)
    try:
        import napari
        from qtpy.QtWidgets import QApplication

        from napari._qt.qt_event_loop import get_qapp

        get_qapp()
        if QApplication.instance() is None:
            raise RuntimeError("Qt could not start")
    except Exception as e:  # no Qt binding, no usable display server, ...
        return _fallback(f"Qt could not start ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                         demo_out_dir)
    viewer = napari.Viewer(title="napari-unet")
    if sample:
        viewer.open_sample("napari-unet", "nuclei_2d")
    # the same dock as Plugins > napari-unet > All steps (tabs), opened on its first step
    viewer.window.add_plugin_dock_widget("napari-unet", DOCK)
    napari.run()
    return 0
