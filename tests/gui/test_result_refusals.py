"""Save model…, Save CSV…, Evaluate and Batch refuse what would lose the user's work or show
wrong numbers: a file that is not ours is never replaced by a path given in code, a refused
evaluation clears the earlier scores, an all-0 truth is named, a NaN image in a batch is named
and skipped."""
from __future__ import annotations

import numpy as np

from napari_unet._widgets._state import model_state

from conftest import errors

HANG_MS = 120_000  # only catches hangs


class _Dialog:
    """Stands in for QFileDialog: 'the user chose this path (and confirmed replacing it)'."""

    path = ""

    @classmethod
    def getSaveFileName(cls, *_a, **_k):
        return cls.path, ""


def test_save_model_by_path_keeps_a_file_that_is_not_a_model(viewer, dock, notes, tmp_path, tiny_model,
                                                             monkeypatch):
    from napari_unet._widgets import _train_model

    image = tmp_path / "my_image.tif"
    image.write_bytes(b"II*\x00 the user's image")
    model_state(viewer).set(tiny_model, "test")
    w = dock("Train")
    assert w.save_model(str(image)) is None
    assert image.read_bytes() == b"II*\x00 the user's image"
    assert "my_image.tif" in errors(notes)[-1]
    model_file = tmp_path / "unet.pt"
    assert w.save_model(str(model_file)) == model_file
    assert w.save_model(str(model_file)) == model_file  # an earlier model of ours is replaced
    # the file dialog asked before replacing: its choice is written
    _Dialog.path = str(image)
    monkeypatch.setattr(_train_model, "QFileDialog", _Dialog)
    assert w.save_model() is not None
    assert image.read_bytes() != b"II*\x00 the user's image"


def test_save_csv_by_path_keeps_a_file_that_is_not_our_csv(viewer, dock, notes, tmp_path, evaluated, monkeypatch):
    from napari_unet._widgets import evaluate as evaluate_module

    truth = np.zeros((16, 16), np.uint8)
    truth[4:10, 4:10] = 1
    viewer.add_labels(truth + 1, name="pred")
    viewer.add_labels(truth, name="truth")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("truth")
    assert evaluated(w) is not None
    for name, content in (("img.tif", b"II*\x00 pixels"), ("notes.csv", b"my own table\n1,2\n")):
        f = tmp_path / name
        f.write_bytes(content)
        assert w.save_csv(str(f)) is None
        assert f.read_bytes() == content and name in errors(notes)[-1]
    ours = tmp_path / "scores.csv"
    assert w.save_csv(str(ours)) == str(ours)
    assert w.save_csv(str(ours)) == str(ours)  # scores of ours: replaced
    assert ours.read_text() == w.as_csv()
    _Dialog.path = str(tmp_path / "img.tif")  # the dialog asked before replacing
    monkeypatch.setattr(evaluate_module, "QFileDialog", _Dialog)
    assert w.save_csv() == _Dialog.path
    assert (tmp_path / "img.tif").read_text() == w.as_csv()


def test_evaluate_refused_run_clears_the_earlier_scores(viewer, dock, notes, evaluated):
    sem = np.ones((32, 32), np.uint8)
    sem[8:20, 8:20] = 2
    viewer.add_labels(sem, name="pred")
    viewer.add_labels(sem, name="truth")
    viewer.add_labels(sem[:20], name="small")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("truth")
    assert evaluated(w) is not None
    assert "1.000" in w.summary.text() and w.table.rowCount() and w.rows
    w.truth_combo.set_layer("small")
    assert evaluated(w) is None
    assert "Shapes do not match" in errors(notes)[-1]
    assert w.summary.text() == "" and w.table.rowCount() == 0 and w.rows == [] and w.result is None
    assert "scored" not in w.status.text()
    w.copy()
    assert "Nothing to copy" in errors(notes)[-1]


def test_evaluate_refuses_an_all_zero_truth_and_names_it(viewer, dock, notes, evaluated):
    pred = np.ones((32, 32), np.uint8)
    pred[8:20, 8:20] = 2
    viewer.add_labels(pred, name="pred")
    viewer.add_labels(np.zeros((32, 32), np.uint8), name="blank")
    w = dock("Evaluate")
    w.pred_combo.set_layer("pred")
    w.truth_combo.set_layer("blank")
    for zero in ("auto", "unlabeled"):
        w.truth_zero.setCurrentIndex(w.truth_zero.findData(zero))
        assert evaluated(w) is None
        assert "'blank' holds no labelled pixel (all 0)" in errors(notes)[-1]
        assert "truth 0 is: background" in errors(notes)[-1]
        assert "nan" not in w.summary.text().lower()
    # an image without objects, read as a complete mask: scored
    w.truth_zero.setCurrentIndex(w.truth_zero.findData("background"))
    assert evaluated(w) is not None


def test_batch_skips_a_nan_image_and_names_it(viewer, dock, notes, qtbot, tiny_model):
    img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    bad = img.copy()
    bad[4:8, 4:8] = np.nan
    viewer.add_image(img, name="a")
    viewer.add_image(bad, name="b")
    viewer.add_image(img * 2, name="c")
    model_state(viewer).set(tiny_model, "test")
    b = dock("Batch")
    b.run()
    qtbot.waitUntil(lambda: b.worker is None, timeout=HANG_MS)
    assert b.done == ["a", "c"]  # the images after the NaN one are segmented too
    assert len(errors(notes)) == 1 and "'b'" in errors(notes)[0] and "NaN" in errors(notes)[0]
    assert "segmented 2 image(s)" in b.status.text()
    assert "skipped 'b': it contains NaN" in b.status.text()
    assert "skipped 'b'" in notes[-1][1]
