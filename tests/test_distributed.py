"""Block-wise prediction (core.distributed): equal to in-memory predict, resumable, OME-Zarr
output that ome-zarr's reader opens with the right scale; and on a 2-worker dask LocalCluster."""
import numpy as np
import pytest
import tifffile
import torch

zarr = pytest.importorskip("zarr")
pytest.importorskip("ome_zarr")
pytest.importorskip("distributed")

from napari_unet import build_model, predict, save_model  # noqa: E402
from napari_unet.cli import main  # noqa: E402
from napari_unet.core import distributed as dist  # noqa: E402
from napari_unet.core.io import read_model_meta  # noqa: E402
from napari_unet.core.predict import probabilities_to_labels  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    torch.manual_seed(3)
    m3 = build_model(dims=3, classes=3, base_channels=8, depth=2)
    torch.manual_seed(4)
    m2 = build_model(dims=2, classes=2, base_channels=8, depth=2)
    save_model(m3, d / "m3.pt")
    save_model(m2, d / "m2.pt")
    return {"3d": (d / "m3.pt", m3), "2d": (d / "m2.pt", m2)}


def _volume(path, shape=(12, 40, 36), chunks=(4, 16, 16), seed=0):
    vol = (np.random.default_rng(seed).random(shape) * 3000).astype(np.uint16)
    z = zarr.create_array(path, shape=vol.shape, chunks=chunks, dtype=vol.dtype)
    z[:] = vol
    return vol


def _reference(model, img):
    p = predict(model, img, tile=None, device="cpu")
    return p, probabilities_to_labels(p)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_blocks_equal_predict_and_ome_zarr_opens_with_scale(tmp_path, models, version):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    from napari_unet.core.readers import PixelSize, open_image

    path, model = models["3d"]
    vol = _volume(tmp_path / "vol.zarr")
    meta = read_model_meta(path)
    src = open_image(tmp_path / "vol.zarr")
    src.pixel_size = PixelSize({"z": 2.0, "y": 0.3, "x": 0.3}, "micrometer")
    job = dist.make_job(meta, src, tmp_path, fmt="ome-zarr", chunks=(8, 16, 16), device="cpu")
    assert len(job.blocks()) == 2 * 3 * 3
    (out,), = dist.run_jobs(dist.model_ref(path), [job], meta, version=version)
    assert out.endswith("vol.ome.zarr") and not (tmp_path / ".vol.ome.zarr.partial").exists()
    ref_p, ref_l = _reference(model, vol)
    g = zarr.open_group(out, mode="r")
    assert g["0"].dtype == np.float32 and g["0"].shape == (3, *vol.shape)
    assert np.abs(g["0"][:] - ref_p).max() <= 1e-5
    np.testing.assert_array_equal(g["labels/prediction/0"][:], ref_l)
    assert g["labels/prediction/0"].dtype == np.uint8

    nodes = list(Reader(parse_url(out))())
    image = next(n for n in nodes if n.load(Multiscales) and not n.load(Label))
    ms = image.metadata
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert ms["axes"][1]["unit"] == "micrometer"
    assert ms["coordinateTransformations"][0][0]["scale"] == [1.0, 2.0, 0.3, 0.3]
    np.testing.assert_allclose(np.asarray(image.data[0]), g["0"][:])
    label = next(n for n in Reader(parse_url(f"{out}/labels/prediction"))() if n.load(Label))
    assert label.metadata["coordinateTransformations"][0][0]["scale"] == [2.0, 0.3, 0.3]
    assert set(label.metadata["color"]) == {1, 2, 3}  # image-label colours, one per class value
    assert label.metadata["color"][1][3] == 0  # class 1 (background) transparent
    assert label.metadata["properties"][2]["class"] == model.meta["class_names"][1]
    # the in-memory labels and the store's agree on the values 1..K of the painting
    assert set(np.unique(np.asarray(label.data[0]))) <= {1, 2, 3}


