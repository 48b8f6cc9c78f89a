"""Training from sparse paint: ``iter_train`` (a generator of progress events) and ``train``.

Labels: 0 = unlabeled (ignored by the loss), 1..K = classes (1 = background by convention).
Inputs are checked eagerly when ``iter_train`` is called (mistakes raise ``ValueError`` or
``TypeError`` naming the problem); the heavy work (normalisation, patch tables, the model on
the device) happens inside the generator, so it runs wherever the generator is consumed
(e.g. a napari ``thread_worker``).

One training step: a class-balanced batch of patches centred on painted pixels, augmented on
the device (flips, rotations, scale, intensity, gamma, noise), a class-balanced cross-entropy
plus Dice loss on painted pixels, AdamW with warm-up and cosine decay over the step or time
budget. Images are normalised exactly as :func:`napari_unet.core.predict.predict` does
(percentiles of the whole image, computed once). On CUDA: bf16 autocast (fp16 + GradScaler
where bf16 is unsupported), channels-last (2D), cudnn benchmark, data and augmentation on the
GPU when they fit, and no host synchronisation except when an event is emitted (about 10/s).

Stopping: ``steps``/``time_limit`` (at least one is required; ``time_limit=math.inf`` trains
until stopped), the ``stop`` event (checked every step and between validation/preview
batches), or closing the generator. A NaN/inf loss restores the last good weights and ends
with ``reason="nan"``.
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from .errors import UserError, UserTypeError, option
from .limits import check_class_count, check_training_memory
from .data import (AugmentConfig, Volume, PatchSampler, ValSet, build_valset, build_volumes, check_pairs,
                   find_centres, round_up, split_validation)
from .device import autocast_dtype, available_memory, describe_device, resolve_device
from .events import Checkpoint, Preview, TrainFinished, TrainStarted, TrainStep, Validation
from .losses import confusion_counts, edge_aware_potts, neighbour_offsets, sparse_loss
from .model import UNet, build_model, model_meta, replace_head

DEFAULT_LR = 2e-3
EMIT_INTERVAL = 0.1          # seconds between TrainStep events (each step when slower)
VAL_MIN_INTERVAL = 15.0      # seconds between validations (at least)
VAL_MAX_SHARE = 0.05         # validation may take at most this share of the time
WARMUP_STEPS = 30
ENTROPY_WEIGHT = 0.0          # entropy minimisation on unpainted pixels (see losses)
EMA_DECAY = 0.99             # the returned weights: an exponential moving average (0: off)
BN_RECALIBRATE = True        # re-estimate BatchNorm statistics at the end (see _recalibrate_bn)
UNCERTAIN_BELOW = 0.75       # a pixel is "uncertain" when its top class probability is below this
# the edge-aware regulariser on every pixel (losses.edge_aware_potts): its weight against the
# stroke loss, its ramp (share of the run over which it grows from 0, so the strokes set the
# classes first) and the neighbour distances it compares; environment overrides for benchmarks
REG_WEIGHT = float(os.environ.get("NAPARI_UNET_REG", 3.0))
# 3D: measured on the ovule stack (thin cell-boundary sheets, painted on every 6th plane) the
# full weight cost 0.06 IoU against none and 1.0 cost 0.017 (benchmarks/quality.py)
REG_WEIGHT_3D = float(os.environ.get("NAPARI_UNET_REG_3D", os.environ.get("NAPARI_UNET_REG", 1.0)))
REG_RAMP = float(os.environ.get("NAPARI_UNET_REG_RAMP", 0.25))
REG_DILATIONS = tuple(int(v) for v in os.environ.get("NAPARI_UNET_REG_DIL", "1,2,4").split(","))


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
class _Plan:
    pairs: list
    val_pairs: list | None
    dims: int
    classes: int
    model: UNet                  # the model to train (in place)
    init_source: str | None
    continued: bool
    dev: torch.device
    steps: int | None
    time_limit: float | None
    batch_size: Any
    patch: tuple[int, ...] | None
    lr: float
    val_fraction: float
    unpainted_is_background: bool
    checkpoint: Path | None
    checkpoint_every: float
    seed: int
    stop: Any
    preview: Callable | None
    preview_every: float
    augment: AugmentConfig | None
    dice_weight: float
    weight_decay: float
    painted: dict
    keep_better: bool = False


def _load_init(init: Any) -> tuple[UNet, str]:
    if isinstance(init, (str, os.PathLike)):
        from .io import load_model

        return load_model(init), str(init)
    if isinstance(init, torch.nn.Module):
        model_meta(init)
        return copy.deepcopy(init), "model object"
    raise UserTypeError(f"init must be a model file path or a napari-unet model, got {type(init).__name__}")


def _plan(images, labels, *, dims, model, init, classes, class_names, steps, time_limit, device,
          batch_size, patch, lr, base_channels, depth, val_fraction, val_images, val_labels,
          unpainted_is_background, checkpoint, checkpoint_every, seed, stop, preview,
          preview_every, channel_axis, augment, dice_weight, weight_decay, keep_better=False) -> _Plan:
    # -- scalar arguments
    steps = _check_int("steps", steps)
    time_limit = _check_float("time_limit", time_limit, allow_inf=True)
    if steps is None and time_limit is None:
        raise UserError("give steps= or time_limit= (or both); time_limit=math.inf trains until "
                         "stopped with the stop event or by closing the generator")
    if not (isinstance(batch_size, str) and batch_size == "auto"):
        if isinstance(batch_size, str):
            raise UserError(f"batch_size must be 'auto' or a positive integer, got {batch_size!r}")
        batch_size = _check_int("batch_size", batch_size, allow_none=False)
    lr = _check_float("lr", DEFAULT_LR if lr is None else lr, allow_none=False)
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
    dev = resolve_device(device)

    # -- the starting model and dims
    base_model, init_source = None, None
    if model is not None:
        meta = model_meta(model)
        base_model = model
    elif init is not None:
        base_model, init_source = _load_init(init)
        meta = base_model.meta
    if base_model is not None:
        mdims = meta["dims"]
        what = "model" if model is not None else "init model"
        if dims is None:
            dims = mdims
        elif dims != mdims:
            raise UserError(f"{option('dims', dims)} but the {what} is {mdims}D")
        if base_channels is not None and base_channels != meta["base_channels"]:
            raise UserError(f"{option('base_channels', base_channels)} differs from the {what}'s {meta['base_channels']}")
        if depth is not None and depth != meta["depth"]:
            raise UserError(f"{option('depth', depth)} differs from the {what}'s {meta['depth']}")
    if dims is None:
        dims = 2
    if isinstance(dims, bool) or dims not in (2, 3):
        raise UserError(f"dims must be 2 or 3, got {dims!r}")
    patch_t = _patch_arg(patch, dims)

    # -- data
    pairs = check_pairs(images, labels, dims=dims, channel_axis=channel_axis,
                        unpainted_is_background=unpainted_is_background)
    val_pairs = None
    if (val_images is None) != (val_labels is None):
        raise UserError("give both val_images and val_labels, or neither")
    if val_images is not None:
        val_pairs = check_pairs(val_images, val_labels, dims=dims, channel_axis=channel_axis,
                                unpainted_is_background=unpainted_is_background, what="val_images")
        if val_pairs[0].image.shape[0] != pairs[0].image.shape[0]:
            raise UserError("val_images have a different number of channels than images")
    maxlen = max(len(p.counts) for p in pairs)
    total = np.zeros(maxlen, np.int64)
    for p in pairs:
        total[:len(p.counts)] += p.counts
    painted_values = [v for v in range(1, maxlen) if total[v] > 0]
    if not painted_values:
        raise UserError("the labels have no painted pixels (all 0 = unlabeled): paint at least "
                         "two classes, e.g. background (1) and an object class (2)"
                         + ("" if unpainted_is_background else
                            f"; for a full mask where 0 means background use {option('unpainted_is_background')}"))
    if len(painted_values) < 2:
        v = painted_values[0]
        hint = (f" (with {option('unpainted_is_background')}, 0 becomes class 1 = background: a 0/1 mask "
                "must have its objects as 2, e.g. labels + 1)" if unpainted_is_background and v == 1 else "")
        raise UserError(f"only one class (value {v}) is painted; paint at least two classes, "
                         f"e.g. background (1) and an object class (2){hint}")
    max_value = painted_values[-1]
    if val_pairs:
        vmax = max(len(p.counts) - 1 for p in val_pairs)
        max_value = max(max_value, vmax)
    cin = pairs[0].image.shape[0]

    # -- classes and the model
    classes = _check_int("classes", classes, lo=2)
    check_class_count(max_value, classes, known=meta["classes"] if base_model is not None else 0)
    if class_names is not None:
        if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names):
            raise UserTypeError("class_names must be a list of strings")
        class_names = list(class_names)
    continued = model is not None
    if continued:
        k = meta["classes"]
        if classes is not None and classes != k:
            raise UserError(f"{option('classes', classes)} but the model being continued has {k}; use "
                             f"{option('init', 'MODEL')} to fine-tune a copy with a new head")
        if max_value > k:
            raise UserError(f"the labels contain class {max_value} but the model has only {k} "
                             f"classes; to add classes fine-tune a copy with {option('init', 'MODEL')} (a new head)")
        if meta["in_channels"] != cin:
            raise UserError(f"the model takes {meta['in_channels']} channels, the images have {cin}")
        classes = k
        if class_names is not None:
            if len(class_names) != k:
                raise UserError(f"{len(class_names)} class names for {k} classes")
            model.meta["class_names"] = class_names
        the_model = model
    else:
        if classes is None:
            classes = max(max_value, 2)
            if base_model is not None:
                classes = max(classes, meta["classes"])
        elif classes < max_value:
            raise UserError(f"the labels contain class {max_value} but {option('classes', classes)}")
        if class_names is not None and len(class_names) != classes:
            raise UserError(f"{len(class_names)} class names for {classes} classes")
        if base_model is not None:
            if meta["in_channels"] != cin:
                raise UserError(f"the init model takes {meta['in_channels']} channels, the images have {cin}")
            if classes != meta["classes"]:
                names = class_names
                if names is None and classes > meta["classes"]:
                    from .model import default_class_names

                    old = list(meta.get("class_names") or [])
                    names = old + default_class_names(classes)[len(old):]
                the_model = replace_head(base_model, classes, names)
                the_model._new_head = True  # nothing to compare with for keep_better
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    the_model.head.reset_parameters()
            else:
                the_model = base_model
                if class_names is not None:
                    the_model.meta["class_names"] = class_names
            the_model.meta = dict(the_model.meta)
        else:
            b0, d0 = default_architecture(dev, dims)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                the_model = build_model(dims, cin, classes,
                                        b0 if base_channels is None else base_channels,
                                        d0 if depth is None else depth, class_names=class_names)
    painted = {"images": [{"shape": list(p.image.shape[1:]),
                           "painted": {str(v): int(p.counts[v]) for v in range(1, len(p.counts)) if p.counts[v]}}
                          for p in pairs]}
    return _Plan(pairs, val_pairs, dims, classes, the_model, init_source, continued, dev, steps,
                 time_limit, batch_size, patch_t, lr, val_fraction, bool(unpainted_is_background),
                 checkpoint, checkpoint_every, seed, stop, preview, preview_every, augment,
                 dice_weight, weight_decay, painted, bool(keep_better))


# ----------------------------------------------------------------------------- public API

def iter_train(images, labels, *, dims: int | None = None, model: UNet | None = None, init: Any = None,
               classes: int | None = None, class_names: list[str] | None = None,
               steps: int | None = None, time_limit: float | None = None, device: Any = "auto",
               batch_size: Any = "auto", patch: Any = "auto", lr: float | None = None,
               base_channels: int | None = None, depth: int | None = None,
               val_fraction: float = 0.1, val_images=None, val_labels=None,
               unpainted_is_background: bool = False, checkpoint: Any = None,
               checkpoint_every: float = 30.0, seed: int = 0, stop: threading.Event | None = None,
               preview: Callable[[], Any] | None = None, preview_every: float = 5.0,
               channel_axis: int | None = None, augment: Any = True, dice_weight: float = 0.5,
               weight_decay: float = 1e-4, keep_better: bool = False) -> Iterator:
    """Train a U-Net on painted labels; returns a generator of progress events.

    Events: :class:`TrainStarted` first, then :class:`TrainStep` (every step, at most ~10/s),
    :class:`Validation`, :class:`Preview`, :class:`Checkpoint`, and :class:`TrainFinished` last
    (``reason`` "steps", "time", "stopped", "nan" or "error"; ``model`` the trained model, on
    the CPU in eval mode).

    ``images``/``labels``: an array or a list of arrays (sizes may differ); images ``(Y, X)`` or
    ``(Z, Y, X)`` (plus a channel axis where ``channel_axis`` says), labels integers of the same
    spatial shape, 0 = unlabeled, 1..K. ``dims``: 2 (slices; on a stack only painted slices are
    used) or 3 (volumetric patches); default: the model's, else 2. ``model``: continue training
    this model in place. ``init``: fine-tune a copy of this model (or model file); a new head
    when the class count differs. ``classes``: K (default: the highest painted value, at least
    2, at least the init model's). At least one of ``steps``/``time_limit`` is required
    (``time_limit=math.inf``: until stopped). ``base_channels``/``depth``/``patch``/
    ``batch_size``: ``None``/"auto" pick measured defaults for the device.
    ``val_fraction``: share of the paint held out (in spatial blocks) for validation, unless
    ``val_images``/``val_labels`` are given. ``checkpoint``: a model path written atomically
    every ``checkpoint_every`` seconds and at the end. ``stop``: a ``threading.Event``.
    ``preview``: a callable returning ``None`` or ``(key, image)``, predicted with the current
    weights every ``preview_every`` seconds. ``keep_better``: when continuing (``model=``) or
    fine-tuning with the same classes (``init=``), score the starting and the trained weights
    on all the paint (training and held-out strokes, new corrections included) at the end and
    keep the starting weights if they fit it better (``TrainFinished.kept_previous``), so a
    correction round never makes the model worse on what was painted.
    """
    plan = _plan(images, labels, dims=dims, model=model, init=init, classes=classes,
                 class_names=class_names, steps=steps, time_limit=time_limit, device=device,
                 batch_size=batch_size, patch=patch, lr=lr, base_channels=base_channels,
                 depth=depth, val_fraction=val_fraction, val_images=val_images,
                 val_labels=val_labels, unpainted_is_background=unpainted_is_background,
                 checkpoint=checkpoint, checkpoint_every=checkpoint_every, seed=seed, stop=stop,
                 preview=preview, preview_every=preview_every, channel_axis=channel_axis,
                 augment=augment, dice_weight=dice_weight, weight_decay=weight_decay,
                 keep_better=keep_better)
    return _Trainer(plan).run()


def train(images, labels, **kwargs) -> UNet:
    """Run :func:`iter_train` to the end and return the trained model (CPU, eval mode).

    Takes the same arguments. A NaN loss keeps the last good weights and warns.
    """
    finished = None
    for ev in iter_train(images, labels, **kwargs):
        if isinstance(ev, TrainFinished):
            finished = ev
    if finished.reason in ("nan", "error"):
        warnings.warn(finished.message, RuntimeWarning, stacklevel=2)
    return finished.model


# ----------------------------------------------------------------------------- the loop

def _adamw(params: list, **kw: Any) -> torch.optim.Optimizer:
    """AdamW with the fused kernel where this torch and device have one (CPU: ~4x faster
    optimizer steps than the per-tensor loop, ~1 ms of a ~65 ms step for the CPU default
    model), else torch's default implementation."""
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, **kw)


