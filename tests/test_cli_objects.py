"""napari-unet predict --instances/--measure and evaluate --objects (through cli.main)."""
import csv
import json

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.instances import instance_labels


def test_predict_instances_and_measure(tmp_path, model_file, capsys):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 1000, (3, 40, 48)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", img)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), "--quiet", "--instances",
                 "--measure", "--min-size", "3", "--seed-distance", "2", "--spacing", "2,0.5,0.5",
                 str(tmp_path / "stack.tif")]) == 0
    stdout = capsys.readouterr().out
    assert "stack_instances.tif" in stdout and "stack_objects.csv" in stdout
    inst = tifffile.imread(out / "stack_instances.tif")
    probs = tifffile.imread(out / "stack_probs.tif")
    assert inst.shape == img.shape and inst.dtype in (np.uint16, np.uint32)
    expected = instance_labels(probs[1], min_size=3, seed_distance=2, spacing=(2, 0.5, 0.5))
    assert np.array_equal(inst, expected)
    assert np.array_equal(inst > 0, expected > 0)
    rows = list(csv.DictReader(open(out / "stack_objects.csv")))
    assert len(rows) == len(np.unique(inst)) - 1
    if rows:
        r = rows[0]
        assert float(r["volume"]) == pytest.approx(int(r["pixels"]) * 0.5)
        assert {"mean_intensity", "centroid_z", "bbox_max_x", "class"} <= set(r)
    assert not list(out.glob(".*part"))  # written through temporary names


def test_predict_instances_errors(tmp_path, model_file, capsys):
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((16, 16), np.uint16))
    base = ["predict", "--model", str(model_file), "--out-dir", str(tmp_path / "o"), str(tmp_path / "a.tif")]
    assert main(base + ["--measure"]) == 2
    assert "--instances" in capsys.readouterr().err
    assert main(base + ["--instances", "--instance-class", "5"]) == 2
    assert "class 5" in capsys.readouterr().err
    assert not (tmp_path / "o" / "a_probs.tif").exists()


def test_evaluate_objects(tmp_path, capsys):
    t = np.zeros((10, 10), np.uint16)
    t[0:4, 0:4], t[0:4, 6:10], t[6:10, 0:4], t[6:10, 6:10] = 1, 2, 3, 4
    p = np.zeros((10, 10), np.uint16)
    p[0:4, 0:4], p[0:4, 6:9], p[6:9, 0:4], p[9, 0:4], p[4:6, 4:6] = 7, 3, 5, 9, 2
    tifffile.imwrite(tmp_path / "t.tif", t)
    tifffile.imwrite(tmp_path / "p.tif", p)
    args = ["evaluate", "--pred", str(tmp_path / "p.tif"), "--truth", str(tmp_path / "t.tif"), "--objects"]
    assert main(args + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    r50 = res["thresholds"][0]
    assert (r50["threshold"], r50["tp"], r50["fp"], r50["fn"]) == (0.5, 3, 2, 1)
    assert r50["f1"] == pytest.approx(2 / 3) and r50["ap"] == pytest.approx(0.5)
    assert (res["splits"], res["merges"]) == (1, 0)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "4 true objects, 5 predicted" in text and "0.50" in text
    # a semantic truth (0/255) is split into objects by connected components
    tifffile.imwrite(tmp_path / "b.tif", np.where(t > 0, 255, 0).astype(np.uint8))
    assert main(["evaluate", "--pred", str(tmp_path / "p.tif"), "--truth", str(tmp_path / "b.tif"),
                 "--objects", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_true"] == 4


def test_instances_use_the_recorded_pixel_size(tmp_path, model_file, capsys):
    from napari_unet.core.readers import input_pixel_size

    img = np.random.default_rng(2).integers(0, 1000, (3, 32, 32)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "px.tif", img, imagej=True, resolution=(2.0, 2.0),
                     metadata={"spacing": 3.0, "unit": "um", "axes": "ZYX"})
    out = tmp_path / "out"
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), "--quiet", "--instances",
                 "--measure", "--min-size", "1", "--seed-distance", "1", str(tmp_path / "px.tif")]) == 0
    pixel = input_pixel_size(out / "px_instances.tif")
    assert pixel.sizes == pytest.approx({"z": 3.0, "y": 0.5, "x": 0.5})
    probs = tifffile.imread(out / "px_probs.tif")
    expected = instance_labels(probs[1], min_size=1, seed_distance=1, spacing=(3.0, 0.5, 0.5))
    assert np.array_equal(tifffile.imread(out / "px_instances.tif"), expected)
    rows = list(csv.DictReader(open(out / "px_objects.csv")))
    for r in rows:
        assert float(r["volume"]) == pytest.approx(int(r["pixels"]) * 0.75)
