"""Trust in the widgets (issue 10): Batch follows the command line's output policy."""
from __future__ import annotations

import numpy as np
import tifffile

from napari_unet._widgets._state import model_state

from conftest import errors


def test_batch_never_replaces_a_file_it_did_not_write(viewer, dock, qtbot, tiny_model, tmp_path, notes):
    viewer.add_image(np.random.default_rng(0).random((40, 40)).astype(np.float32), name="cells")
    model_state(viewer).set(tiny_model, "test")
    painted = np.full((40, 40), 2, np.uint8)
    tifffile.imwrite(tmp_path / "cells_labels.tif", painted)  # painted by hand
    w = dock("Batch")
    w.write.setChecked(True)
    w.out_dir.setText(str(tmp_path))
    w.run()
    assert w.worker is None  # refused before starting
    assert any("not written by napari-unet" in m for m in errors(notes)), notes
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells_labels.tif"), painted)
    assert not (tmp_path / "cells_probs.tif").exists()
    (tmp_path / "cells_labels.tif").unlink()
    w.run()  # a clean folder; then a re-run replaces its own outputs
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert tifffile.imread(tmp_path / "cells_labels.tif").shape == (40, 40)
    assert len(errors(notes)) == 1