class ThreadTuner:
    """CPU only: compare step times with torch's default thread count and with one thread,
    keep the faster, and check again every ``every`` seconds.

    On an idle machine all cores win; when other work competes for the cores (the napari
    viewer, another process), OpenMP's synchronisation makes many threads far slower than
    one (measured 10x on a loaded 2-core machine). The thread count is process-wide in torch,
    so it is restored when training ends.
    """

    def __init__(self, enabled: bool, probe_steps: int = 4, every: float = 60.0):
        self.orig = torch.get_num_threads()
        self.enabled = enabled and self.orig > 1
        self.cands = [self.orig, 1]
        self.probe_steps = probe_steps
        self.every = every
        self.times: dict[int, list[float]] = {}
        self.idx = 0          # candidate being probed; None while running
        self.skip = 1         # steps to discard after a switch (warm-up)
        self.next_probe = math.inf
        self.current = self.orig
        self.choice: int | None = None

    def record(self, dt: float, now: float) -> None:
        if not self.enabled:
            return
        if self.idx is None:
            if now >= self.next_probe:
                self.idx, self.times, self.skip = 0, {}, 1
                self._set(self.cands[0])
            return
        if self.skip:
            self.skip -= 1
            return
        c = self.cands[self.idx]
        self.times.setdefault(c, []).append(dt)
        if len(self.times[c]) >= self.probe_steps:
            self.idx += 1
            if self.idx < len(self.cands):
                self._set(self.cands[self.idx])
                self.skip = 1
            else:
                best = min(self.times, key=lambda k: float(np.median(self.times[k])))
                self.choice = best
                self._set(best)
                self.idx = None
                self.next_probe = now + self.every

    def _set(self, n: int) -> None:
        if n != self.current:
            torch.set_num_threads(n)
            self.current = n

    def restore(self) -> None:
        if self.enabled and torch.get_num_threads() != self.orig:
            torch.set_num_threads(self.orig)


