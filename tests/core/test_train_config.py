"""The training engine's seams: TrainConfig (options defined and checked once), the tunables
looked up on napari_unet.core.train at run time, and the tiling plan apart from execution."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from napari_unet.core.events import Checkpoint, TrainFinished
from napari_unet.core.synthetic import make_nuclei
from napari_unet.core.train import TrainConfig, iter_train, train

TINY = dict(base_channels=8, depth=2, patch=32, batch_size=2, device="cpu", val_fraction=0)


@pytest.fixture(scope="module")
def data():
    img, sem, _ = make_nuclei((48, 48), seed=5)
    strokes = np.zeros_like(sem, dtype=np.uint8)
    strokes[::3] = sem[::3] + 1  # every third row painted: background 1, nuclei 2
    return img, strokes


def test_iter_train_signature_comes_from_the_config():
    names = [p.name for p in inspect.signature(iter_train).parameters.values()]
    fields = list(TrainConfig.__dataclass_fields__)
    assert names == ["images", "labels", "config"] + fields
    assert list(inspect.signature(train).parameters) == names


def test_unknown_option_is_a_type_error(data):
    img, strokes = data
    with pytest.raises(TypeError, match="unexpected keyword argument 'stepz'"):
        iter_train(img, strokes, stepz=3)


def test_config_is_checked_once_and_normalised(tmp_path):
    with pytest.raises(ValueError, match="steps= or time_limit="):
        TrainConfig().checked()
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(steps=1, val_fraction=0.9).checked()
    cfg = TrainConfig(steps=1, device="cpu", augment=False, checkpoint=str(tmp_path / "m.pt")).checked()
    assert cfg.device.type == "cpu" and cfg.augment is None and cfg.checkpoint == tmp_path / "m.pt"
    assert cfg.lr is None  # the default depends on dims (known from the data) and on continuing
    assert TrainConfig(steps=1, device="cpu", lr=3e-4).checked().lr == 3e-4
    with pytest.raises(ValueError, match="lr must be positive"):
        TrainConfig(steps=1, lr=0).checked()


def test_default_learning_rate_by_dims_and_continuation(data):
    img, strokes = data
    fresh = train(img, strokes, steps=1, seed=0, **TINY)
    assert fresh.meta["training"]["lr"] == 1e-3  # 2D
    again = train(img, strokes, model=fresh, steps=1, seed=0, **TINY)
    assert again.meta["training"]["lr"] == 5e-4  # continuing: a quarter of 2e-3
    stack, marks = np.stack([img] * 4), np.stack([strokes] * 4)
    assert train(stack, marks, dims=3, steps=1, seed=0, **TINY).meta["training"]["lr"] == 2e-3
    assert train(img, strokes, steps=1, lr=4e-4, seed=0, **TINY).meta["training"]["lr"] == 4e-4


def test_config_object_and_overrides_train_the_same(data, tmp_path):
    img, strokes = data
    cfg = TrainConfig(steps=3, seed=1, checkpoint=tmp_path / "m.pt", **TINY)
    events = list(iter_train(img, strokes, cfg, steps=2))  # a keyword overrides the config
    fin = events[-1]
    assert isinstance(fin, TrainFinished) and fin.reason == "steps" and fin.step == 2
    assert isinstance(events[-2], Checkpoint) and (tmp_path / "m.pt").exists()
    assert fin.model.meta["training"]["steps"] == 2


def test_closing_early_still_finishes_the_model(data, tmp_path):
    img, strokes = data
    gen = iter_train(img, strokes, steps=50, checkpoint=tmp_path / "c.pt", **TINY)
    for ev in gen:
        if getattr(ev, "step", 0) >= 2 and type(ev).__name__ == "TrainStep":
            break
    gen.close()
    assert (tmp_path / "c.pt").exists()  # the one finish path wrote the checkpoint


def test_tunables_are_looked_up_on_the_package(data, monkeypatch):
    import napari_unet.core.train as tr

    img, strokes = data
    seen = []
    real = tr.sparse_loss

    def spy(logits, target, **kw):
        seen.append(kw.get("entropy_weight"))
        return real(logits, target, **kw)

    monkeypatch.setattr(tr, "sparse_loss", spy)
    monkeypatch.setattr(tr, "ENTROPY_WEIGHT", 0.25)
    monkeypatch.setattr(tr, "REG_WEIGHT", 0.0)
    model = train(img, strokes, steps=2, **TINY)
    assert seen and seen[0] == 0.25
    assert model.meta["training"]["steps"] == 2


def test_tile_plan_is_numpy_only_and_covers_the_image():
    from napari_unet.core.tiling import plan_batches, plan_tiles

    groups = plan_tiles((100, 70), (32, 32), halo=8, grid=8, n_slices=0)
    tiles = [t for members in groups.values() for t in members]
    cover = np.zeros((100, 70), int)
    for _, (ay, ax) in tiles:
        cover[ay.core_start:ay.core_stop, ax.core_start:ax.core_stop] += 1
    assert (cover == 1).all()  # every pixel in exactly one core
    batches = plan_batches(groups, 3, budget=0, bytes_voxel=1.0, cuda=False)
    assert sum(len(m) for _, m in batches) == len(tiles) and max(len(m) for _, m in batches) <= 3
