"""Trust (issue 10): never overwrite, lose or misreport what the user made.

Each test tries a bad input the way a user would, through the command (in process with
``cli.main``, or as a subprocess where signals are involved) and/or the Python API.
"""
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet import build_model, evaluate, load_model, save_model, train
from napari_unet.cli import main
from napari_unet.core.errors import UserError

TINY = dict(base_channels=4, depth=2)


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def _fails(capsys, argv, *needles) -> str:
    assert main([str(a) for a in argv]) == 2, argv
    line = _err(capsys)
    assert line.startswith("napari-unet: error:"), line
    for n in needles:
        assert n in line, (n, line)
    return line


@pytest.fixture
def pair(tmp_path):
    """A small image with strokes of two classes, as files."""
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (48, 48)).astype(np.float32)
    lab = np.zeros((48, 48), np.uint8)
    lab[5:15, 5:40] = 1
    lab[30:40, 5:40] = 2
    tifffile.imwrite(tmp_path / "img.tif", img)
    tifffile.imwrite(tmp_path / "lab.tif", lab)
    return tmp_path / "img.tif", tmp_path / "lab.tif"


def _read_only_dir(tmp_path) -> Path:
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        (d / "probe").write_bytes(b"")
    except OSError:
        return d
    (d / "probe").unlink()  # root ignores permissions: use a folder the kernel refuses
    if os.path.isdir("/sys/kernel") and not os.access("/sys/kernel", os.W_OK | os.X_OK) or _refuses("/sys/kernel"):
        return Path("/sys/kernel")
    pytest.skip("no read-only folder available")


def _refuses(folder) -> bool:
    try:
        with open(os.path.join(folder, "napari-unet-probe"), "wb"):
            pass
    except OSError:
        return True
    os.unlink(os.path.join(folder, "napari-unet-probe"))
    return False


# ----------------------------------------------------------------------------- 1. overwrite policy

def test_predict_never_replaces_a_file_it_did_not_write(tmp_path, model_file, capsys):
    img = np.random.default_rng(1).normal(size=(32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "cells.tif", img)
    painted = np.full((32, 32), 2, np.uint8)
    tifffile.imwrite(tmp_path / "cells_labels.tif", painted)  # painted by hand
    line = _fails(capsys, ["predict", "--model", model_file, "--out-dir", tmp_path, tmp_path / "cells.tif"],
                  "cells_labels.tif", "not written by napari-unet", "--overwrite")
    assert "overwrite=" not in line
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "cells_labels.tif"), painted)
    assert not (tmp_path / "cells_probs.tif").exists()  # refused before anything was written
    # an earlier output of ours is replaced on a re-run; --overwrite allows the hand-made one
    assert main(["predict", "--model", str(model_file), "--out-dir", str(tmp_path), "--overwrite",
                 str(tmp_path / "cells.tif")]) == 0
    assert main(["predict", "--model", str(model_file), "--out-dir", str(tmp_path),
                 str(tmp_path / "cells.tif")]) == 0


def test_predict_skips_its_own_outputs_given_as_inputs(tmp_path, model_file, capsys):
    img = np.random.default_rng(2).normal(size=(32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tif", img)
    assert main(["predict", "--model", str(model_file), "--out-dir", str(tmp_path), str(tmp_path / "a.tif")]) == 0
    capsys.readouterr()
    # "a.tif a_probs.tif" (e.g. from a glob) and a folder: a_probs/a_labels are skipped, not read as images
    for argv in ([str(tmp_path / "a.tif"), str(tmp_path / "a_probs.tif")], [str(tmp_path)]):
        assert main(["predict", "--model", str(model_file), "--out-dir", str(tmp_path), *argv]) == 0
        cap = capsys.readouterr()
        assert "skipping" in cap.err and "a_probs.tif" in cap.err
        assert tifffile.imread(tmp_path / "a_probs.tif").shape == (2, 32, 32)
        assert "a_probs_probs" not in " ".join(os.listdir(tmp_path))


def test_an_output_that_is_an_input_is_refused_even_with_overwrite(tmp_path, model_file, capsys):
    img = np.random.default_rng(3).normal(size=(32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "b.tif", img)
    tifffile.imwrite(tmp_path / "b_probs.tif", img)  # a user's image that happens to be called so
    _fails(capsys, ["predict", "--model", model_file, "--out-dir", tmp_path, "--overwrite",
                    tmp_path / "b.tif", tmp_path / "b_probs.tif"], "b_probs.tif", "one of the inputs")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "b_probs.tif"), img)


def test_train_out_refuses_the_input_files(pair, capsys):
    img, lab = pair
    before = img.read_bytes(), lab.read_bytes()
    for out in (img, lab, img.parent / "." / img.name):
        _fails(capsys, ["train", "--image", img, "--labels", lab, "--out", out, "--steps", "1", "--overwrite"],
               "one of the inputs")
    assert (img.read_bytes(), lab.read_bytes()) == before


# ----------------------------------------------------------------------------- 3. truncated TIFF

def test_a_truncated_multipage_tiff_is_refused(tmp_path, model_file, capfd):
    stack = np.random.default_rng(4).normal(size=(6, 32, 32)).astype(np.float32)
    for kw in ({}, {"imagej": True}):
        f = tmp_path / "stack.tif"
        tifffile.imwrite(f, stack.astype(np.float32), **kw)
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
        assert main(["predict", "--model", str(model_file), "--out-dir", str(tmp_path / "o"), str(f)]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "truncated" in err[0], err  # and no tifffile warning on the terminal
    with pytest.raises(ValueError, match="truncated"):
        from napari_unet.core.io import read_image

        read_image(f)


# ----------------------------------------------------------------------------- 4, 10. model files

def test_a_model_with_corrupted_weights_is_refused(tmp_path, model_file, capsys):
    m = load_model(model_file)
    data = bytearray(model_file.read_bytes())
    w = m.state_dict()["head.weight"].numpy().tobytes()
    at = bytes(data).find(w)
    assert at > 0
    data[at + 2] ^= 0x55  # one flipped byte in the stored weights
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="damaged"):
        load_model(bad)
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((16, 16), np.float32))
    _fails(capsys, ["predict", "--model", bad, "--out-dir", tmp_path / "o", tmp_path / "x.tif"], "damaged", "checksum")


