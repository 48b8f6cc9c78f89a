"""Training precision on a CPU: bf16 autocast where the CPU has AMX (or when forced), fp32
otherwise and when switched off; prediction on a CPU stays fp32 whatever the switch."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import napari_unet.core.device as device
from napari_unet.core.events import TrainStarted, TrainStep
from napari_unet.core.io import load_model, save_model
from napari_unet.core.predict import predict
from napari_unet.core.synthetic import make_nuclei, make_strokes
from napari_unet.core.train import iter_train

TINY = dict(base_channels=8, depth=2, patch=64, batch_size=2, device="cpu", val_fraction=0)


@pytest.fixture(scope="module")
def data2d():
    img, sem, inst = make_nuclei((96, 96), seed=5)
    return img, make_strokes(sem, inst, seed=5)


@pytest.mark.parametrize("flag, amx, expected", [
    ("auto", True, torch.bfloat16), ("auto", False, None),
    ("1", False, torch.bfloat16), ("0", True, None)])
def test_the_switch_and_the_probe_choose_the_training_precision(flag, amx, expected, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CPU_BF16", flag)
    monkeypatch.setattr(device, "cpu_has_amx", lambda: amx)
    cpu = torch.device("cpu")
    assert device.autocast_dtype(cpu, training=True) is expected
    assert device.autocast_dtype(cpu) is None          # prediction: fp32 on a CPU
    monkeypatch.setenv("NAPARI_UNET_NO_AMP", "1")
    assert device.autocast_dtype(cpu, training=True) is None


def test_a_mistyped_switch_is_named(monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="NAPARI_UNET_CPU_BF16 must be auto, 0 or 1"):
        device.autocast_dtype(torch.device("cpu"), training=True)


def test_the_probe_answers_without_raising():
    assert isinstance(device.cpu_has_amx(), bool)


@pytest.mark.parametrize("flag, precision", [("1", "bf16"), ("0", "fp32")])
def test_a_run_trains_in_the_precision_it_reports_and_keeps_fp32_weights(flag, precision, data2d,
                                                                          monkeypatch, tmp_path):
    monkeypatch.setenv("NAPARI_UNET_CPU_BF16", flag)
    img, strokes = data2d
    events = list(iter_train(img, strokes, steps=12, seed=0, **TINY))
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.precision == precision
    losses = [e.loss for e in events if isinstance(e, TrainStep)]
    assert losses and all(math.isfinite(v) for v in losses)
    model = events[-1].model
    assert model.meta["training"]["precision"] == precision
    assert all(p.dtype == torch.float32 for p in model.parameters())
    save_model(model, tmp_path / "m.pt")
    probs = predict(load_model(tmp_path / "m.pt"), img, device="cpu")
    assert probs.dtype == np.float32 and np.isfinite(probs).all()
    assert np.allclose(probs.sum(0), 1.0, atol=1e-4)
