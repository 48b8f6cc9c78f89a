"""A user's mistake on the command line is one line on stderr and exit code 2, no usage block,
no traceback, and nothing printed before it that the check could have preceded."""
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main


@pytest.fixture
def files(tmp_path):
    tifffile.imwrite(tmp_path / "img.tif", np.zeros((32, 32), np.float32))
    tifffile.imwrite(tmp_path / "lab.tif", np.ones((32, 32), np.uint8))
    return tmp_path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "usage:" not in err and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("argv,needle", [
    (["train", "--patch", "0", "--image", "img.tif", "--labels", "lab.tif", "--out", "m.pt"], "--patch"),
    (["train", "--batch-size", "0", "--image", "img.tif", "--labels", "lab.tif", "--out", "m.pt"], "--batch-size"),
    (["train", "--image", "img.tif", "--out", "m.pt"], "--labels"),
    (["train", "--steps", "3", "--time-limit", "4", "--image", "i", "--labels", "l", "--out", "m.pt"], "--steps"),
    (["predict", "--model", "m.pt", "--out-dir", "o", "--tile", "-1", "img.tif"], "--tile"),
    (["predict", "--model", "m.pt", "--out-dir", "o", "--threshold", "2", "img.tif"], "--threshold"),
    (["predict", "--model", "m.pt", "--out-dir", "o", "--chunk", "0", "img.tif"], "--chunk"),
    (["predict", "--model", "m.pt", "--out-dir", "o", "--spacing", "0,1", "img.tif"], "--spacing"),
    (["predict", "--model", "m.pt", "--out-dir", "o", "--format", "png", "img.tif"], "--format"),
    (["evaluate", "--pred", "p.tif"], "--truth"),
    (["evaluate", "--pred", "p.tif", "--truth", "t.tif", "--truth-zero", "nope"], "--truth-zero"),
    (["export", "--model", "m.pt"], "--out"),
    (["demo", "--time-limit", "0"], "--time-limit"),
    ([], "COMMAND"),
    (["bogus"], "bogus"),
])
def test_argument_errors_are_one_line_exit_2(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    line = _one_error_line(capsys)
    assert line.startswith("napari-unet") and ": error: " in line and needle in line, line
    assert "--help" in line  # where to read more, on the same line


def test_argument_error_of_the_console_script_is_one_line():
    r = subprocess.run([sys.executable, "-m", "napari_unet.cli", "predict", "--model", "m.pt",
                        "--out-dir", "o", "--tile", "-1", "img.tif"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "napari-unet predict: error: argument --tile: --tile sizes must be positive, got '-1' "
        "(see napari-unet predict --help)"]


def test_no_progress_line_before_an_error_found_first(files, model_file, capsys):
    """predict says 'model ...: 2D, ...; device ...' only once the first image passed its checks."""
    tifffile.imwrite(files / "nan.tif", np.full((32, 32), np.nan, np.float32))
    base = ["predict", "--model", str(model_file), "--out-dir", str(files / "o")]
    for extra, needle in ((["--channel-axis", "3", str(files / "img.tif")], "--channel-axis 3"),
                          ([str(files / "nan.tif")], "NaN")):
        assert main(base + extra) == 2
        line = _one_error_line(capsys)
        assert line.startswith("napari-unet: error:") and needle in line, line
    assert main(base + [str(files / "img.tif")]) == 0
    assert "model model.pt: 2D, 2 classes" in capsys.readouterr().err


def test_export_checks_out_before_saying_it_exports(files, model_file, capsys):
    pytest.importorskip("bioimageio.spec")
    pytest.importorskip("bioimageio.core")
    assert main(["export", "--model", str(model_file), "--out", str(files / "x.tar"), "--no-test"]) == 2
    assert "must name a .zip file" in _one_error_line(capsys)
    assert main(["export", "--model", str(model_file), "--out", str(files / "x.zip"), "--name", "ab",
                 "--no-test"]) == 2
    assert "too short" in _one_error_line(capsys)


def test_a_truncated_model_is_one_complete_sentence_naming_the_file(files, model_file, capsys):
    data = model_file.read_bytes()
    for n in (100, 1000, len(data) // 2):
        bad = files / f"cut{n}.pt"
        bad.write_bytes(data[:n])
        assert main(["predict", "--model", str(bad), "--out-dir", str(files / "o"), str(files / "img.tif")]) == 2
        line = _one_error_line(capsys)
        assert f"cut{n}.pt" in line and "damaged or truncated" in line, line
        assert line.endswith("use another copy or train again"), line  # not cut mid-sentence


def test_an_unsupported_image_format_names_the_formats_read(files, model_file, capsys):
    np.save(files / "img.npy", np.zeros((32, 32), np.float32))
    assert main(["predict", "--model", str(model_file), "--out-dir", str(files / "o"), str(files / "img.npy")]) == 2
    line = _one_error_line(capsys)
    assert ".npy files are not read" in line and "TIFF" in line and "``" not in line, line


def test_reason_never_cuts_a_sentence():
    from napari_unet.core.errors import reason

    long = "first part failed. " + "x" * 300 + " more. and so on"
    assert reason(RuntimeError(long)) == "first part failed."
    assert reason(RuntimeError("short\nsecond line")) == "short"
    assert reason(KeyError()) == "KeyError"
    words = reason(RuntimeError("word " * 100), limit=50)
    assert words.endswith(" …") and len(words) <= 52 and "wor …" not in words


@pytest.mark.parametrize("extra,flag,needs", [
    (["--ngff-version", "0.4"], "--ngff-version", "--format ome-zarr"),
    (["--jobs", "3"], "--jobs", "--cluster"),
    (["--cluster-option", "cores=2"], "--cluster-option", "--cluster"),
    (["--spacing", "1,1,1,1"], "--spacing", "--instances"),
    (["--min-size", "3"], "--min-size", "--instances"),
    (["--seed-distance", "2"], "--seed-distance", "--instances"),
    (["--instance-class", "2"], "--instance-class", "--instances"),
    (["--chunk", "32"], "--chunk", "--format ome-zarr"),   # (the block engine's; a TIFF in memory has none)
])
def test_an_option_without_the_one_it_belongs_to_is_refused_before_any_work(files, model_file, capsys,
                                                                            extra, flag, needs):
    out = files / "o"
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), *extra, str(files / "img.tif")]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("napari-unet: error:") and flag in line and needs in line, line
    assert not out.exists()


def test_instances_spacing_of_the_wrong_length_is_refused_before_predicting(files, model_file, capsys):
    out = files / "o"
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), "--instances",
                 "--spacing", "1,1,1,1", str(files / "img.tif")]) == 2
    line = _one_error_line(capsys)
    assert "--spacing has 4 values" in line and "2 spatial axes" in line, line
    assert not out.exists() or not list(out.iterdir())