def test_empty_and_text_model_files(tmp_path, capsys):
    empty, text = tmp_path / "empty.pt", tmp_path / "notes.pt"
    empty.write_bytes(b"")
    text.write_text("hello\n")
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((16, 16), np.float32))
    with pytest.raises(ValueError, match="empty"):
        load_model(empty)
    with pytest.raises(ValueError, match="not a napari-unet model file"):
        load_model(text)
    _fails(capsys, ["predict", "--model", empty, "--out-dir", tmp_path / "o", tmp_path / "x.tif"], "empty (0 bytes)")
    _fails(capsys, ["predict", "--model", text, "--out-dir", tmp_path / "o", tmp_path / "x.tif"],
           "not a napari-unet model file")


# ----------------------------------------------------------------------------- 5, 9. sizes

@pytest.mark.parametrize("top", [300, 60000])
def test_instance_ids_are_not_taken_for_classes(tmp_path, pair, capsys, top):
    img, _ = pair
    inst = np.zeros((48, 48), np.uint16)
    inst[5:15, 5:15], inst[30:40, 30:40] = 1, top
    tifffile.imwrite(tmp_path / "inst.tif", inst)
    line = _fails(capsys, ["train", "--image", img, "--labels", tmp_path / "inst.tif", "--out", tmp_path / "m.pt",
                           "--steps", "1"], "instance mask", "--unpainted-is-background", f"--classes {top}")
    assert "unpainted_is_background" not in line
    with pytest.raises(ValueError, match=r"instance mask.*unpainted_is_background=True"):
        train(tifffile.imread(img), inst, steps=1, **TINY)


def test_absurd_sizes_are_refused_up_front(tmp_path, pair, capsys):
    img, lab = pair
    _fails(capsys, ["train", "--image", img, "--labels", lab, "--out", tmp_path / "m.pt", "--steps", "1",
                    "--batch-size", "100000", "--patch", "256"], "needs at least", "--batch-size")
    _fails(capsys, ["train", "--image", img, "--labels", lab, "--out", tmp_path / "m.pt", "--steps", "1",
                    "--classes", "1000000"], "--classes 1000000")
    with pytest.raises(ValueError, match="batch_size="):
        train(tifffile.imread(img), tifffile.imread(lab), steps=1, batch_size=100000, patch=256, **TINY)
    assert not (tmp_path / "m.pt").exists()
    huge = np.zeros((48, 48), np.uint32)
    huge[:5], huge[-5:] = 1, 4_000_000_000  # refused before counting pixels per value
    with pytest.raises(ValueError, match="instance mask"):
        train(tifffile.imread(img), huge, steps=1, **TINY)


# ----------------------------------------------------------------------------- 6, 7. disks

def test_read_only_or_full_output_folders_fail_before_any_work(tmp_path, pair, model_file, capsys, monkeypatch):
    img, lab = pair
    ro = _read_only_dir(tmp_path)
    _fails(capsys, ["train", "--image", img, "--labels", lab, "--out", ro / "m.pt", "--time-limit", "600"],
           "cannot write to the folder of --out")
    _fails(capsys, ["predict", "--model", model_file, "--out-dir", ro, img], "cannot write to the --out-dir")
    _fails(capsys, ["demo", "--out-dir", ro], "cannot write to the --out-dir")
    _fails(capsys, ["demo", "--out-dir", img], "is a file, not a folder")
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    _fails(capsys, ["predict", "--model", model_file, "--out-dir", tmp_path / "full", img], "not enough disk space")
    assert not list((tmp_path / "full").iterdir())