class _Trainer:
    def __init__(self, plan: _Plan):
        self.p = plan

    # -- setup
    def _setup(self) -> None:
        p = self.p
        dev = p.dev
        model = p.model
        meta = model.meta
        g = meta["grid"]
        dims = p.dims
        dpatch, dbatch = default_patch_batch(dev, dims)
        # extents of the data (YX of slices for dims=2)
        extents = np.zeros(dims, np.int64)
        for pr in p.pairs:
            extents = np.maximum(extents, pr.image.shape[-dims:])
        if p.patch is None:
            patch = tuple(int(min(d, round_up(e, g))) for d, e in zip(dpatch, extents))
            if dims == 2 and patch[0] != patch[1]:  # keep it square where possible (rotations)
                s = max(patch)
                patch = (s, s)
        else:
            patch = tuple(round_up(v, g) for v in p.patch)
        batch = dbatch if p.batch_size == "auto" else int(p.batch_size)
        if p.batch_size == "auto" and p.patch is None:
            # smaller images than the default patch: keep the pixels per batch
            batch = max(1, int(round(dbatch * np.prod(dpatch) / np.prod(patch))))
            batch = min(batch, 4 * dbatch)
        self.patch, self.batch = patch, batch
        check_training_memory(batch, patch, meta["base_channels"], p.classes,
                              available_memory(dev), describe_device(dev))
        self.reg_offsets = neighbour_offsets(dims, REG_DILATIONS)
        self.reg_weight = REG_WEIGHT if dims == 2 else REG_WEIGHT_3D
        # crop with margin in the YX plane for rotations/scaling (difference even: exact 90-deg)
        if p.augment is not None:
            margin = [0] * dims
            margin[-1] = margin[-2] = 2 * (patch[-1] // 4)
            crop = tuple(a + m for a, m in zip(patch, margin))
        else:
            crop = patch
        self.crop = crop
        norm = meta.get("normalization", {})
        rng = np.random.default_rng(p.seed)
        # context around the paint: a crop centred on any painted pixel (plus jitter) fits
        context = tuple(c // 2 + q // 4 + 1 for c, q in zip(crop, patch))
        vols = build_volumes(p.pairs, dims=dims, crop=crop, norm=norm, context=context)
        block = tuple(max(1, v // 2) for v in patch)
        if p.val_pairs is None:
            split_validation(vols, fraction=p.val_fraction, block=block, classes=p.classes, rng=rng)
            val_vols = vols
        else:
            val_vols = build_volumes(p.val_pairs, dims=dims, crop=crop, norm=norm, context=context)
            for v in val_vols:
                v.val, v.train = v.train, np.zeros_like(v.train)
        counts = find_centres(vols, p.classes, rng)
        self.train_pixels = int(counts[:, 1:].sum())
        if sum(counts[:, c].sum() > 0 for c in range(1, p.classes + 1)) < 2:
            raise UserError("fewer than two classes keep paint for training after the validation split")
        # where the data lives: on the GPU when it fits in a quarter of the free memory
        nbytes = sum(v.image.nbytes + v.train.nbytes * 2 for v in vols)
        if dev.type == "cuda" and nbytes < 0.25 * available_memory(dev):
            data_dev = dev
        else:
            data_dev = torch.device("cpu")
        self.aug_dev = dev if dev.type in ("cuda", "cpu") else torch.device("cpu")
        if data_dev.type == "cpu":
            self.aug_dev = torch.device("cpu") if dev.type != "cuda" else dev
        self.sampler = PatchSampler(vols, counts, dims=dims, patch=patch, crop=crop,
                                    device=self.aug_dev, data_device=data_dev, augment=p.augment,
                                    seed=p.seed)
        max_crops = 128 if dev.type == "cuda" else 32
        self.valset: ValSet | None = build_valset(val_vols, patch=patch, block=block,
                                                  max_crops=max_crops, rng=rng,
                                                  data_device=data_dev)
        # keep_better: every painted pixel (training + held out), and the starting weights
        self.paintset, self.start_state = None, None
        same_head = p.continued or (p.init_source is not None and not getattr(p.model, "_new_head", False))
        if p.keep_better and same_head:
            every = [Volume(v.image, v.train, v.train if v.val is None else np.where(v.val > 0, v.val, v.train))
                     for v in vols]
            self.paintset = build_valset(every, patch=patch, block=block, max_crops=2 * max_crops,
                                         rng=np.random.default_rng(p.seed + 7), data_device=data_dev)
            self.start_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        self.val_pixels = 0
        for v in val_vols:
            if v.val is not None:
                self.val_pixels += int(np.count_nonzero(v.val))
        # model, optimiser, precision
        self.amp = autocast_dtype(dev)
        # channels-last: faster with oneDNN on CPU and tensor cores on CUDA (2D; measured)
        self.channels_last = dev.type in ("cuda", "cpu") and dims == 2
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model.to(dev)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        model.train()
        self.opt = _adamw(list(model.parameters()), lr=p.lr, weight_decay=p.weight_decay)
        self.scaler = (torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None)
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp]

    # -- helpers
    def _fraction(self, step: int, elapsed: float) -> float:
        p = self.p
        f = 0.0
        if p.steps:
            f = max(f, step / p.steps)
        if p.time_limit and math.isfinite(p.time_limit):
            f = max(f, elapsed / p.time_limit)
        return min(1.0, f)

    def _lr(self, step: int, frac: float) -> float:
        p = self.p
        warm = min(1.0, (step + 1) / WARMUP_STEPS)
        unbounded = p.steps is None and not math.isfinite(p.time_limit or math.inf)
        decay = 1.0 if unbounded else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return p.lr * warm * decay

    def _stopped(self) -> bool:
        return self.p.stop is not None and self.p.stop.is_set()

    def _to_dev(self, x: torch.Tensor) -> torch.Tensor:
        if x.device != self.p.dev:
            x = x.to(self.p.dev, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _validate(self, step: int, vs: ValSet | None = None) -> Validation | None:
        vs = self.valset if vs is None else vs
        model = self.p.model
        k = self.p.classes
        model.eval()
        conf = torch.zeros(k, k, dtype=torch.long, device=self.p.dev)
        loss_sum = torch.zeros((), device=self.p.dev)
        agree = torch.zeros(k, k, dtype=torch.long, device=self.p.dev)
        unsure = torch.zeros((), dtype=torch.long, device=self.p.dev)
        total_px = 0
        n = vs.x.shape[0]
        bs = max(1, self.batch * 2)
        try:
            with torch.no_grad():
                for s in range(0, n, bs):
                    if self._stopped():
                        return None
                    x = self._to_dev(vs.x[s:s + bs])
                    y = vs.y[s:s + bs].to(self.p.dev, non_blocking=True)
                    with torch.autocast(self.p.dev.type, dtype=self.amp, enabled=self.amp is not None):
                        logits = model(x)
                    loss_sum += sparse_loss(logits, y, dice_weight=self.p.dice_weight) * x.shape[0]
                    conf += confusion_counts(logits.float(), y)
                    # stability over all pixels: the prediction of the mirrored crop, mirrored back
                    flip = tuple(range(2, x.ndim))
                    with torch.autocast(self.p.dev.type, dtype=self.amp, enabled=self.amp is not None):
                        logits_f = model(torch.flip(x, flip)).flip(flip)
                    a, b = logits.float().argmax(1), logits_f.float().argmax(1)
                    agree += torch.bincount((a * k + b).reshape(-1), minlength=k * k).reshape(k, k)
                    top = torch.softmax(logits.float(), 1).amax(1)
                    unsure += (top < UNCERTAIN_BELOW).sum()
                    total_px += top.numel()
        finally:
            model.train()
        c = conf.cpu().numpy()
        loss = float(loss_sum) / n
        iou, dice = {}, {}
        for i in range(k):
            tp = int(c[i, i])
            fn = int(c[i].sum() - tp)
            fp = int(c[:, i].sum() - tp)
            if tp + fn == 0:
                continue  # class not in the validation paint
            iou[i + 1] = tp / (tp + fp + fn)
            dice[i + 1] = 2 * tp / (2 * tp + fp + fn)
        mi = float(np.mean(list(iou.values()))) if iou else float("nan")
        md = float(np.mean(list(dice.values()))) if dice else float("nan")
        ag = agree.cpu().numpy()
        inter = np.diag(ag).astype(np.float64)
        union = ag.sum(0) + ag.sum(1) - inter
        agreement = float(np.mean(inter[union > 0] / union[union > 0])) if (union > 0).any() else float("nan")
        uncertain = float(unsure) / max(1, total_px)
        return Validation(step, loss, iou, dice, mi, md, agreement, uncertain)

    def _preview(self, step: int) -> Preview | None:
        from .predict import PredictDone, iter_predict

        try:
            res = self.p.preview()
        except Exception as e:  # the caller's callable: never kill training for it
            warnings.warn(f"preview callable failed: {e}", RuntimeWarning)
            return None
        if res is None:
            return None
        key, image = res
        tile = "auto" if self.p.dev.type == "cuda" else 256
        gen = iter_predict(self.p.model, image, tile=tile, device=self.p.dev)
        try:
            for ev in gen:
                if self._stopped():
                    return None
                if isinstance(ev, PredictDone):
                    return Preview(step, ev.probabilities, key)
        except (ValueError, TypeError) as e:
            warnings.warn(f"preview image cannot be predicted: {e}", RuntimeWarning)
        finally:
            gen.close()
        return None

    def _provenance(self, step: int, elapsed: float, reason: str | None, val: Validation | None) -> dict:
        p = self.p
        old = p.model.meta.get("training") or None
        history = []
        if old:
            history = list(old.get("history", []))
            history.append({k: old.get(k) for k in ("date", "steps", "time_s", "device", "init", "stop_reason")})
        prev_total = (old or {}).get("total_steps", 0) if p.continued or p.init_source else 0
        rec = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dims": p.dims,
            "classes": p.classes,
            "data": p.painted["images"],
            "val_images": len(p.val_pairs) if p.val_pairs else 0,
            "train_pixels": self.train_pixels,
            "val_pixels": self.val_pixels,
            "unpainted_is_background": p.unpainted_is_background,
            "steps": step,
            "total_steps": int(prev_total or 0) + step,
            "time_s": round(elapsed, 2),
            "device": describe_device(p.dev),
            "precision": self.precision,
            "lr": p.lr,
            "patch": list(self.patch),
            "batch_size": self.batch,
            "augment": p.augment is not None,
            "threads": getattr(getattr(self, "tuner", None), "choice", None),
            "seed": p.seed,
            "init": "continued" if p.continued else p.init_source,
            "stop_reason": reason,
            "validation": None if val is None else {
                "step": val.step, "loss": val.loss, "mean_iou": val.mean_iou,
                "mean_dice": val.mean_dice, "iou": {str(k): v for k, v in val.iou.items()},
                "dice": {str(k): v for k, v in val.dice.items()}},
            "history": history[-20:],
        }
        return rec

    def _save(self, step: int, elapsed: float, reason: str | None, val: Validation | None) -> None:
        """A mid-run checkpoint (atomic); the model's own record is set at the end."""
        from .io import save_model

        model = self.p.model
        old_training = model.meta.get("training")
        model.meta["training"] = self._provenance(step, elapsed, reason, val)
        try:
            save_model(model, self.p.checkpoint)
        finally:
            model.meta["training"] = old_training

    def _recalibrate_bn(self, budget_s: float, max_batches: int = 50) -> int:
        """Re-estimate BatchNorm running statistics with the final weights on unaugmented
        patches from uniformly random places (a cumulative average, not the last few noisy
        class-balanced batches that momentum 0.1 remembers). Returns the batches used."""
        model = self.p.model
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not bns or not BN_RECALIBRATE:
            return 0
        saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(),
                  m.num_batches_tracked.clone()) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        t0 = time.perf_counter()
        n = 0
        try:
            with torch.no_grad():
                while n < max_batches and (n < 3 or time.perf_counter() - t0 < budget_s):
                    if self._stopped() and n >= 1:
                        break
                    x = self._to_dev(self.sampler.uniform_batch(max(2, self.batch)))
                    with torch.autocast(self.p.dev.type, dtype=self.amp, enabled=self.amp is not None):
                        model(x)
                    n += 1
        finally:
            for m, (mom, rm, rv, nb) in zip(bns, saved):
                m.momentum = mom
                if n == 0:
                    m.running_mean.copy_(rm)
                    m.running_var.copy_(rv)
                    m.num_batches_tracked.copy_(nb)
        return n

    def _keep_better(self, step: int) -> tuple[bool, str]:
        """Score the trained and the starting weights on all the paint; restore the starting
        ones if they fit it better. Returns (kept the previous weights, a message)."""
        model = self.p.model
        new = self._validate(step, self.paintset)
        if new is None:
            return False, ""
        trained = {k: t.detach().clone() for k, t in model.state_dict().items()}
        model.load_state_dict(self.start_state)
        old = self._validate(step, self.paintset)
        if old is not None and old.mean_iou > new.mean_iou + 1e-3:
            return True, (f"kept the previous model: it fits the painted strokes better "
                          f"(IoU {old.mean_iou:.3f} against {new.mean_iou:.3f} for the new weights)")
        model.load_state_dict(trained)
        if old is None:
            return False, ""
        return False, (f"the new weights fit the painted strokes at least as well as the previous "
                       f"model (IoU {new.mean_iou:.3f} against {old.mean_iou:.3f})")

    def _finish_model(self) -> None:
        model = self.p.model
        model.eval()
        model.to("cpu")
        model.to(memory_format=torch.contiguous_format)

    # -- the generator
    def run(self) -> Iterator:
        p = self.p
        self._setup()
        model = p.model
        dev = p.dev
        yield TrainStarted(device=describe_device(dev), precision=self.precision, dims=p.dims,
                           patch=self.patch, batch_size=self.batch, total_steps=p.steps,
                           time_limit=p.time_limit, train_pixels=self.train_pixels,
                           val_pixels=self.val_pixels, classes=p.classes)
        t0 = time.perf_counter()
        step = 0
        reason, message = None, ""
        last_val: Validation | None = None
        good_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        loss_acc = torch.zeros((), device=dev)
        n_acc = 0
        last_emit = t0
        emit_step = 0
        rate = 0.0
        val_cost = 0.0
        next_val = t0 + VAL_MIN_INTERVAL
        next_ckpt = t0 + p.checkpoint_every
        next_preview = t0 + min(p.preview_every, 2.0)
        closed = False
        params = [q for q in model.parameters()]
        ema = [q.detach().clone() for q in params] if EMA_DECAY > 0 else None
        tuner = ThreadTuner(dev.type == "cpu" and os.environ.get("NAPARI_UNET_NO_THREAD_TUNING") is None)
        self.tuner = tuner
        try:
            while True:
                now = time.perf_counter()
                if self._stopped():
                    reason = "stopped"
                    break
                if p.steps is not None and step >= p.steps:
                    reason = "steps"
                    break
                if p.time_limit is not None and now - t0 >= p.time_limit:
                    reason = "time"
                    break
                frac = self._fraction(step, now - t0)
                lr = self._lr(step, frac)
                for grp in self.opt.param_groups:
                    grp["lr"] = lr
                t_step = time.perf_counter()
                try:
                    x, y = self.sampler.batch(self.batch)
                    x = self._to_dev(x)
                    y = y.to(dev, non_blocking=True)
                    with torch.autocast(dev.type, dtype=self.amp, enabled=self.amp is not None):
                        logits = model(x)
                    loss = sparse_loss(logits, y, dice_weight=p.dice_weight, entropy_weight=ENTROPY_WEIGHT)
                    if self.reg_weight > 0:
                        ramp = 1.0 if (self.start_state is not None or REG_RAMP <= 0) else \
                            min(1.0, max(frac / REG_RAMP, step / (REG_RAMP * 1600)))
                        loss = loss + (self.reg_weight * ramp) * edge_aware_potts(
                            torch.softmax(logits.float(), 1), x, self.reg_offsets)
                    self.opt.zero_grad(set_to_none=True)
                    if self.scaler is not None:
                        self.scaler.scale(loss).backward()
                        self.scaler.step(self.opt)
                        self.scaler.update()
                    else:
                        loss.backward()
                        self.opt.step()
                except torch.OutOfMemoryError as e:  # (CUDA) halve the batch and go on
                    x = y = logits = loss = None
                    self.opt.zero_grad(set_to_none=True)
                    if self.batch <= 1:
                        first = str(e).splitlines()[0] if str(e) else "out of memory"
                        raise MemoryError(
                            f"out of memory on {dev} while training with one patch of "
                            f"{'x'.join(map(str, self.patch))} per step: {first}. Use a smaller "
                            "patch or model, free memory on the device, or train on the CPU.") from e
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    self.batch = max(1, self.batch // 2)
                    warnings.warn(f"out of memory on {dev}; continuing with batch size {self.batch}")
                    continue
                if ema is not None:  # on the device, no host sync
                    # a fresh model: a short warm-up of the average; a model being continued
                    # keeps its weights' weight from the first step (a Stop after a few steps
                    # leaves it nearly unchanged instead of swinging)
                    d = EMA_DECAY if self.start_state is not None else min(EMA_DECAY, (1 + step) / (10 + step))
                    with torch.no_grad():
                        torch._foreach_lerp_(ema, [q.detach() for q in params], 1.0 - d)
                loss_acc += loss.detach()
                n_acc += 1
                step += 1
                now = time.perf_counter()
                tuner.record(now - t_step, now)
                elapsed = now - t0
                last = ((p.steps is not None and step >= p.steps) or
                        (p.time_limit is not None and elapsed >= p.time_limit))
                if now - last_emit >= EMIT_INTERVAL or last or step == 1:
                    lv = float(loss_acc) / n_acc   # the one host sync, ~10/s at most
                    if not math.isfinite(lv):
                        model.load_state_dict(good_state)
                        reason = "nan"
                        message = (f"the loss became {lv} at step {step} (learning rate {p.lr:g} too "
                                   "high, or bad values in the data?); stopped and kept the weights "
                                   f"of step {emit_step}")
                        step = emit_step
                        break
                    good_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    dt = now - last_emit
                    inst = (step - emit_step) / dt if dt > 0 else 0.0
                    rate = inst if emit_step == 0 or rate == 0 else 0.7 * rate + 0.3 * inst
                    last_emit, emit_step = now, step
                    loss_acc = torch.zeros((), device=dev)
                    n_acc = 0
                    yield TrainStep(step=step, loss=lv, lr=lr, steps_per_s=rate, elapsed=elapsed,
                                    fraction=self._fraction(step, elapsed))
                if last:
                    continue  # ends at the top of the loop with the right reason
                now = time.perf_counter()
                if self.valset is not None and now >= next_val:
                    tv = time.perf_counter()
                    v = self._validate(step)
                    val_cost = time.perf_counter() - tv
                    next_val = time.perf_counter() + max(VAL_MIN_INTERVAL, val_cost / VAL_MAX_SHARE)
                    if v is not None:
                        last_val = v
                        yield v
                if p.preview is not None and time.perf_counter() >= next_preview:
                    pv = self._preview(step)
                    next_preview = time.perf_counter() + p.preview_every
                    if pv is not None:
                        yield pv
                if p.checkpoint is not None and time.perf_counter() >= next_ckpt:
                    self._save(step, time.perf_counter() - t0, None, last_val)
                    next_ckpt = time.perf_counter() + p.checkpoint_every
                    yield Checkpoint(step, str(p.checkpoint))
        except GeneratorExit:
            closed = True
            reason = "stopped"
            raise
        except BaseException:
            # keep the last good weights in the caller's model, then let the error through
            try:
                model.load_state_dict(good_state)
            except Exception:  # pragma: no cover
                pass
            reason = "error"
            raise
        finally:
            tuner.restore()
            elapsed = time.perf_counter() - t0
            if closed or reason == "error":
                self._finish_model()
                model.meta["training"] = self._provenance(step, elapsed, reason, last_val)
                if p.checkpoint is not None and step > 0:
                    try:
                        from .io import save_model

                        save_model(model, p.checkpoint)
                    except Exception as e:  # pragma: no cover
                        warnings.warn(f"could not write the checkpoint {p.checkpoint}: {e}")
        # normal end: BatchNorm statistics, final validation, model on the CPU, checkpoint
        if reason in ("steps", "time", "stopped") and step > 0:
            if ema is not None:  # averaged weights generalise better than the last step's
                with torch.no_grad():
                    for q, e in zip(params, ema):
                        q.copy_(e)
            self._recalibrate_bn(0.3 if reason == "stopped" else max(0.5, 0.02 * (time.perf_counter() - t0)))
        kept_previous = False
        if self.paintset is not None and step > 0 and reason in ("steps", "time", "stopped"):
            kept_previous, compare = self._keep_better(step)
            if compare:
                message = compare
        if self.valset is not None and reason in ("steps", "time") and step > 0 \
                and not self._stopped():
            v = self._validate(step)
            if v is not None:
                last_val = v
                try:
                    yield v
                except GeneratorExit:  # closed at the very end: still leave a finished model
                    self._finish_model()
                    model.meta["training"] = self._provenance(step, time.perf_counter() - t0,
                                                              reason, last_val)
                    if p.checkpoint is not None:
                        from .io import save_model

                        save_model(model, p.checkpoint)
                    raise
        elapsed = time.perf_counter() - t0
        self._finish_model()
        model.meta["training"] = self._provenance(step, elapsed, reason, last_val)
        if p.checkpoint is not None:
            from .io import save_model

            save_model(model, p.checkpoint)
            yield Checkpoint(step, str(p.checkpoint))
        done = {"steps": f"trained {step} steps in {elapsed:.1f} s",
                "time": f"time limit reached after {step} steps ({elapsed:.1f} s)",
                "stopped": f"stopped after {step} steps ({elapsed:.1f} s)"}.get(reason, "")
        if not message:
            message = done
        elif reason != "nan":
            message = f"{done}; {message}"
        yield TrainFinished(reason=reason, step=step, model=model, message=message,
                            kept_previous=kept_previous)
