"""``napari-unet predict`` (the in-memory TIFF path) runs the plugin's prediction job,
core.jobs.iter_predict_job: files in, the same outputs, the same cancel."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
import torch

from napari_unet.cli import main
from napari_unet.core.io import save_model
from napari_unet.core.model import build_model
from napari_unet.core.predict import predict, probabilities_to_labels


@pytest.fixture
def model3d(tmp_path):
    torch.manual_seed(1)
    m = build_model(dims=3, classes=2, base_channels=4, depth=2)
    save_model(m, tmp_path / "m3.pt")
    return tmp_path / "m3.pt", m


def test_cli_predict_goes_through_the_job(tmp_path, model3d, monkeypatch, capsys):
    import napari_unet.core.jobs as jobs

    calls = []
    real = jobs.iter_predict_job

    def spy(model, items, **kw):
        calls.append(([name for name, _ in items], kw))
        yield from real(model, items, **kw)

    monkeypatch.setattr(jobs, "iter_predict_job", spy)
    img = np.random.default_rng(0).random((8, 24, 20)).astype(np.float32)
    tifffile.imwrite(tmp_path / "vol one.ome.tif", img)
    path, model = model3d
    assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--quiet",
                 str(tmp_path / "vol one.ome.tif")]) == 0
    [(names, kw)] = calls
    assert names == ["vol one.ome.tif"] and kw["out_what"] == "--out-dir" and not kw["keep_arrays"]
    out = capsys.readouterr().out
    assert out.startswith(f"vol one.ome.tif: wrote {tmp_path / 'o' / 'vol one_probs.tif'} and ")
    ref = predict(model, img, tile=None, device="cpu")
    np.testing.assert_allclose(tifffile.imread(tmp_path / "o" / "vol one_probs.tif"), ref, atol=1e-4)


def test_a_time_lapse_tiff_predicts_frame_by_frame(tmp_path, model3d, capsys):
    movie = np.random.default_rng(2).random((2, 8, 24, 20)).astype(np.float32)  # t, z, y, x
    tifffile.imwrite(tmp_path / "movie.tif", movie)
    path, model = model3d
    assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--quiet",
                 str(tmp_path / "movie.tif")]) == 0
    probs = tifffile.imread(tmp_path / "o" / "movie_probs.tif")
    labels = tifffile.imread(tmp_path / "o" / "movie_labels.tif")
    assert probs.shape == (2, *movie.shape) and labels.shape == movie.shape
    np.testing.assert_array_equal(labels, probabilities_to_labels(probs))
    # instances of a time-lapse: refused before any work
    assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "i"), "--instances",
                 str(tmp_path / "movie.tif")]) == 2
    assert "--instances is not available for a time-lapse (movie.tif)" in capsys.readouterr().err
    assert not (tmp_path / "i" / "movie_probs.tif").exists()


def test_cancel_while_writing_straight_to_files_leaves_no_file(tmp_path, model3d, monkeypatch):
    import napari_unet.core.predict as P
    from napari_unet.core.jobs import Progress, Result, iter_predict_job

    monkeypatch.setattr(P, "fits_in_ram", lambda nbytes, *a, **k: False)  # the memory-mapped TIFFs
    img = np.random.default_rng(3).random((8, 40, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "s.tif", img)
    out = tmp_path / "out"
    out.mkdir()
    cancel = threading.Event()
    seen = []
    for ev in iter_predict_job(model3d[1], [("s", tmp_path / "s.tif")], tile=16, uncertainty=False,
                               out_dir=out, keep_arrays=False, cancel=cancel):
        seen.append(ev)
        cancel.set()  # after the first batch of tiles
    assert isinstance(seen[0], Progress) and not any(isinstance(e, Result) for e in seen)
    assert list(out.iterdir()) == []  # the partial files were removed, not renamed
    # and uncancelled, the same path writes both files (no arrays kept)
    [res] = [e for e in iter_predict_job(model3d[1], [("s", tmp_path / "s.tif")], tile=16,
                                         uncertainty=False, out_dir=out, keep_arrays=False)
             if isinstance(e, Result)]
    assert res.probabilities is None and res.files == (str(out / "s_probs.tif"), str(out / "s_labels.tif"))
    np.testing.assert_allclose(tifffile.imread(out / "s_probs.tif"), predict(model3d[1], img, tile=None),
                               atol=1e-4)


def test_one_class_per_object_from_the_command_line(tmp_path, capsys):
    """``--one-class-per-object``: every connected object of the labels has one class, the one
    the written probabilities give the most mass; refused with a clear message where it cannot
    apply, before anything is written."""
    from scipy import ndimage as ndi

    from napari_unet.core.postprocess import one_class_per_object

    from napari_unet import train

    # dim and bright disks on a dark background, a few strokes of each of the 3 classes
    yy, xx = np.indices((48, 56))
    img = np.random.default_rng(0).normal(0.1, 0.05, (48, 56)).astype(np.float32)
    strokes = np.zeros((48, 56), np.uint8)
    for cy, cx, v, c in ((12, 12, 0.5, 2), (12, 40, 1.0, 3), (36, 14, 1.0, 3), (34, 42, 0.5, 2)):
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < 49
        img[disk] += v
        strokes[cy, cx - 3:cx + 3] = c
    strokes[0:2, :] = 1
    m = train(img, strokes, steps=30, seed=0, device="cpu", base_channels=4, depth=2)
    save_model(m, tmp_path / "m.pt")
    tifffile.imwrite(tmp_path / "img.tif", img)
    base = ["predict", "--model", str(tmp_path / "m.pt"), "--quiet", "--device", "cpu"]
    assert main(base + ["--out-dir", str(tmp_path / "plain"), str(tmp_path / "img.tif")]) == 0
    assert main(base + ["--out-dir", str(tmp_path / "o"), "--one-class-per-object", str(tmp_path / "img.tif")]) == 0
    probs = tifffile.imread(tmp_path / "o" / "img_probs.tif")
    lab = tifffile.imread(tmp_path / "o" / "img_labels.tif")
    plain = tifffile.imread(tmp_path / "plain" / "img_labels.tif")
    assert np.array_equal(probs, tifffile.imread(tmp_path / "plain" / "img_probs.tif"))
    assert np.array_equal(lab, one_class_per_object(probs, plain.copy()))
    pieces, n = ndi.label(lab > 1)
    assert n > 0
    assert all(len(np.unique(lab[pieces == i])) == 1 for i in range(1, n + 1))
    capsys.readouterr()
    # a two-class model, and the out-of-core formats: refused up front
    save_model(build_model(dims=2, classes=2, base_channels=4, depth=2), tmp_path / "m2.pt")
    for argv, needle in ((["--model", str(tmp_path / "m2.pt")], "more than two classes"),
                         (["--model", str(tmp_path / "m.pt"), "--format", "ome-zarr"], "in memory")):
        assert main(["predict", *argv, "--quiet", "--device", "cpu", "--out-dir", str(tmp_path / "bad"),
                     "--one-class-per-object", str(tmp_path / "img.tif")]) != 0
        assert needle in capsys.readouterr().err
    assert not (tmp_path / "bad").exists() or not list((tmp_path / "bad").iterdir())
