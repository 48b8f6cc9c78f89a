"""Typed progress events shared by the engine (generators) and its front ends (CLI, widgets).

The training generator ``napari_unet.core.train.iter_train`` yields these; the widgets run it
in a napari ``thread_worker`` and update the viewer from the main thread; the CLI prints them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["TrainStarted", "TrainStep", "Validation", "Preview", "Checkpoint", "TrainFinished",
           "quality_summary"]


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
    pooling: str = ""      # anisotropic models: e.g. "pooled Z x2, Y x8, X x8 (voxel 3x1x1)"
    advice: str = ""       # notes on the paint (labels.scarce_paint; no polarity), "" when there are none


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
    mean_iou: float        # on held-out strokes only: says nothing about boundaries
    mean_dice: float
    # over every pixel of the validation crops (painted or not), so boundaries count:
    agreement: float = float("nan")   # mean IoU between the prediction and that of the mirrored
                                      # crop (1 = boundaries settled; low = they move)
    uncertain: float = float("nan")   # share of pixels whose top probability is below 0.75


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
    reason: str            # "steps", "time", "stopped" or "nan" (an error is raised, never reported here)
    step: int
    model: Any = field(repr=False)
    message: str = ""
    kept_previous: bool = False   # keep_better: the starting weights fitted the paint better
    # what a status line adds to the end reason (the tail of ``message``): keep_better's
    # comparison, or the weights a NaN stop kept; "" when there is nothing more to say
    detail: str = ""
    # keep_better: mean IoU on all the paint of (the starting weights, the trained ones)
    paint_iou: tuple[float, float] | None = None
    # keep_better kept the previous weights: the run's own, as a model (a Revert can still take
    # them); None otherwise
    discarded: Any = field(default=None, repr=False)


QUALITY_HELP = (
    "stability: how much the prediction agrees with that of the mirrored image over every "
    "pixel of the validation crops, boundaries included (mean IoU; 1 = boundaries settled, "
    "lower = they still move: paint where the preview is wrong or train longer). uncertain: "
    "share of those pixels whose top class probability is below 0.75. strokes: IoU on held-out "
    "strokes only, which sit away from boundaries and so read high long before the result is good.")


def quality_summary(v: Validation) -> str:
    """One line for a :class:`Validation`, the same in the CLI and the widget: the
    boundary-sensitive figures first, the (flattering) held-out stroke IoU last and capped
    below 1.00 so it never reads as a perfect result."""
    import math

    def f(x: float) -> str:
        return "-" if not math.isfinite(x) else f"{min(x, 0.99):.2f}" if x > 0.99 else f"{x:.2f}"

    unc = "-" if not math.isfinite(v.uncertain) else f"{100 * v.uncertain:.0f}%"
    strokes = "-" if not math.isfinite(v.mean_iou) else ("≥0.99" if v.mean_iou > 0.99 else f"{v.mean_iou:.2f}")
    return f"stability {f(v.agreement)} · uncertain {unc} · held-out strokes IoU {strokes}"
