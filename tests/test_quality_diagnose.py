"""benchmarks/quality_diagnose.py: where the false positives lie, the oracle threshold and the
prior correction, on a probability map made by hand."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from quality_diagnose import diagnose, prior_correct  # noqa: E402


def _maps():
    truth = np.ones((64, 64), np.uint8)
    truth[20:40, 20:40] = 2
    band = ndi.binary_dilation(truth == 2, iterations=1) & (truth == 1)   # 1-px rim outside
    p2 = np.where(truth == 2, 0.99, np.where(band, 0.6, 0.01)).astype(np.float32)
    return truth, band, np.stack([1 - p2, p2])


def test_diagnose_finds_a_one_pixel_rim_that_a_threshold_removes():
    truth, band, probs = _maps()
    d = diagnose(probs, truth)
    assert d["fp"] == band.sum() and d["fn"] == 0
    assert d["fp_background_by_distance"] == {"1": int(band.sum()), "2": 0, "3": 0, ">3": 0}
    assert d["iou"] < 0.9
    assert d["best_threshold"]["iou"] == 1.0 and 0.6 <= d["best_threshold"]["threshold"] < 0.99


def test_prior_correction_estimates_a_rare_class():
    truth, band, probs = _maps()
    corrected, pi = prior_correct(probs)
    assert pi[1] < 0.5 < pi[0] and abs(pi.sum() - 1) < 1e-6
    # the rare class loses its uncertain pixels first: the rim goes, the square stays
    lab = corrected.argmax(0) + 1
    assert np.all(lab[truth == 2] == 2) and not np.any(lab[band] == 2)


def test_main_passes_training_options_and_refuses_malformed_ones(capsys):
    import json

    import pytest
    from quality_diagnose import main

    assert main(["synth2d/lines-m4", "--quick", "--steps", "2", "--threads", "1",
                 "--option", "depth=2", "--option", "base_channels=8"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["depth"] == 2 and row["base_channels"] == 8 and row["dims"] == 2 and row["steps"] == 2
    for bad in (["--option", "depth"], ["--option", "2=depth"], ["--dims", "3"]):
        with pytest.raises(SystemExit) as e:
            main(["synth2d/lines-m4", "--quick", "--steps", "2", *bad])
        assert e.value.code == 2
    with pytest.raises(Exception, match="depth"):   # the library names the option it refuses
        main(["synth2d/lines-m4", "--quick", "--steps", "2", "--threads", "1", "--option", "depth=0"])


def test_main_takes_a_tuple_option_such_as_the_voxel_size(capsys):
    import json

    from quality_diagnose import main

    assert main(["synth3d/planes-m4", "--quick", "--steps", "2", "--threads", "1",
                 "--option", "spacing=2,1,1", "--option", "base_channels=4"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["spacing"] == [2, 1, 1] and row["dims"] == 3 and row["steps"] == 2


def test_main_records_the_edge_calibrations_choice(capsys):
    """--flux: the row carries what the end-of-run calibration weighed (one choice for a fresh
    run: the reference 0.5, a score per threshold, the painted object's and background's recall)
    and the threshold it chose, which is the one the model records; the library's function is put
    back afterwards."""
    import json

    from napari_unet.core.train import calibration
    from quality_diagnose import main

    original = calibration.choose_threshold
    assert main(["synth2d/lines-m4", "--quick", "--steps", "3", "--threads", "1", "--flux"]) == 0
    assert calibration.choose_threshold is original
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (choice,) = row["calibration"]
    assert choice["reference"] == 0.5
    assert set(choice["scores"]) == {f"{t:g}" for t in calibration.THRESHOLDS}
    assert set(choice["recall"]) == set(choice["scores"]) == set(choice["bg_recall"])
    assert all(0.0 <= v <= 1.0 for v in choice["bg_recall"].values())
    assert choice["chosen"] == (row["edge_threshold"] or 0.5)
    assert choice["chosen"] in calibration.THRESHOLDS
    # without --flux the row has no such key
    assert main(["synth2d/lines-m4", "--quick", "--steps", "3", "--threads", "1"]) == 0
    assert "calibration" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_main_takes_apart_your_own_image_and_refuses_what_does_not_fit(tmp_path, capsys):
    """--image/--mask: the image is painted as quality.py --image paints it (lines-m4 by default,
    the style asked for otherwise) and the row names it custom/STYLE; a mask of another shape, a
    style for stacks on a 2D image, a case as well, or --style without --image are refused in one
    line (exit 2) before any training."""
    import json

    import pytest
    import tifffile
    from quality_diagnose import main

    from napari_unet.core.synthetic import make_nuclei

    img, _, inst = make_nuclei((96, 96), seed=2)
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "mask.tif", inst.astype("uint16"))
    tifffile.imwrite(tmp_path / "small.tif", inst[:50].astype("uint16"))
    own = ["--image", str(tmp_path / "img.tif"), "--mask", str(tmp_path / "mask.tif")]
    assert main([*own, "--steps", "2", "--threads", "1", "--option", "base_channels=4"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["case"] == "custom/lines-m4" and row["steps"] == 2 and 0.0 <= row["iou"] <= 1.0
    assert main([*own, "--style", "blobs", "--method", "forest", "--threads", "1"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["case"] == "custom/blobs" and row["method"] == "forest" and row["iou"] > 0.3
    for bad, says in ((["--image", str(tmp_path / "img.tif"), "--mask", str(tmp_path / "small.tif")], "shape"),
                      ([*own, "--style", "planes-m4"], "stacks"),
                      ([*own, "--style", "dots"], "lines-mN"),
                      ([*own, "synth2d/lines-m4"], "instead of a case"),
                      (["--image", str(tmp_path / "img.tif")], "go together"),
                      (["synth2d/lines-m4", "--style", "blobs"], "go with --image"),
                      ([*own, "--quick"], "--quick")):
        with pytest.raises(SystemExit) as e:
            main(bad)
        assert e.value.code == 2
        assert says in capsys.readouterr().err, bad


def test_save_writes_its_maps_and_never_replaces_a_file_it_did_not_write(tmp_path, capsys):
    import pytest
    from quality_diagnose import main

    args = ["synth2d/lines-m4", "--quick", "--steps", "2", "--threads", "1"]
    assert main([*args, "--save", str(tmp_path / "run")]) == 0          # numpy's suffix added
    with np.load(tmp_path / "run.npz") as z:
        assert z["probs"].shape[0] == 2 and z["probs"].shape[1:] == z["truth"].shape == z["strokes"].shape
    assert main([*args, "--save", str(tmp_path / "run.npz")]) == 0      # its own file: replaced
    mine = tmp_path / "mine.npz"
    np.savez(mine, probs=np.zeros(3))
    (tmp_path / "notes.npz").write_text("my notes")
    for path, said in ((mine, "was not written by this script"), (tmp_path / "notes.npz", "was not written"),
                       (tmp_path / "no" / "x.npz", "does not exist"), (tmp_path, "is a folder")):
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(SystemExit) as e:     # refused before anything is trained
            main([*args, "--save", str(path)])
        assert e.value.code == 2 and said in capsys.readouterr().err
        assert before is None or path.read_bytes() == before
    assert not list(tmp_path.glob("*.part"))