def test_memmapped_predict_reserves_space_and_leaves_no_temp_files(tmp_path, model_file, capsys, monkeypatch):
    import napari_unet.core.predict as P

    img = np.random.default_rng(5).normal(size=(3, 40, 40)).astype(np.float32)
    tifffile.imwrite(tmp_path / "s.tif", img)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / ".s_probs.tif.nu999999999-abc123.part"  # left by a killed run (no such process)
    stale.write_bytes(b"x" * 100)
    monkeypatch.setattr(P, "fits_in_ram", lambda nbytes, *a, **k: False)  # the memory-mapped path
    real = os.posix_fallocate

    def full(fd, off, n):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    _fails(capsys, ["predict", "--model", model_file, "--out-dir", out, tmp_path / "s.tif"],
           "cannot reserve", "No space left on device")
    assert os.listdir(out) == []  # the stale file cleaned, the new temp file removed
    monkeypatch.setattr(os, "posix_fallocate", real)
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), str(tmp_path / "s.tif")]) == 0
    assert sorted(os.listdir(out)) == ["s_labels.tif", "s_probs.tif"]
    assert tifffile.imread(out / "s_probs.tif").shape == (2, 3, 40, 40)


# ----------------------------------------------------------------------------- 8. interrupted training

def _train_until_stepping(argv, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "napari_unet.cli", *map(str, argv)], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    seen = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "step " in line:  # the first progress line comes with the first step
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, "".join(seen) + err


@pytest.mark.slow
def test_sigterm_saves_the_model_and_keeps_a_further_trained_one(pair, tmp_path):
    img, lab = pair
    out = tmp_path / "m.pt"
    base = ["train", "--image", img, "--labels", lab, "--out", out, "--time-limit", "600",
            "--base-channels", "4", "--depth", "2", "--patch", "32", "--device", "cpu"]
    rc, err = _train_until_stepping(base)
    assert rc == 143, err
    assert "terminated: saved the interrupted model" in err and str(out) in err, err
    steps = load_model(out).meta["training"]["total_steps"]
    assert steps >= 1
    # an earlier model that trained for longer is kept; this run's weights go beside it
    m = load_model(out)
    m.meta["training"]["total_steps"] = 10 ** 9
    save_model(m, out)
    before = out.read_bytes()
    rc, err = _train_until_stepping(base)
    assert rc == 143, err
    ckpt = tmp_path / "m.checkpoint.pt"
    assert f"kept the earlier model at {out}" in err and str(ckpt) in err, err
    assert out.read_bytes() == before and load_model(ckpt).meta["training"]["steps"] >= 1


# ----------------------------------------------------------------------------- 10. evaluate, demo

def test_uint64_labels_evaluate(tmp_path, capsys):
    t = np.zeros((10, 10), np.uint64)
    t[:5], t[5:] = 1, 2
    assert evaluate(t, t)["mean_iou"] == 1.0
    tifffile.imwrite(tmp_path / "t.tif", t)
    assert main(["evaluate", "--pred", str(tmp_path / "t.tif"), "--truth", str(tmp_path / "t.tif")]) == 0
    t[0, 0] = 2 ** 64 - 1
    tifffile.imwrite(tmp_path / "h.tif", t)
    _fails(capsys, ["evaluate", "--pred", tmp_path / "h.tif", "--truth", tmp_path / "t.tif"], "too large")


# ----------------------------------------------------------------------------- messages

def test_messages_speak_the_callers_language(tmp_path, pair, capsys):
    img, lab = pair
    empty = tmp_path / "empty_lab.tif"
    tifffile.imwrite(empty, np.zeros((48, 48), np.uint8))
    line = _fails(capsys, ["train", "--image", img, "--labels", empty, "--out", tmp_path / "m.pt", "--steps", "1"],
                  "--unpainted-is-background")
    assert "unpainted_is_background" not in line
    flt = tmp_path / "float_lab.tif"
    tifffile.imwrite(flt, tifffile.imread(lab).astype(np.float32))
    line = _fails(capsys, ["train", "--image", img, "--labels", flt, "--out", tmp_path / "m.pt", "--steps", "1"],
                  "integer")
    assert ".astype" not in line
    with pytest.raises(ValueError, match="unpainted_is_background=True"):
        train(tifffile.imread(img), np.zeros((48, 48), np.uint8), steps=1, **TINY)
    # a 2D image for a 3D model: no "dims=2" for a command-line user
    m3 = tmp_path / "m3.pt"
    save_model(build_model(dims=3, classes=2, **TINY), m3)
    line = _fails(capsys, ["predict", "--model", m3, "--out-dir", tmp_path / "o", img], "--dims 2")
    assert "dims=" not in line
    # a finite 1e300 is not "NaN or infinite"
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.full((32, 32), 1e300))
    model2 = tmp_path / "m2.pt"
    save_model(build_model(dims=2, classes=3, **TINY), model2)
    line = _fails(capsys, ["predict", "--model", model2, "--out-dir", tmp_path / "o", big], "float32 range")
    assert "NaN" not in line