def test_killed_run_resumes_only_missing_blocks(tmp_path, models, monkeypatch):
    path, model = models["3d"]
    vol = _volume(tmp_path / "vol.zarr", seed=1)
    meta = read_model_meta(path)
    ref = dist.model_ref(path)
    job = dist.make_job(meta, tmp_path / "vol.zarr", tmp_path, fmt="tiff", chunks=(8, 16, 16), device="cpu")
    blocks = job.blocks()
    # a run killed after 7 blocks: store, 7 chunks and their markers, no outputs
    dist.prepare_store(ref, job, meta, "0.5")
    job.stats = dist.global_stats(job.source, None, meta)
    for b in blocks[:7]:
        dist.run_block(ref, job, b)
    dist.marker_path(job, blocks[2]).unlink()  # chunk written, marker not yet: redone
    assert not (tmp_path / "vol_probs.tif").exists()

    ran = []
    real = dist.run_block
    monkeypatch.setattr(dist, "run_block", lambda r, j, b, *a: ran.append(tuple(b)) or real(r, j, b, *a))
    # the rerun asks for automatic chunks (which depend on free memory): it keeps the first run's
    job2 = dist.make_job(meta, tmp_path / "vol.zarr", tmp_path, fmt="tiff", device="cpu")
    dist.run_jobs(ref, [job2], meta)
    assert job2.chunks == (8, 16, 16)
    assert sorted(ran) == sorted([blocks[2]] + blocks[7:])
    ref_p, ref_l = _reference(model, vol)
    assert np.abs(tifffile.imread(tmp_path / "vol_probs.tif") - ref_p).max() <= 1e-5
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "vol_labels.tif"), ref_l)
    assert not (tmp_path / ".vol.napari-unet.partial.zarr").exists()


def test_cli_hdf5_input_and_pixel_size_to_tiff(tmp_path, models, capsys):
    h5py = pytest.importorskip("h5py")
    from napari_unet.core.readers import open_image

    path, model = models["2d"]
    img = (np.random.default_rng(2).random((3, 30, 34)) * 255).astype(np.uint8)
    with h5py.File(tmp_path / "s.h5", "w") as h:
        h.create_dataset("raw", data=img).attrs["element_size_um"] = [2.0, 0.5, 0.5]
    assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--quiet",
                 f"{tmp_path / 's.h5'}:raw"]) == 0
    ref_p, ref_l = _reference(model, img)
    assert np.abs(tifffile.imread(tmp_path / "o" / "s_probs.tif") - ref_p).max() <= 1e-5
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "s_labels.tif"), ref_l)
    px = open_image(tmp_path / "o" / "s_labels.tif").pixel_size
    assert px.sizes == pytest.approx({"z": 2.0, "y": 0.5, "x": 0.5}) and px.unit == "micrometer"
    # a second run replaces our outputs; a file napari-unet did not write needs --overwrite
    argv = ["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--quiet", f"{tmp_path / 's.h5'}:raw"]
    assert main(argv) == 0
    tifffile.imwrite(tmp_path / "o" / "s_labels.tif", np.zeros((3, 30, 34), np.uint8))
    assert main(argv) == 2
    assert "not written by napari-unet" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / "s_labels.tif"), ref_l)
    # the same for an OME-Zarr store: ours is replaced, a foreign folder is not
    zargv = argv[:-1] + ["--format", "ome-zarr", argv[-1]]
    assert main(zargv) == 0 and main(zargv) == 0
    foreign = ["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--quiet", "--format",
               "ome-zarr", f"{tmp_path / 's.h5'}:raw"]
    (tmp_path / "o" / "s.ome.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    assert main(foreign) == 2
    assert "not written by napari-unet" in capsys.readouterr().err


def test_cli_cluster_errors_are_one_line(tmp_path, models, capsys):
    path, _ = models["2d"]
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((16, 16), np.uint8))
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"),
                     "--cluster", "slurm", str(tmp_path / "a.tif")]) == 2
        assert "dask-jobqueue" in capsys.readouterr().err.strip().splitlines()[-1]
    assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"),
                 "--workers", "0", str(tmp_path / "a.tif")]) == 2
    assert "--workers" in capsys.readouterr().err


# ----------------------------------------------------------------------------- on a cluster

@pytest.fixture(scope="module")
def client():
    with dist.open_client(workers=2) as (c, threads):
        yield c, threads


@pytest.mark.slow
def test_local_cluster_zarr_volume_equals_predict(tmp_path, models, client):
    c, threads = client
    path, model = models["3d"]
    vol = _volume(tmp_path / "vol.zarr", shape=(16, 48, 40), seed=5)
    meta = read_model_meta(path)
    job = dist.make_job(meta, tmp_path / "vol.zarr", tmp_path, fmt="ome-zarr", chunks=(8, 16, 24), device="cpu")
    seen = []
    (out,), = dist.run_jobs(dist.model_ref(path, threads), [job], meta, client=c,
                            progress=lambda d, n: seen.append((d, n)))
    assert seen[-1] == (len(job.blocks()), len(job.blocks()))
    ref_p, ref_l = _reference(model, vol)
    g = zarr.open_group(out, mode="r")
    assert np.abs(g["0"][:] - ref_p).max() <= 1e-5
    np.testing.assert_array_equal(g["labels/prediction/0"][:], ref_l)
    # the model was loaded once per worker (worker-side cache), not once per block
    loaded = c.run(lambda: len(__import__("napari_unet.core.distributed", fromlist=["x"])._MODELS))
    assert len(loaded) == 2 and set(loaded.values()) <= {0, 1} and sum(loaded.values()) >= 1


