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
    with pytest.raises(SystemExit) as exc:  # argparse: usage line, exit 2
        main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--truth-zero", "nope"])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err
