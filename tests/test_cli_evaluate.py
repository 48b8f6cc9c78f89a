"""napari-unet evaluate on a complete (binary) truth: 0 is background, and the output says so."""
import json
import subprocess
import sys

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main


@pytest.fixture
def binary_case(tmp_path):
    truth = np.zeros((40, 40), np.uint8)
    truth[10:20, 10:20] = 255  # a 0/255 mask: 100 foreground px of 1600
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    tifffile.imwrite(tmp_path / "pred.tif", np.full((40, 40), 2, np.uint8))  # all foreground
    return tmp_path / "pred.tif", tmp_path / "truth.tif"


def test_all_foreground_against_0_255_truth_scores_low_and_says_why(binary_case):
    pred, truth = binary_case
    r = subprocess.run([sys.executable, "-m", "napari_unet.cli", "evaluate", "--pred", str(pred),
                        "--truth", str(truth)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "truth 0 read as background" in r.stdout and "--truth-zero unlabeled" in r.stdout
    fg = [line for line in r.stdout.splitlines() if line.split()[:1] == ["fg"]][0]
    assert float(fg.split()[-2]) == pytest.approx(100 / 1600, abs=1e-4)


def test_json_and_explicit_truth_zero(binary_case, capsys):
    pred, truth = binary_case
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["truth_zero"] == "background" and s["foreground_iou"] < 0.1 and s["classes"]["2"]["fp"] == 1500
    # explicitly unlabeled: the old reading, chosen by the user and named in the output
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--json",
                 "--truth-zero", "unlabeled"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["truth_zero"] == "unlabeled" and s["ignored"] == 1500
    with pytest.raises(SystemExit) as exc:  # argparse: one error line, exit 2
        main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--truth-zero", "nope"])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture
def blank_case(tmp_path):
    tifffile.imwrite(tmp_path / "p.tif", np.ones((32, 32), np.uint8))   # all background
    tifffile.imwrite(tmp_path / "t0.tif", np.zeros((32, 32), np.uint8))  # all 0
    tifffile.imwrite(tmp_path / "t1.tif", np.ones((32, 32), np.uint8))   # all background
    return tmp_path


def test_no_object_anywhere_reads_n_a_not_a_perfect_score(blank_case, capsys):
    p, t1 = str(blank_case / "p.tif"), str(blank_case / "t1.tif")
    assert main(["evaluate", "--pred", p, "--truth", t1, "--objects"]) == 0
    out = capsys.readouterr().out
    assert "1.000" not in out and "mean AP over IoU 0.50..0.95: n/a" in out
    assert "neither the truth nor the prediction holds an object" in out
    assert main(["evaluate", "--pred", p, "--truth", t1, "--objects", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)  # strict JSON: an undefined score is null
    assert res["mean_ap"] is None and res["thresholds"][0]["ap"] is None and res["f1_50"] is None
    # pixel scores: the background alone does not make a perfect mean
    assert main(["evaluate", "--pred", p, "--truth", t1]) == 0
    out = capsys.readouterr().out
    mean = [line for line in out.splitlines() if line.split()[:1] == ["mean"]][0]
    assert mean.split()[1:] == ["n/a", "n/a"] and "holds a class above 1" in out
    assert main(["evaluate", "--pred", p, "--truth", t1, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["mean_iou"] is None and s["foreground_iou"] is None and s["classes"]["1"]["iou"] == 1.0


def test_an_all_0_truth_is_refused_alike_by_both_modes_and_the_fix_is_named(blank_case, capsys):
    p, t0 = str(blank_case / "p.tif"), str(blank_case / "t0.tif")
    for extra in ([], ["--objects"]):
        assert main(["evaluate", "--pred", p, "--truth", t0] + extra) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "--truth-zero background" in err
        # read as background: scored, and undefined where nothing but background exists
        assert main(["evaluate", "--pred", p, "--truth", t0, "--truth-zero", "background", "--json"] + extra) == 0
        res = json.loads(capsys.readouterr().out)
        assert res.get("mean_ap", res.get("mean_iou", 0)) is None
    assert main(["evaluate", "--pred", p, "--truth", t0, "--objects", "--truth-zero", "unlabeled"]) == 2
    assert "--truth-zero unlabeled does not apply to --objects" in capsys.readouterr().err
