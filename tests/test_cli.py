"""The napari-unet command: predict and evaluate end to end, and one-line errors (exit 2)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from napari_unet import build_model, predict, save_model
from napari_unet.cli import main


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    m = build_model(dims=2, classes=2, base_channels=4, depth=2)
    f = tmp_path / "model.pt"
    save_model(m, f)
    return f, m


def _err_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_predict_writes_probs_and_labels(tmp_path, model_file, capsys):
    f, m = model_file
    rng = np.random.default_rng(0)
    img2 = rng.integers(0, 1000, (37, 45)).astype(np.uint16)
    img3 = rng.normal(0, 1, (3, 20, 24)).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tif", img2)
    tifffile.imwrite(tmp_path / "b.tiff", img3)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(f), "--out-dir", str(out), "--tile", "16",
                 str(tmp_path / "a.tif"), str(tmp_path / "b.tiff")]) == 0
    pa = tifffile.imread(out / "a_probs.tif")
    la = tifffile.imread(out / "a_labels.tif")
    assert pa.shape == (2, 37, 45) and pa.dtype == np.float32
    assert la.shape == (37, 45) and la.dtype == np.uint8 and set(np.unique(la)) <= {1, 2}
    np.testing.assert_allclose(pa, predict(m, img2, tile=None, device="cpu"), atol=1e-4)
    np.testing.assert_array_equal(la, np.argmax(pa, 0) + 1)
    assert tifffile.imread(out / "b_probs.tif").shape == (2, 3, 20, 24)
    assert not list(out.glob("*.part")) and not list(out.glob(".*"))
    cap = capsys.readouterr()
    assert "a_probs.tif" in cap.out


def test_evaluate_table_and_json(tmp_path, capsys):
    truth = np.zeros((10, 10), np.uint8)
    truth[:5] = 2
    truth[5:] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[:4] = 2
    pred[4:] = 1
    tifffile.imwrite(tmp_path / "t.tif", truth)
    tifffile.imwrite(tmp_path / "p.tif", pred)
    assert main(["evaluate", "--pred", str(tmp_path / "p.tif"), "--truth", str(tmp_path / "t.tif"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["classes"]["2"]["iou"] == pytest.approx(0.8)
    assert s["classes"]["2"]["dice"] == pytest.approx(0.8889, abs=1e-4)
    assert main(["evaluate", "--pred", str(tmp_path / "p.tif"), "--truth", str(tmp_path / "t.tif")]) == 0
    table = capsys.readouterr().out
    assert "0.8000" in table and "0.8889" in table


def test_user_mistakes_are_one_line_exit_2(tmp_path, model_file, capsys):
    f, _ = model_file
    img = tmp_path / "img.tif"
    tifffile.imwrite(img, np.zeros((20, 20), np.uint8))
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((32, 32, 3), np.uint8))
    nan = tmp_path / "nan.tif"
    tifffile.imwrite(nan, np.full((20, 20), np.nan, np.float32))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"garbage")
    cases = [
        (["predict", "--model", str(tmp_path / "missing.pt"), "--out-dir", str(tmp_path), str(img)], "does not exist"),
        (["predict", "--model", str(corrupt), "--out-dir", str(tmp_path), str(img)], "model file"),
        (["predict", "--model", str(f), "--out-dir", str(tmp_path), str(tmp_path / "no.tif")], "does not exist"),
        (["predict", "--model", str(f), "--out-dir", str(tmp_path / "o"), str(rgb)], "RGB"),
        (["predict", "--model", str(f), "--out-dir", str(tmp_path / "o"), str(nan)], "NaN"),
        (["evaluate", "--pred", str(img), "--truth", str(rgb)], "shape"),
        (["evaluate", "--pred", str(img), "--truth", str(img)], "no labelled pixels"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        line = _err_line(capsys)
        assert line.startswith("napari-unet: error:") and needle in line, (argv, line)
    # nothing half-written for the failed predictions
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_console_script_help_and_bad_option():
    exe = [sys.executable, "-m", "napari_unet.cli"]
    r = subprocess.run(exe + ["--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "predict" in r.stdout and "train" in r.stdout and "evaluate" in r.stdout
    r = subprocess.run(exe + ["predict", "--tile", "abc"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
