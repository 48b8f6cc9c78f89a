"""The training loop: one step after another until the step or time budget, a stop or a
close, with throttled progress events, validation, previews and checkpoints, and one finish
path (:meth:`ProvenanceMixin._finalise`). Public entry points: :func:`iter_train`, :func:`train`."""
from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from typing import Any, Iterator

import torch

from ..device import describe_device
from ..events import Checkpoint, TrainFinished, TrainStarted, TrainStep, Validation
from ..losses import anchor_kl, edge_aware_potts
from ..model import UNet
from ..pooling import describe_pooling
from .config import TrainConfig, _pkg, options_signature
from .provenance import ProvenanceMixin
from .setup import Setup, _Plan, make_plan
from .tuning import ThreadTuner
from .validation import ValidationMixin

__all__ = ["iter_train", "train"]


class _Trainer(Setup, ValidationMixin, ProvenanceMixin):
    def __init__(self, plan: _Plan):
        self.p = plan

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
        warm = min(1.0, (step + 1) / _pkg().WARMUP_STEPS)
        unbounded = p.steps is None and not math.isfinite(p.time_limit or math.inf)
        decay = 1.0 if unbounded else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
        return p.lr * warm * decay

    def _stopped(self) -> bool:
        return self.p.stop is not None and self.p.stop.is_set()

    def _to_dev(self, x: torch.Tensor) -> torch.Tensor:
        if x.device != self.p.dev:
            x = x.to(self.p.dev, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=self.memory_format)
        return x

    # -- the generator
    def run(self) -> Iterator:
        p = self.p
        try:  # set-up undoes a continued head's threshold: an error or a close before the loop puts it back
            self._setup()
            yield TrainStarted(device=describe_device(p.dev), precision=self.precision, dims=p.dims,
                               patch=self.patch, batch_size=self.batch, total_steps=p.steps,
                               time_limit=p.time_limit, train_pixels=self.train_pixels,
                               val_pixels=self.val_pixels, classes=p.classes,
                               pooling=describe_pooling(p.model.meta), advice=p.advice)
        except BaseException:
            self._reapply_prior_threshold()
            raise
        model = p.model
        dev = p.dev
        t0 = time.perf_counter()
        step = 0
        reason, message, detail = None, "", ""
        last_val: Validation | None = None
        good_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        loss_acc = torch.zeros((), device=dev)
        n_acc = 0
        last_emit = t0
        emit_step = 0
        rate = 0.0
        val_cost = 0.0
        next_val = t0 + _pkg().VAL_MIN_INTERVAL
        next_maps = 1 if p.continued else _pkg().READ_MAPS_AT
        next_ckpt = t0 + p.checkpoint_every
        next_preview = t0 + min(p.preview_every, 2.0)
        closed = False
        params = [q for q in model.parameters()]
        ema = [q.detach().clone() for q in params] if _pkg().EMA_DECAY > 0 else None
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
                    loss = _pkg().sparse_loss(logits, y, dice_weight=p.dice_weight, entropy_weight=_pkg().ENTROPY_WEIGHT,
                                            balanced=self.balanced)
                    if self.reg_weight > 0:  # the regulariser and the appearance prior (losses)
                        ramp = 1.0 if (self.start_state is not None or _pkg().REG_RAMP <= 0) else \
                            min(1.0, max(frac / _pkg().REG_RAMP, step / (_pkg().REG_RAMP * 1600)))
                        probs = torch.softmax(logits.float(), 1)
                        offs = self.reg_offsets_late if 0 < _pkg().REG_LONG_STEPS <= step else self.reg_offsets
                        potts = (self.potts_weight * ramp) * edge_aware_potts(probs, x, offs) \
                            if self.potts_weight and self.readings.swell_seen is None else 0.0   # (map_readings.py)
                        loss = loss + potts + (
                            0.0 if self.appearance is None else _pkg().APPEARANCE_WEIGHT * ramp * self.appearance(probs, x, y))
                    if self.anchor is not None:
                        with torch.no_grad(), torch.autocast(dev.type, dtype=self.amp, enabled=self.amp is not None):
                            start = self.anchor(x)
                        loss = loss + _pkg().ANCHOR_WEIGHT * anchor_kl(logits, start, y)
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
                    d = _pkg().EMA_DECAY if self.start_state is not None else min(_pkg().EMA_DECAY, (1 + step) / (10 + step))
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
                if now - last_emit >= _pkg().EMIT_INTERVAL or last or step == 1:
                    lv = float(loss_acc) / n_acc   # the one host sync, ~10/s at most
                    if not math.isfinite(lv):
                        model.load_state_dict(good_state)
                        reason = "nan"
                        detail = f"stopped and kept the weights of step {emit_step}"
                        message = (f"the loss became {lv} at step {step} (learning rate {p.lr:g} too "
                                   f"high, or bad values in the data?); {detail}")
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
                if step >= next_maps:   # a halo, or objects over what looks like background (map_readings.py)
                    next_maps = self._read_maps(step)
                now = time.perf_counter()
                if self.valset is not None and now >= next_val:
                    tv = time.perf_counter()
                    v = self._validate(step)
                    val_cost = time.perf_counter() - tv
                    next_val = time.perf_counter() + max(_pkg().VAL_MIN_INTERVAL, val_cost / _pkg().VAL_MAX_SHARE)
                    if v is not None:
                        last_val = v
                        yield v
                if p.preview is not None and time.perf_counter() >= next_preview:
                    tp = time.perf_counter()
                    pv = self._preview(step)
                    cost = time.perf_counter() - tp
                    wait = cost * _pkg().PREVIEW_SPACING if cost > _pkg().PREVIEW_FREE_S else 0.0
                    next_preview = time.perf_counter() + max(p.preview_every, wait)
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
                self._reapply_prior_threshold()
                self._finalise(step, elapsed, reason, last_val, save=step > 0, quiet=True)
        # normal end: BatchNorm statistics, final validation, model on the CPU, checkpoint
        if reason in ("steps", "time", "stopped") and step > 0:
            if ema is not None:  # averaged weights generalise better than the last step's
                with torch.no_grad():
                    for q, e in zip(params, ema):
                        q.copy_(e)
            self._recalibrate_bn(reason, step, time.perf_counter() - t0)
            self._calibrate_edges()
        else:
            self._reapply_prior_threshold()
        kept_previous, paint_iou = False, None
        if self.paintset is not None and step > 0 and reason in ("steps", "time", "stopped"):
            kept_previous, compare, paint_iou = self._keep_better(step)
            if kept_previous:  # the kept weights carry their own threshold, not this run's
                self.edge_threshold = self.prior_threshold
                model.meta["edge_threshold"] = self.prior_threshold
            if compare:
                message = detail = compare
        ended = step > 0 and reason in ("steps", "time", "stopped")
        kinds = self._decide_kinds() if ended and not kept_previous else None
        if kinds:  # the status line says it too: it changes what Predict does by default
            message = f"{message}; {kinds}" if message else kinds
            detail = f"{detail}; {kinds}" if detail else kinds
        for note in self._end_notes(ended, kept_previous):   # what the run did with the boundary
            message = f"{message}; {note}" if message else note
        last = []   # the final validation, and the preview of the weights handed back (averaged,
        # edge-calibrated, or the previous ones keep-better kept), not of the last step's
        if self.valset is not None and reason in ("steps", "time") and step > 0 \
                and not self._stopped():
            v = self._validate(step)
            if v is not None:
                last_val = v
                last.append(v)
        pv = self._preview(step, final=True) if p.preview is not None and ended else None
        if pv is not None:
            last.append(pv)
        for ev in last:
            try:
                yield ev
            except GeneratorExit:  # closed at the very end: still leave a finished model
                self._finalise(step, time.perf_counter() - t0, reason, last_val, kept_previous=kept_previous)
                raise
        elapsed = time.perf_counter() - t0
        if self._finalise(step, elapsed, reason, last_val, kept_previous=kept_previous):
            yield Checkpoint(step, str(p.checkpoint))
        discarded = self._discarded_model() if kept_previous else None
        done = {"steps": f"trained {step} steps in {elapsed:.1f} s",
                "time": f"time limit reached after {step} steps ({elapsed:.1f} s)",
                "stopped": f"stopped after {step} steps ({elapsed:.1f} s)"}.get(reason, "")
        if not message:
            message = done
        elif reason != "nan":
            message = f"{done}; {message}"
        yield TrainFinished(reason=reason, step=step, model=model, message=message,
                            kept_previous=kept_previous, detail=detail, paint_iou=paint_iou,
                            discarded=discarded)


