"""Training options: :class:`TrainConfig` (every option of ``iter_train``, defined once and
checked once) and the per-device defaults (architecture, patch and batch size)."""
from __future__ import annotations

import dataclasses
import math
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..augment import AugmentConfig
from ..device import resolve_device
from ..errors import UserError, UserTypeError

__all__ = ["TrainConfig", "default_architecture", "default_patch_batch"]


def _pkg():
    """The ``napari_unet.core.train`` package: the tunables (``REG_WEIGHT`` ...) and
    ``sparse_loss`` are looked up there when used, so monkeypatching them there takes effect."""
    return sys.modules[__package__]


# ----------------------------------------------------------------------------- defaults

def default_architecture(dev: torch.device, dims: int) -> tuple[int, int]:
    """(base_channels, depth). Measured on a 2-core CPU (benchmarks/train_speed.py):
    a smaller network trains more steps per second, which matters more than capacity for
    a few minutes of training from strokes; GPUs get the standard U-Net."""
    if dev.type == "cuda":
        return (32, 4) if dims == 2 else (24, 3)
    if dev.type == "mps":
        return (32, 4) if dims == 2 else (16, 3)
    return (16, 3) if dims == 2 else (8, 3)


def default_patch_batch(dev: torch.device, dims: int) -> tuple[tuple[int, ...], int]:
    if dev.type == "cuda":
        return ((256, 256), 16) if dims == 2 else ((32, 128, 128), 4)
    if dev.type == "mps":
        return ((256, 256), 8) if dims == 2 else ((32, 96, 96), 2)
    return ((128, 128), 4) if dims == 2 else ((16, 64, 64), 2)


# ----------------------------------------------------------------------------- argument checks

def _check_int(name: str, v: Any, lo: int = 1, allow_none: bool = True) -> int | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise UserTypeError(f"{name} must be an integer, got {v!r}")
    if v < lo:
        raise UserError(f"{name} must be at least {lo}, got {v}")
    return int(v)


def _check_float(name: str, v: Any, *, positive: bool = True, allow_none: bool = True,
                 allow_inf: bool = False) -> float | None:
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise UserTypeError(f"{name} must be a number, got {v!r}")
    v = float(v)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise UserError(f"{name} must be a finite number, got {v}")
    if positive and not v > 0:
        raise UserError(f"{name} must be positive, got {v}")
    return v


def _patch_arg(patch: Any, dims: int) -> tuple[int, ...] | None:
    if isinstance(patch, str):
        if patch != "auto":
            raise UserError(f"patch must be 'auto', an int or a tuple of {dims} ints, got {patch!r}")
        return None
    if isinstance(patch, (int, np.integer)) and not isinstance(patch, bool):
        patch = (int(patch),) * dims
    if not isinstance(patch, (tuple, list)) or len(patch) != dims:
        raise UserError(f"patch must be 'auto', an int or a tuple of {dims} ints, got {patch!r}")
    out = []
    for p in patch:
        out.append(_check_int("patch size", p, lo=4, allow_none=False))
    return tuple(out)


