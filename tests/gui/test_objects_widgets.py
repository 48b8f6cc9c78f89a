"""Objects in the widgets: Predict's instances layer, Evaluate's object scores and overlay, and
the Measure objects table (sorting, click-to-centre, CSV)."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_unet._widgets._state import model_state


def _case():
    t = np.zeros((10, 10), np.uint16)
    t[0:4, 0:4], t[0:4, 6:10], t[6:10, 0:4], t[6:10, 6:10] = 1, 2, 3, 4
    p = np.zeros((10, 10), np.uint16)
    p[0:4, 0:4], p[0:4, 6:9], p[6:9, 0:4], p[9, 0:4], p[4:6, 4:6] = 7, 3, 5, 9, 2
    return p, t


def test_predict_instances_layer_and_update(viewer, dock, qtbot, tiny_model):
    from napari_unet.core.instances import instance_labels

    img = np.random.default_rng(1).random((64, 80)).astype(np.float32)
    viewer.add_image(img, name="cells", scale=(0.5, 0.5))
    model_state(viewer).set(tiny_model, "test")
    w = dock("Predict")
    assert not w.instances.min_size.isEnabled()
    w.instances.enabled.setChecked(True)
    w.instances.min_size.setValue(2)
    w.instances.seed_distance.setValue(1.5)
    w.run()
    qtbot.waitUntil(lambda: w.worker is None and "cells_instances" in viewer.layers
                    and w.instances.worker is None, timeout=120_000)  # only catches a hang
    layer = viewer.layers["cells_instances"]
    probs = viewer.layers["cells p(nucleus)"].data
    expected = instance_labels(probs, min_size=2, seed_distance=1.5, spacing=(0.5, 0.5))
    assert np.array_equal(layer.data, expected)
    assert tuple(layer.scale) == (0.5, 0.5)
    n_layers = len(viewer.layers)
    # tune and update without predicting again: the same layer changes in place
    w.instances.min_size.setValue(10_000)
    w.instances.update_all()
    qtbot.waitUntil(lambda: w.instances.worker is None, timeout=120_000)  # only catches a hang
    assert len(viewer.layers) == n_layers
    assert viewer.layers["cells_instances"].data.max() == 0


def test_evaluate_object_scores_and_overlay(viewer, dock, notes, evaluated):
    from napari_unet.core.objects import OBJ_FALSE, OBJ_MATCHED, OBJ_MISSED

    p, t = _case()
    viewer.add_labels(p, name="pred")
    viewer.add_labels(t, name="truth")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("truth")
    res = evaluated(w.objects)  # the matching runs in a worker
    r50 = res["thresholds"][0]
    assert (r50["tp"], r50["fp"], r50["fn"]) == (3, 2, 1)
    assert w.objects.table.rowCount() == 10
    assert w.objects.table.item(0, 6).text() == "0.667"  # F1 at 0.5
    assert "F1 <b>0.667</b>" in w.objects.summary.text()
    ov = viewer.layers["pred object errors"].data
    assert ov[0, 0] == OBJ_MATCHED and ov[4, 4] == OBJ_FALSE and ov[7, 7] == OBJ_MISSED
    n = len(viewer.layers)
    evaluated(w.objects)  # again: the overlay is updated, not duplicated
    assert len(viewer.layers) == n
    # the overlay is not offered as a prediction or truth
    assert "pred object errors" not in [w.pred_combo.itemText(i) for i in range(w.pred_combo.count())]
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("pred")
    viewer.add_labels(np.zeros((5, 5), np.uint8), name="small")
    w.truth_combo.set_layer("small")
    assert w.objects.run() is None
    assert any("Shapes do not match" in m for k, m in notes if k == "error")


def test_measure_table_sort_click_and_csv(viewer, dock, tmp_path):
    lab = np.zeros((3, 40, 50), np.uint16)
    lab[1, 5:9, 5:9] = 1      # 16 voxels
    lab[0:3, 20:30, 30:40] = 2  # 300 voxels
    img = np.zeros(lab.shape, np.float32)
    img[lab == 2] = 5.0
    viewer.add_image(img, name="stack", scale=(2.0, 0.5, 0.5))
    viewer.add_labels(lab, name="stack_instances", scale=(2.0, 0.5, 0.5),
                      metadata={"napari_unet": {"role": "instances", "image": "stack"}})
    w = dock("Measure objects")
    assert w.objects_combo.currentText() == "stack_instances"
    rows = w.run()
    assert [r["label"] for r in rows] == [1, 2]
    assert rows[1]["volume"] == pytest.approx(300 * 2.0 * 0.25) and rows[1]["mean_intensity"] == 5.0
    cols = [w.table.horizontalHeaderItem(j).text() for j in range(w.table.columnCount())]
    vol = cols.index("volume")
    from qtpy.QtCore import Qt

    w.table.sortItems(vol, Qt.DescendingOrder)
    assert w.table.item(0, 0).text() == "2"  # the bigger object first
    w.centre_on_row(0)
    cz, cy, cx = rows[1]["centroid_z"], rows[1]["centroid_y"], rows[1]["centroid_x"]
    assert tuple(viewer.camera.center[-2:]) == pytest.approx((cy * 0.5, cx * 0.5))
    assert viewer.dims.point[0] == pytest.approx(cz * 2.0)
    out = w.save_csv(str(tmp_path / "objects.csv"))
    got = list(csv.DictReader(open(out)))
    assert [int(r["label"]) for r in got] == [1, 2] and float(got[1]["volume"]) == pytest.approx(150)
