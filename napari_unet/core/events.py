"""Typed progress events shared by the engine (generators) and its front ends (CLI, widgets).

The training generator ``napari_unet.core.train.iter_train`` yields these; the widgets run it
in a napari ``thread_worker`` and update the viewer from the main thread; the CLI prints them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrainStarted:
    device: str            # e.g. "cpu (2 threads)" or "cuda (NVIDIA H100)"
    precision: str         # "fp32", "bf16" or "fp16"
    dims: int
    patch: tuple[int, ...]
    batch_size: int
    total_steps: int | None
    time_limit: float | None
    train_pixels: int      # painted pixels used for training
    val_pixels: int        # painted pixels held out for validation
    classes: int


@dataclass(frozen=True)
class TrainStep:
    step: int
    loss: float
    lr: float
    steps_per_s: float
    elapsed: float
    fraction: float        # 0..1 progress towards the step or time limit


@dataclass(frozen=True)
class Validation:
    step: int
    loss: float
    iou: dict[int, float]  # per class value
    dice: dict[int, float]
    mean_iou: float
    mean_dice: float


@dataclass(frozen=True)
class Preview:
    """Probabilities ``(classes, *spatial)`` for the preview image with the current weights."""

    step: int
    probabilities: np.ndarray
    key: Any = None        # whatever the caller passed along with the preview image


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: str


@dataclass(frozen=True)
class TrainFinished:
    reason: str            # "steps", "time", "stopped", "nan" or "error"
    step: int
    model: Any = field(repr=False)
    message: str = ""