# ----------------------------------------------------------------------------- public API

def iter_train(images: Any, labels: Any, config: TrainConfig | None = None, **options: Any) -> Iterator:
    """Train a U-Net on painted labels; returns a generator of progress events.

    The options (keyword only, each with a default) are the fields of :class:`TrainConfig`;
    ``config=`` passes them as one object (keyword options then override its fields).

    Events: :class:`TrainStarted` first, then :class:`TrainStep` (every step, at most ~10/s),
    :class:`Validation`, :class:`Preview`, :class:`Checkpoint`, and :class:`TrainFinished` last
    (``reason`` "steps", "time", "stopped" or "nan"; an error is raised instead; ``model`` the
    trained model, on the CPU in eval mode).

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
    weights every ``preview_every`` seconds, and once more at the end (after a Stop too) with
    the weights the run hands back, so the last Preview shows the model kept.
    ``keep_better``: when continuing (``model=``) or fine-tuning with the same classes
    (``init=``), score the starting and the trained weights on all the paint (training and
    held-out strokes, new corrections included) at the end and keep the starting weights if
    they fit it better (``TrainFinished.kept_previous``), so a correction round never makes
    the model worse on what was painted. ``spacing``: the voxel
    size (``dims`` numbers, Z, Y, X): a new model pools an axis only while its spacing is below
    twice the finest (:mod:`napari_unet.core.pooling`), and the default patch is thinner along a
    coarse axis (same voxel count); a continued or fine-tuned model keeps its own pooling.

    Args:
        images: an array or a list of arrays (see above).
        labels: one labels array per image (0 = unlabeled, 1..K = classes).
        config: a :class:`TrainConfig`; ``**options`` override its fields.

    Returns:
        A generator of events; closing it stops training (the model keeps the last good
        weights and its training record).

    Raises:
        ValueError / TypeError: a bad option or input (raised here, before any work), naming it.
        MemoryError: the device runs out of memory even with one patch per step (while iterating).
    """
    if config is None:
        cfg = TrainConfig.from_options("iter_train", **options)
    else:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        TrainConfig.from_options("iter_train", **options)  # unknown names: TypeError
        cfg = dataclasses.replace(config, **options)
    plan = make_plan(images, labels, cfg)
    return _Trainer(plan).run()


iter_train.__signature__ = options_signature(iter_train)


def train(images: Any, labels: Any, config: TrainConfig | None = None, **options: Any) -> UNet:
    """Run :func:`iter_train` to the end and return the trained model (CPU, eval mode).

    Takes the same arguments. A NaN loss keeps the last good weights and warns.

    Args:
        images, labels, config, **options: as for :func:`iter_train`.

    Returns:
        The trained model (``UNet``), on the CPU in eval mode, its ``meta["training"]`` set.

    Raises:
        ValueError / TypeError: a bad option or input, naming it.
        MemoryError: see :func:`iter_train`.
    """
    finished = None
    for ev in iter_train(images, labels, config, **options):
        if isinstance(ev, TrainFinished):
            finished = ev
    if finished.reason == "nan":
        warnings.warn(finished.message, RuntimeWarning, stacklevel=2)
    return finished.model


train.__signature__ = options_signature(train)
