"""bioimage.io packages (issue 13): export -> bioimageio.core's test_model, offline -> import with
identical predictions; a foreign package gets a clear message; the export command's mistakes."""
from __future__ import annotations

import socket
import zipfile

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main


def _rdf_zip(path, rdf: str, files=()):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("rdf.yaml", rdf)
        for name in files:
            zf.writestr(name, b"\0" * 16)
    return path


FOREIGN = """type: model
format_version: 0.5.4
name: Some lab's nucleus model
weights:
  onnx: {source: model.onnx, opset_version: 15}
  pytorch_state_dict: {source: weights.pt, architecture: {callable: Net, source: net.py}}
"""


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """Every connection attempt fails (and is recorded): test_model must not need the network."""
    attempts: list = []

    def refuse(self, address, *a):
        attempts.append(address)
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("BIOIMAGEIO_CACHE_PATH", str(tmp_path / "bioimageio-cache"))
    return attempts


@pytest.mark.slow
def test_export_passes_test_model_offline_and_imports_back_identically(tmp_path, capsys, no_network):
    pytest.importorskip("bioimageio.core")
    from napari_unet import load_model, predict, save_model, train
    from napari_unet.core.synthetic import sample_2d

    img, _truth, strokes = sample_2d()
    img, strokes = img[:160, :160], strokes[:160, :160]
    model = train(img, strokes, dims=2, steps=4, base_channels=8, depth=2, device="cpu", seed=0)
    pt, pkg = tmp_path / "m.pt", tmp_path / "nuclei.zip"
    save_model(model, pt)
    tifffile.imwrite(tmp_path / "img.tif", img)

    rc = main(["export", "--model", str(pt), "--out", str(pkg), "--test-image", str(tmp_path / "img.tif"),
               "--author", "Test Person", "--name", "Nuclei from strokes"])
    out = capsys.readouterr().out
    print(out)  # test_model's summary, for the record
    assert rc == 0, out
    assert "| status          | passed" in out
    assert "Reproduce test outputs from test inputs (pytorch_state_dict)" in out
    assert "Reproduce test outputs from test inputs (torchscript)" in out
    assert not no_network, f"the export tried the network: {no_network}"

    with zipfile.ZipFile(pkg) as zf:
        names = set(zf.namelist())
    assert {"rdf.yaml", "weights.pt", "weights_torchscript.pt", "napari_unet_unet.py", "test_input.npy",
            "test_output.npy", "cover.png", "README.md"} <= names

    # import: the exact model (metadata and weights), so identical predictions
    back = load_model(pkg)
    assert back.meta == load_model(pt).meta
    for k, v in model.state_dict().items():
        assert np.array_equal(back.state_dict()[k].numpy(), v.numpy()), k
    full = sample_2d()[0][:200, :150]
    assert np.array_equal(predict(back, full, tile=None, device="cpu"),
                          predict(load_model(pt), full, tile=None, device="cpu"))

    # the command line takes the package back: predict --model, train --init
    assert main(["predict", "--model", str(pkg), "--out-dir", str(tmp_path / "out"), "--quiet",
                 "--tile", "none", str(tmp_path / "img.tif")]) == 0
    tifffile.imwrite(tmp_path / "lab.tif", strokes)
    assert main(["train", "--image", str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"),
                 "--init", str(pkg), "--steps", "2", "--out", str(tmp_path / "tuned.pt"), "--quiet",
                 "--device", "cpu"]) == 0
    assert load_model(tmp_path / "tuned.pt").meta["training"]["init"].endswith("nuclei.zip")

    # a second export refuses to replace the package without --overwrite
    assert main(["export", "--model", str(pt), "--out", str(pkg), "--no-test"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_foreign_package_is_refused_with_what_is_supported(tmp_path, capsys):
    from napari_unet import load_model

    pkg = _rdf_zip(tmp_path / "theirs.zip", FOREIGN, ["model.onnx", "weights.pt", "net.py"])
    with pytest.raises(ValueError) as e:
        load_model(pkg)
    msg = str(e.value)
    assert "Some lab's nucleus model" in msg and "did not export" in msg
    assert "onnx, pytorch_state_dict" in msg
    assert "napari-unet export" in msg and "not supported" in msg

    tifffile.imwrite(tmp_path / "img.tif", np.zeros((32, 32), np.uint8))
    rc = main(["predict", "--model", str(pkg), "--out-dir", str(tmp_path / "o"), str(tmp_path / "img.tif")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("napari-unet: error:") and "did not export" in err
    assert "Traceback" not in err and not list(tmp_path.glob("o/*"))

    dataset = _rdf_zip(tmp_path / "data.zip", "type: dataset\nformat_version: 0.3.0\nname: Cells\n")
    with pytest.raises(ValueError, match="bioimage.io dataset .*not a model"):
        load_model(dataset)


def test_a_damaged_package_of_ours_is_refused(tmp_path, tiny2d):
    import io

    import torch
    import yaml

    from napari_unet import load_model

    state = {k: v.detach() for k, v in tiny2d.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    rdf = {"type": "model", "name": "ours", "format_version": "0.5.12",
           "weights": {"pytorch_state_dict": {"source": "weights.pt", "sha256": "0" * 64}},
           "config": {"napari_unet": {"meta": dict(tiny2d.meta)}}}
    pkg = tmp_path / "ours.zip"
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump(rdf))
        zf.writestr("weights.pt", buf.getvalue())
    with pytest.raises(ValueError, match="sha256"):
        load_model(pkg)
    rdf["weights"]["pytorch_state_dict"].pop("sha256")  # without a checksum: loads, exactly
    with zipfile.ZipFile(pkg, "w") as zf:
        zf.writestr("rdf.yaml", yaml.safe_dump(rdf))
        zf.writestr("weights.pt", buf.getvalue())
    back = load_model(pkg)
    assert back.meta["class_names"] == tiny2d.meta["class_names"]
    assert all(torch.equal(back.state_dict()[k], v) for k, v in state.items())


@pytest.fixture
def model_file(tmp_path, tiny2d):
    from napari_unet import save_model

    return save_model(tiny2d, tmp_path / "m.pt")


@pytest.mark.parametrize("case", ["missing model", "missing folder", "out is a folder", "not a zip",
                                  "parent is a file", "out is not ours", "out is the model"])
def test_export_mistakes_are_one_line_and_write_nothing(tmp_path, capsys, model_file, case):
    (tmp_path / "afile.txt").write_text("x")
    (tmp_path / "other.zip").write_bytes(b"not ours")
    model, out, expect = str(model_file), str(tmp_path / "m.zip"), ""
    if case == "missing model":
        model, expect = str(tmp_path / "nope.pt"), "does not exist"
    elif case == "missing folder":
        out, expect = str(tmp_path / "no" / "m.zip"), "does not exist"
    elif case == "out is a folder":
        (tmp_path / "dir.zip").mkdir()
        out, expect = str(tmp_path / "dir.zip"), "is a folder"
    elif case == "not a zip":
        out, expect = str(tmp_path / "m.pt2"), ".zip"
    elif case == "parent is a file":
        out, expect = str(tmp_path / "afile.txt" / "m.zip"), "does not exist"
    elif case == "out is not ours":
        out, expect = str(tmp_path / "other.zip"), "not a package exported by napari-unet"
    elif case == "out is the model":
        import shutil

        shutil.copy(model_file, tmp_path / "same.zip")
        model = out = str(tmp_path / "same.zip")
        expect = "not a package exported by napari-unet"  # an existing file we did not export
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc = main(["export", "--model", model, "--out", out, "--no-test"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert lines[-1].startswith("napari-unet: error:") and expect in lines[-1], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_export_into_a_read_only_folder_is_refused(tmp_path, capsys, model_file):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        rc = main(["export", "--model", str(model_file), "--out", str(ro / "m.zip"), "--no-test"])
        err = capsys.readouterr().err
        assert rc == 2 and "permission denied" in err.lower() and not list(ro.iterdir())
    finally:
        ro.chmod(0o755)


def test_export_into_a_full_folder_is_refused_before_any_work(tmp_path, capsys, model_file, monkeypatch):
    """The package needs room for two copies of the weights: a folder without it is refused
    before the package is built, naming --out's folder (not a temporary file of ours)."""
    import shutil
    from collections import namedtuple

    from napari_unet.core import bioimageio_export, outputs

    built = []
    monkeypatch.setattr(bioimageio_export, "build_description", lambda *a, **k: built.append(1))
    usage = namedtuple("usage", "total used free")
    real = shutil.disk_usage
    monkeypatch.setattr(outputs.shutil, "disk_usage",
                        lambda p: usage(1 << 30, (1 << 30) - (64 << 10), 64 << 10) if str(p) == str(tmp_path)
                        else real(p))
    rc = main(["export", "--model", str(model_file), "--out", str(tmp_path / "m.zip"), "--no-test"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("napari-unet: error: not enough disk space in the folder of --out")
    assert str(tmp_path / "m.zip") in err[-1] and "napari-unet-export" not in err[-1]
    assert built == [] and not (tmp_path / "m.zip").exists()


def test_export_without_the_extra_says_how_to_install_it(tmp_path, capsys, model_file, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bioimageio.core", None)  # as if not installed
    rc = main(["export", "--model", str(model_file), "--out", str(tmp_path / "m.zip")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'napari-unet[bioimageio]'" in err
    assert not (tmp_path / "m.zip").exists()
