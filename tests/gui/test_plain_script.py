"""napari from a plain script (no ``if __name__ == "__main__":``): Train starts, finishes, and
only one viewer is ever created (the training process must not re-run the user's script)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import os
with open({marker!r}, "a") as f:  # one line per run of this script (i.e. per viewer)
    f.write(str(os.getpid()) + "\\n")
import napari
from qtpy.QtCore import QTimer

viewer = napari.Viewer()
viewer.open_sample("napari-unet", "nuclei_2d")
_, w = viewer.window.add_plugin_dock_widget("napari-unet", "Train")
w.base_channels.setValue(8)
w.depth.setValue(2)
w.set_limit(3, "steps")
w.live_preview.setChecked(False)
w.start()
print("STATUS", w.status.text(), flush=True)


def check():
    if w.is_running():
        QTimer.singleShot(100, check)
        return
    print("RESULT", w.finished_reason, "|", w.status.text(), flush=True)
    viewer.close()


QTimer.singleShot(100, check)
napari.run()
print("CLOSED", flush=True)
"""


@pytest.mark.slow
def test_training_from_a_plain_napari_script(tmp_path):
    marker = tmp_path / "runs.txt"
    script = tmp_path / "my_napari_script.py"
    script.write_text(SCRIPT.format(marker=str(marker)))
    env = dict(os.environ, NAPARI_UNET_DATA_DIR=str(tmp_path / "userdata"),
               NAPARI_CONFIG=str(tmp_path / "napari_settings.yaml"))
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=280)  # a hang, not a speed limit
    assert r.returncode == 0, r.stderr[-3000:]
    assert "RESULT steps" in r.stdout, (r.stdout, r.stderr[-3000:])
    assert "CLOSED" in r.stdout
    assert len(marker.read_text().split()) == 1, "the script ran again: a second viewer was opened"