@pytest.mark.slow
def test_cli_workers_spreads_tiff_files(tmp_path, models, capsys):
    path, model = models["2d"]
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(7)
    imgs = {f"f{i}": (rng.random((40 + i * 8, 52)) * 255).astype(np.uint8) for i in range(2)}
    for k, v in imgs.items():
        tifffile.imwrite(folder / f"{k}.tif", v)
    files = sorted(str(p) for p in folder.glob("*.tif"))
    assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--workers", "2",
                 "--quiet", *files]) == 0
    assert "2 dask workers" in capsys.readouterr().err
    for k, v in imgs.items():
        ref_p, ref_l = _reference(model, v)
        assert np.abs(tifffile.imread(tmp_path / "o" / f"{k}_probs.tif") - ref_p).max() <= 1e-5
        np.testing.assert_array_equal(tifffile.imread(tmp_path / "o" / f"{k}_labels.tif"), ref_l)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "f0_labels.tif", "f0_probs.tif", "f1_labels.tif", "f1_probs.tif"]


def test_api_dask_array_to_ome_zarr(tmp_path, models):
    da = pytest.importorskip("dask.array")
    import napari_unet

    path, model = models["3d"]
    vol = (np.random.default_rng(9).random((10, 30, 28)) * 100).astype(np.float32)
    lazy = da.from_array(vol, chunks=(5, 15, 14))
    (out,), = napari_unet.predict_to_store(model, lazy, tmp_path / "o", names=["v"], chunks=(8, 16, 16),
                                           device="cpu", ngff_version="0.4")
    g = zarr.open_group(out, mode="r")
    assert g.attrs["multiscales"][0]["version"] == "0.4"
    assert np.abs(g["0"][:] - _reference(model, vol)[0]).max() <= 1e-5
    assert not any(p.name.startswith(".") for p in (tmp_path / "o").iterdir())  # no temp left


def test_cli_interrupted_run_resumes(tmp_path, models, monkeypatch, capsys):
    path, model = models["3d"]
    vol = _volume(tmp_path / "vol.zarr", seed=11)
    argv = ["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--format", "ome-zarr",
            "--chunk", "8x16x16", "--quiet", str(tmp_path / "vol.zarr")]
    real = dist.run_block
    calls = []

    def interrupted(ref, job, b, *a):
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C (or a killed job) after 5 blocks
        calls.append(tuple(b))
        return real(ref, job, b, *a)

    monkeypatch.setattr(dist, "run_block", interrupted)
    assert main(argv) == 130
    assert not (tmp_path / "o" / "vol.ome.zarr").exists()
    assert len(list((tmp_path / "o" / ".vol.ome.zarr.partial" / dist.DONE_DIR).iterdir())) == 5

    again = []
    monkeypatch.setattr(dist, "run_block", lambda ref, job, b, *a: again.append(tuple(b)) or real(ref, job, b, *a))
    assert main(argv) == 0
    assert len(again) == 18 - 5 and not set(again) & set(calls)
    ref_p, ref_l = _reference(model, vol)
    g = zarr.open_group(tmp_path / "o" / "vol.ome.zarr", mode="r")
    assert np.abs(g["0"][:] - ref_p).max() <= 1e-5
    np.testing.assert_array_equal(g["labels/prediction/0"][:], ref_l)
    assert not (tmp_path / "o" / ".vol.ome.zarr.partial").exists()


def test_ome_zarr_channel_axis_comes_from_its_axes(tmp_path):
    from ome_zarr.writer import write_image

    torch.manual_seed(5)
    m = build_model(dims=2, in_channels=2, classes=2, base_channels=8, depth=2)
    save_model(m, tmp_path / "m.pt")
    img = np.random.default_rng(12).random((2, 36, 44)).astype(np.float32)
    write_image(img, zarr.open_group(str(tmp_path / "two.ome.zarr"), mode="w"), axes="cyx", scale_factors=[])
    assert main(["predict", "--model", str(tmp_path / "m.pt"), "--out-dir", str(tmp_path / "o"), "--quiet",
                 str(tmp_path / "two.ome.zarr")]) == 0
    ref = predict(m, img, channel_axis=0, tile=None, device="cpu")
    assert np.abs(tifffile.imread(tmp_path / "o" / "two_probs.tif") - ref).max() <= 1e-5