@dataclass
class TrainConfig:
    """Every option of :func:`napari_unet.core.train.iter_train` (see there), with its default.

    ``iter_train(images, labels, **options)`` builds one of these; :meth:`checked` validates the
    options that do not depend on the data and returns a normalised copy (``device`` resolved
    to a ``torch.device``, ``augment`` an :class:`AugmentConfig` or None, ``checkpoint`` a Path).
    """

    dims: int | None = None
    model: Any = None
    init: Any = None
    classes: int | None = None
    class_names: list[str] | None = None
    steps: int | None = None
    time_limit: float | None = None
    device: Any = "auto"
    batch_size: Any = "auto"
    patch: Any = "auto"
    lr: float | None = None
    base_channels: int | None = None
    depth: int | None = None
    val_fraction: float = 0.1
    val_images: Any = None
    val_labels: Any = None
    unpainted_is_background: bool = False
    checkpoint: Any = None
    checkpoint_every: float = 30.0
    seed: int = 0
    stop: threading.Event | None = None
    preview: Callable[[], Any] | None = None
    preview_every: float = 5.0
    channel_axis: int | None = None
    augment: Any = True
    dice_weight: float = 0.5
    weight_decay: float = 1e-4
    keep_better: bool = False
    spacing: Any = None

    @classmethod
    def from_options(cls, caller: str = "iter_train", **options: Any) -> "TrainConfig":
        """A config from keyword options; an unknown name is a TypeError, as for a function."""
        names = {f.name for f in dataclasses.fields(cls)}
        for k in options:
            if k not in names:
                raise TypeError(f"{caller}() got an unexpected keyword argument {k!r}")
        return cls(**options)

    def checked(self) -> "TrainConfig":
        """Validate the options that do not depend on the data; return a normalised copy."""
        steps, time_limit, batch_size, lr = self.steps, self.time_limit, self.batch_size, self.lr
        val_fraction, checkpoint_every = self.val_fraction, self.checkpoint_every
        preview_every, dice_weight, weight_decay = self.preview_every, self.dice_weight, self.weight_decay
        seed, preview, stop, model, init = self.seed, self.preview, self.stop, self.model, self.init
        augment, checkpoint, device = self.augment, self.checkpoint, self.device
        steps = _check_int("steps", steps)
        time_limit = _check_float("time_limit", time_limit, allow_inf=True)
        if steps is None and time_limit is None:
            raise UserError("give steps= or time_limit= (or both); time_limit=math.inf trains until "
                             "stopped with the stop event or by closing the generator")
        if not (isinstance(batch_size, str) and batch_size == "auto"):
            if isinstance(batch_size, str):
                raise UserError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
            batch_size = _check_int("batch_size", batch_size, allow_none=False)
        lr = _check_float("lr", lr)  # None: the default, once the data say 2D or 3D (default_lr)
        val_fraction = _check_float("val_fraction", val_fraction, positive=False, allow_none=False)
        if not 0 <= val_fraction <= 0.5:
            raise UserError(f"val_fraction must be between 0 and 0.5, got {val_fraction}")
        checkpoint_every = _check_float("checkpoint_every", checkpoint_every, allow_none=False, allow_inf=True)
        preview_every = _check_float("preview_every", preview_every, allow_none=False, allow_inf=True)
        dice_weight = _check_float("dice_weight", dice_weight, positive=False, allow_none=False)
        weight_decay = _check_float("weight_decay", weight_decay, positive=False, allow_none=False)
        seed = _check_int("seed", seed, lo=0, allow_none=False)
        if preview is not None and not callable(preview):
            raise UserTypeError(f"preview must be a callable returning None or (key, image), got {type(preview).__name__}")
        if stop is not None and not callable(getattr(stop, "is_set", None)):
            raise UserTypeError(f"stop must be a threading.Event (something with is_set()), got {type(stop).__name__}")
        if model is not None and init is not None:
            raise UserError("give model= (continue training it) or init= (fine-tune a copy), not both")
        if augment is True:
            augment = AugmentConfig()
        elif augment is False or augment is None:
            augment = None
        elif not isinstance(augment, AugmentConfig):
            raise UserTypeError(f"augment must be True, False or an AugmentConfig, got {augment!r}")
        if checkpoint is not None:
            checkpoint = Path(checkpoint)
            if checkpoint.is_dir():
                raise UserError(f"checkpoint {checkpoint} is a folder; give a model file path (.pt)")
            if not checkpoint.parent.exists():
                raise UserError(f"the folder of checkpoint {checkpoint} does not exist")
            from ..outputs import check_output   # never the init model, an image or another tool's file

            check_output(checkpoint, inputs=[init] if isinstance(init, (str, Path)) else [],
                         overwrite=None, what="checkpoint", model=True)
        dev = resolve_device(device)
        return dataclasses.replace(
            self, steps=steps, time_limit=time_limit, batch_size=batch_size, lr=lr,
            val_fraction=val_fraction, checkpoint_every=checkpoint_every, preview_every=preview_every,
            dice_weight=dice_weight, weight_decay=weight_decay, seed=seed, augment=augment,
            checkpoint=checkpoint, device=dev)


def default_lr(lr: float | None, dims: int, continuing: bool) -> float:
    """The peak learning rate: ``lr`` when given; else, continuing a model (``model=`` or
    ``init=``), a gentler step, the weights being good already; else a fresh run's for ``dims``."""
    if lr is not None:
        return lr
    if continuing:
        return _pkg().DEFAULT_LR * _pkg().FINETUNE_LR_FACTOR
    return _pkg().DEFAULT_LR_2D if dims == 2 else _pkg().DEFAULT_LR


def options_signature(func: Callable) -> Any:
    """``func``'s signature with ``**options`` written out from :class:`TrainConfig` (for
    help() and editors: the options are defined once, in the dataclass)."""
    import inspect

    sig = inspect.signature(func)
    params = [p for p in sig.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                 annotation=f.type) for f in dataclasses.fields(TrainConfig)]
    return sig.replace(parameters=params)