def test_threshold_is_checked_before_any_work(tmp_path, pair, capsys):
    img, _ = pair
    m3 = tmp_path / "m3.pt"
    save_model(build_model(dims=2, classes=3, **TINY), m3)
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(SystemExit) as e:
            main(["predict", "--model", str(m3), "--out-dir", str(tmp_path / "o"), "--threshold", bad, str(img)])
        assert e.value.code == 2
        assert "between 0 and 1" in capsys.readouterr().err
    _fails(capsys, ["predict", "--model", m3, "--out-dir", tmp_path / "o", "--threshold", "0.5", img],
           "two-class model", "3 classes")
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_help_describes_every_option(capsys):
    import argparse

    from napari_unet.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("train", "predict", "evaluate", "demo", "gui"):
        for action in subs.choices[name]._actions:
            assert action.help, (name, action.option_strings or action.dest)
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "none or 0" in text and "IMAGE" in text and "folders" in text


def test_our_bugs_are_not_reported_as_user_mistakes(tmp_path, monkeypatch):
    import napari_unet.core.metrics as M

    t = tmp_path / "t.tif"
    tifffile.imwrite(t, np.ones((4, 4), np.uint8))

    def bug(*a, **k):
        raise ValueError("an internal bug")

    monkeypatch.setattr(M, "evaluate", bug)
    with pytest.raises(ValueError, match="internal bug"):
        main(["evaluate", "--pred", str(t), "--truth", str(t)])
    assert issubclass(UserError, ValueError)


def test_a_disk_that_fills_up_during_training_is_one_line_that_says_where_the_model_is(pair, tmp_path, capsys,
                                                                                       monkeypatch):
    import napari_unet.core.io as io

    img, lab = pair
    real, calls = io.save_model, []

    def filling(model, path):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(model, path)

    monkeypatch.setattr(io, "save_model", filling)
    out = tmp_path / "m.pt"
    line = _fails(capsys, ["train", "--image", img, "--labels", lab, "--out", out, "--steps", "40",
                           "--checkpoint-every", "0.001", "--base-channels", "4", "--depth", "2", "--patch", "32"],
                  "No space left on device", "the disk is full", f"to {out}")
    assert load_model(out).meta["training"]["steps"] >= 1  # the checkpoint written before the disk filled


def test_an_interrupted_prediction_leaves_no_temporary_files(tmp_path, model_file, capsys, monkeypatch):
    import napari_unet.core.predict as P
    from napari_unet._cli_run import Terminated

    img = np.random.default_rng(6).normal(size=(2, 32, 32)).astype(np.float32)
    tifffile.imwrite(tmp_path / "s.tif", img)
    out = tmp_path / "out"
    real = P.iter_predict

    def killed(*a, **k):  # SIGTERM arrives while the memory-mapped output is being filled
        yield from real(*a, **k)
        raise Terminated()

    monkeypatch.setattr(P, "fits_in_ram", lambda nbytes, *a, **k: False)
    monkeypatch.setattr(P, "iter_predict", killed)  # (the engine under the prediction job)
    assert main(["predict", "--model", str(model_file), "--out-dir", str(out), str(tmp_path / "s.tif")]) == 143
    assert "terminated" in _err(capsys)
    assert os.listdir(out) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 1 MB file system (tmpfs), where the machine lets us mount one (root); else skipped."""
    d = tmp_path / "tiny"
    d.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(d)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small file system here")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_a_really_full_disk(tiny_disk, pair, model_file, capsys):
    img, lab = pair
    big = tiny_disk.parent / "big.tif"
    tifffile.imwrite(big, np.random.default_rng(7).normal(size=(512, 512)).astype(np.float32))
    _fails(capsys, ["predict", "--model", model_file, "--out-dir", tiny_disk, big], "not enough disk space")
    (tiny_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 16 * 1024))  # leave ~16 KB
    out = tiny_disk / "m.pt"
    _fails(capsys, ["train", "--image", img, "--labels", lab, "--out", out, "--steps", "3",
                    "--base-channels", "8", "--depth", "2", "--patch", "32"],
           "not enough disk space in the folder of --out")
    assert sorted(os.listdir(tiny_disk)) == ["filler"]  # no temporary files left behind