def test_time_lapse_predicts_frame_by_frame(tmp_path, models):
    from ome_zarr.writer import write_image

    path, model = models["3d"]
    movie = (np.random.default_rng(13).random((3, 8, 24, 20)) * 500).astype(np.uint16)  # t, z, y, x
    write_image(movie, zarr.open_group(str(tmp_path / "movie.ome.zarr"), mode="w"), axes="tzyx",
                scale_factors=[], scale={"z": 2.0, "y": 0.5, "x": 0.5})
    for fmt in ("ome-zarr", "tiff"):
        assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / fmt), "--quiet",
                     "--format", fmt, str(tmp_path / "movie.ome.zarr")]) == 0
    g = zarr.open_group(tmp_path / "ome-zarr" / "movie.ome.zarr", mode="r")
    ms = g.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "c", "z", "y", "x"] and ms["axes"][0]["type"] == "time"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 2.0, 0.5, 0.5]
    probs = tifffile.imread(tmp_path / "tiff" / "movie_probs.tif")
    assert probs.shape == (3, *movie.shape)
    for t in range(movie.shape[0]):  # each frame on its own, normalised with the whole movie's statistics
        from napari_unet.core.normalize import percentile_stats

        stats = percentile_stats(movie[None], channel_axis=0)
        ref = predict(model, movie[t], tile=None, device="cpu", stats=stats)
        assert np.abs(g["0"][t] - ref).max() <= 1e-5
        assert np.abs(probs[:, t] - ref).max() <= 1e-5
        np.testing.assert_array_equal(g["labels/prediction/0"][t], probabilities_to_labels(ref))


def test_global_stats_equal_in_memory_whether_read_at_once_or_through_dask(tmp_path, monkeypatch, models):
    from napari_unet.core.normalize import percentile_stats
    from napari_unet.core.readers import open_image

    # c, y, x with more than 2 M values per channel: percentile_stats takes a strided subsample
    img = np.random.default_rng(14).integers(0, 1000, (2, 1500, 1400)).astype(np.uint16)
    z = zarr.create_array(tmp_path / "c.zarr", shape=img.shape, chunks=(1, 512, 512), dtype=img.dtype)
    z[:] = img
    meta = read_model_meta(models["2d"][0])
    expected = percentile_stats(img, channel_axis=0)
    src = open_image(tmp_path / "c.zarr")
    np.testing.assert_array_equal(dist.global_stats(src, 0, meta), expected)
    monkeypatch.setattr(dist, "SMALL_IMAGE_BYTES", 0)  # as for an image larger than 64 MiB
    np.testing.assert_array_equal(dist.global_stats(src, 0, meta), expected)


def test_a_workers_cached_model_is_not_copied_per_block(models, monkeypatch):
    import napari_unet.core.predict as P

    path, model = models["3d"]
    runner = dist.cached_model(dist.model_ref(path), "cpu")
    assert dist.cached_model(dist.model_ref(path), "cpu") is runner  # loaded once per process
    vol = np.random.default_rng(15).random((8, 24, 20)).astype(np.float32)
    expected = predict(model, vol, tile=None, device="cpu")

    def no_copy(*a, **k):
        raise AssertionError("the cached inference copy was copied again")

    monkeypatch.setattr(P, "inference_copy", no_copy)
    np.testing.assert_allclose(predict(runner, vol, tile=None, device="cpu"), expected, atol=1e-6)


@pytest.mark.slow
def test_cli_scheduler_uses_a_running_cluster(tmp_path, models, client, capsys):
    c, _ = client
    path, model = models["3d"]
    vol = _volume(tmp_path / "vol.zarr", shape=(8, 40, 32), seed=16)
    assert main(["predict", "--model", str(path), "--out-dir", str(tmp_path / "o"), "--quiet", "--format",
                 "ome-zarr", "--chunk", "8x16x16", "--scheduler", c.scheduler.address, str(tmp_path / "vol.zarr")]) == 0
    assert "2 dask workers" in capsys.readouterr().err
    g = zarr.open_group(tmp_path / "o" / "vol.ome.zarr", mode="r")
    ref_p, ref_l = _reference(model, vol)
    assert np.abs(g["0"][:] - ref_p).max() <= 1e-5
    np.testing.assert_array_equal(g["labels/prediction/0"][:], ref_l)
