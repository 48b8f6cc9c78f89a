"""benchmarks/quality.py on your own image and mask (``--image --mask``): the same four methods
and bar as the benchmark's cases, a table written where asked (never over docs/quality.md or any
file the script did not write), and a one-line refusal for a mask that does not fit the image."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import quality  # noqa: E402

from napari_unet.core.synthetic import make_nuclei  # noqa: E402


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("custom")
    img, sem, inst = make_nuclei((96, 96), seed=2)
    tifffile.imwrite(d / "img.tif", img)
    tifffile.imwrite(d / "mask.tif", inst.astype("uint16"))
    tifffile.imwrite(d / "small.tif", inst[:50].astype("uint16"))
    return d


def test_your_own_image_is_checked_like_the_benchmark_images(files, tmp_path, capsys):
    before = (ROOT / "docs" / "quality.md").stat().st_mtime
    rc = quality.main(["--image", str(files / "img.tif"), "--mask", str(files / "mask.tif"),
                       "--time-limit", "2", "--threads", "1", "--json", str(tmp_path / "r.json"),
                       "--out", str(tmp_path / "r.md")])
    assert rc == 0
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["case"] == "custom/lines-m4" and 0 < row["painted_pct"] < 20
    for k in ("otsu", "rf", "ours", "ceiling", "bar"):
        assert 0.0 <= row[k] <= 1.0, (k, row)
    assert row["pass"] == (row["ours"] >= row["bar"])
    assert "| custom/lines-m4 |" in capsys.readouterr().out
    assert (ROOT / "docs" / "quality.md").stat().st_mtime == before
    # the report names its writer, so a later run may replace it (and only it)
    assert (tmp_path / "r.md").read_text().startswith(quality.REPORT_MARK + "\n# Quality")
    assert quality._not_a_report(tmp_path / "r.md", "--out") == ""
    assert quality._not_a_report(tmp_path / "r.json", "--json") == ""
    assert not list(tmp_path.glob("*.part"))


def test_a_file_the_script_did_not_write_is_never_replaced(files, tmp_path, capsys):
    mine = tmp_path / "notes.md"
    mine.write_text("# my notes\n")
    data = tmp_path / "data.json"
    data.write_text("[1, 2]")
    curated = ROOT / "docs" / "quality.md"
    before = curated.stat().st_mtime
    for flag, path, said in (("--out", mine, "notes.md exists and was not written by this script"),
                             ("--json", data, "data.json exists and was not written by this script"),
                             ("--out", curated, "docs/quality.md is the curated history"),
                             ("--out", tmp_path, "is not a file")):
        with pytest.raises(SystemExit) as e:   # refused before anything is trained
            quality.main(["--image", str(files / "img.tif"), "--mask", str(files / "mask.tif"),
                          flag, str(path)])
        assert e.value.code == 2
        assert said in capsys.readouterr().err
    assert mine.read_text() == "# my notes\n" and data.read_text() == "[1, 2]"
    assert curated.stat().st_mtime == before


def test_a_mask_that_does_not_fit_the_image_is_refused(files, capsys):
    with pytest.raises(SystemExit) as e:
        quality.main(["--image", str(files / "img.tif"), "--mask", str(files / "small.tif")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "the mask" in err and "(50, 96)" in err and "(96, 96)" in err
    with pytest.raises(SystemExit):
        quality.main(["--image", str(files / "img.tif"), "--style", "planes-m4", "--mask", str(files / "mask.tif")])
    assert "--style planes-m4 is for stacks" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quality.main(["--image", str(files / "img.tif"), "--style", "dots", "--mask", str(files / "mask.tif")])
    assert "--style dots: lines-mN, blobs, planes-mN or planes-mN-everyK" in capsys.readouterr().err


def test_a_stack_of_a_few_planes_can_be_painted_on_more_of_them():
    _, sem, inst = make_nuclei((64, 64), seed=3)
    truth, inst = np.stack([sem] * 5), np.stack([inst] * 5)
    im = type("Im", (), dict(truth=truth, instances=inst, thin=None))()
    painted = lambda st: [z for z in range(5) if (st[z] > 0).any()]  # noqa: E731
    assert quality.custom_style(True, "planes-m4-every2") == "planes-m4-every2"
    assert painted(quality.make_strokes(im, "planes-m4")) == [3]          # every 6th from the 4th
    assert painted(quality.make_strokes(im, "planes-m4-every2")) == [1, 3]
    assert painted(quality.make_strokes(im, "planes-m2-every1")) == [0, 1, 2, 3, 4]
    for bad in ("planes-m4-every0", "planes-m4-every", "planes-every2"):
        with pytest.raises(ValueError, match="planes-mN-everyK"):
            quality.custom_style(True, bad)


def test_your_own_image_gets_the_interactive_simulation_when_asked(files, tmp_path):
    rc = quality.main(["--image", str(files / "img.tif"), "--mask", str(files / "mask.tif"),
                       "--time-limit", "2", "--interactive", "--round-steps", "3", "--rounds", "1",
                       "--threads", "1", "--json", str(tmp_path / "r.json")])
    assert rc == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert [r["case"] for r in res["rows"]] == ["custom/lines-m4"]
    (title, rounds), = res["interactive"].items()
    assert "img.tif" in title and [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["painted"] > rounds[0]["painted"] and rounds[0]["steps"] == 3


def test_the_interactive_simulation_refuses_a_stack(files, tmp_path, capsys):
    stack = np.stack([tifffile.imread(files / "img.tif")] * 4)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    tifffile.imwrite(tmp_path / "m.tif", np.stack([tifffile.imread(files / "mask.tif")] * 4))
    with pytest.raises(SystemExit) as e:
        quality.main(["--image", str(tmp_path / "s.tif"), "--mask", str(tmp_path / "m.tif"), "--interactive"])
    assert e.value.code == 2
    assert "--interactive paints 2D images only" in capsys.readouterr().err


def test_channels_png_and_imagej_axes_are_read_as_the_mask_says(files, tmp_path, capsys):
    """An RGB PNG without --channel-axis gets its channels from the mask's shape (said on
    stderr); a 2-channel stack (ZCYX) too; a single-plane ImageJ axis is dropped; a float mask of
    whole numbers is read as labels."""
    import imageio.v3 as iio
    from quality_methods import custom_image

    img, inst = tifffile.imread(files / "img.tif"), tifffile.imread(files / "mask.tif")
    rgb = np.stack([img, img // 2, 255 - img], -1).astype(np.uint8)
    iio.imwrite(tmp_path / "rgb.png", rgb)
    iio.imwrite(tmp_path / "mask.png", (inst > 0).astype(np.uint8) * 255)
    im = custom_image(tmp_path / "rgb.png", tmp_path / "mask.png")
    assert im.channel_axis == 2 and im.img.shape == (96, 96, 3)
    assert ((im.truth == 2) == (inst > 0)).all()
    assert "axis 2 (length 3) taken as the channels" in capsys.readouterr().err

    tifffile.imwrite(tmp_path / "zcyx.tif", np.stack([np.stack([img, 255 - img])] * 3).astype(np.uint8),
                     imagej=True, metadata={"axes": "ZCYX"})
    tifffile.imwrite(tmp_path / "zyx.tif", np.stack([inst] * 3).astype(np.uint16))
    assert custom_image(tmp_path / "zcyx.tif", tmp_path / "zyx.tif").channel_axis == 1

    tifffile.imwrite(tmp_path / "one.tif", img[None])               # a single time point
    tifffile.imwrite(tmp_path / "float_mask.tif", inst.astype(np.float32))
    im = custom_image(tmp_path / "one.tif", tmp_path / "float_mask.tif")
    assert im.img.shape == (96, 96) and im.channel_axis is None
    assert (im.instances == inst).all()


def test_an_image_with_nan_or_a_fractional_mask_is_refused_before_training(files, tmp_path, capsys):
    img = tifffile.imread(files / "img.tif").astype(np.float32)
    img[5, 5] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", img)
    tifffile.imwrite(tmp_path / "half.tif", tifffile.imread(files / "mask.tif").astype(np.float32) + 0.5)
    for image, mask, said in ((tmp_path / "nan.tif", files / "mask.tif", "contains NaN or infinite values"),
                              (files / "img.tif", tmp_path / "half.tif", "not whole numbers"),
                              (files / "img.tif", tmp_path / "none.tif", "does not exist")):
        with pytest.raises(SystemExit) as e:
            quality.main(["--image", str(image), "--mask", str(mask)])
        assert e.value.code == 2
        assert said in capsys.readouterr().err
