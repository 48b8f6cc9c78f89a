"""Set-up of a training run: the plan (checked data, classes and the model to train) made
eagerly when ``iter_train`` is called, then, inside the generator, the regions, sampler,
validation crops, model on the device and optimizer (:class:`Setup`, mixed into the trainer)."""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..augment import AugmentConfig
from ..data import PatchSampler, ValSet, Volume, build_valset, build_volumes, check_pairs, find_centres, \
    round_up, split_validation
from ..device import autocast_dtype, available_memory, describe_device
from ..errors import UserError, UserTypeError, option
from ..labels import scarce_paint
from ..limits import check_class_count, check_training_memory
from ..losses import AppearancePrior, neighbour_offsets
from .calibration import MIN_UNPAINTED, NO_POLARITY, carried_threshold, shift_head
from ..model import UNet, build_model, model_meta, replace_head
from .config import TrainConfig, _check_int, _patch_arg, _pkg, default_architecture, default_lr, default_patch_batch
from .map_readings import MapReadings
from .provenance import painted_record, renamed_classes
from .tuning import _adamw


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
    spacing: tuple[float, ...] | None = None     # the voxel size (dims=3): pooling and patch per axis
    advice: str = ""   # a note on the paint when training starts (labels.scarce_paint)


def uses_channels_last(dev: torch.device, dims: int) -> bool:
    """Whether training keeps the model and its batches channels-last: faster with oneDNN on a
    CPU and tensor cores on CUDA in 2D (measured), and channels-last-3d with oneDNN on a CPU
    (``CHANNELS_LAST_3D_CPU``)."""
    return (dev.type in ("cuda", "cpu") and dims == 2) or (
        dev.type == "cpu" and dims == 3 and _pkg().CHANNELS_LAST_3D_CPU)


def _load_init(init: Any) -> tuple[UNet, str]:
    if isinstance(init, (str, os.PathLike)):
        from ..io import load_model

        return load_model(init), str(init)
    if isinstance(init, torch.nn.Module):
        model_meta(init)
        return copy.deepcopy(init), "model object"
    raise UserTypeError(f"init must be a model file path or a napari-unet model, got {type(init).__name__}")


def make_plan(images: Any, labels: Any, cfg: TrainConfig) -> _Plan:
    """Check the options (:meth:`TrainConfig.checked`) and the data, and pick the classes and
    the model to train; raises ValueError/TypeError naming the problem."""
    cfg = cfg.checked()
    dims, model, init, classes, class_names = cfg.dims, cfg.model, cfg.init, cfg.classes, cfg.class_names
    base_channels, depth, channel_axis, seed = cfg.base_channels, cfg.depth, cfg.channel_axis, cfg.seed
    val_images, val_labels = cfg.val_images, cfg.val_labels
    unpainted_is_background, patch, dev = cfg.unpainted_is_background, cfg.patch, cfg.device

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
    from ..pooling import check_spacing

    spacing = check_spacing(cfg.spacing, dims)

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
    continued, renamed = model is not None, ""
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
            renamed = renamed_classes(model.meta.get("class_names"), class_names)
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
                    from ..model import default_class_names

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
                                        d0 if depth is None else depth, class_names=class_names,
                                        spacing=spacing, stem=_pkg().STEM_3D if dims == 3 else _pkg().STEM_2D)
    return _Plan(pairs, val_pairs, dims, classes, the_model, init_source, continued, dev, cfg.steps,
                 cfg.time_limit, cfg.batch_size, patch_t, default_lr(cfg.lr, dims, continued or init is not None),
                 cfg.val_fraction, bool(unpainted_is_background), cfg.checkpoint, cfg.checkpoint_every, seed, cfg.stop,
                 cfg.preview, cfg.preview_every, cfg.augment, cfg.dice_weight, cfg.weight_decay,
                 painted_record(pairs), bool(cfg.keep_better), spacing,
                 "; ".join(filter(None, (renamed, scarce_paint({v: int(total[v]) for v in painted_values},
                                                               the_model.meta.get("class_names"))))))


class Setup:
    """The trainer's set-up (``self.p`` is the :class:`_Plan`)."""

    p: _Plan

    # -- setup
    def _setup(self) -> None:
        p = self.p
        dev = p.dev
        model = p.model
        meta = model.meta
        dims = p.dims
        from ..pooling import anisotropic_patch, axis_grid_halo

        grids = axis_grid_halo(meta, dims)[0]  # per axis: anisotropic models pool Z less
        dpatch, dbatch = default_patch_batch(dev, dims)
        dpatch = anisotropic_patch(dpatch, p.spacing, grids)  # thinner in a coarse Z
        # extents of the data (YX of slices for dims=2)
        extents = np.zeros(dims, np.int64)
        for pr in p.pairs:
            extents = np.maximum(extents, pr.image.shape[-dims:])
        if p.patch is None:
            patch = tuple(int(min(d, round_up(e, g))) for d, e, g in zip(dpatch, extents, grids))
            if dims == 2 and patch[0] != patch[1]:  # keep it square where possible (rotations)
                s = max(patch)
                patch = (s, s)
        else:
            patch = tuple(round_up(v, g) for v, g in zip(p.patch, grids))
        batch = dbatch if p.batch_size == "auto" else int(p.batch_size)
        if p.batch_size == "auto" and p.patch is None:
            # smaller images than the default patch: keep the pixels per batch
            batch = max(1, int(round(dbatch * np.prod(dpatch) / np.prod(patch))))
            batch = min(batch, 4 * dbatch)
        self.patch, self.batch = patch, batch
        check_training_memory(batch, patch, meta["base_channels"], p.classes,
                              available_memory(dev), describe_device(dev))
        self.reg_offsets = neighbour_offsets(dims, _pkg().REG_DILATIONS if dims == 2 else _pkg().REG_DILATIONS_3D)
        short = tuple(d for d in _pkg().REG_DILATIONS if d < max(_pkg().REG_DILATIONS))   # 2D, late (loop)
        self.reg_offsets_late = neighbour_offsets(2, short) if dims == 2 and short else self.reg_offsets
        w3 = _pkg().REG_WEIGHT_3D_STEM if meta.get("stem") else _pkg().REG_WEIGHT_3D   # (__init__)
        self.reg_weight = _pkg().REG_WEIGHT if dims == 2 else w3
        self.appearance = AppearancePrior(p.classes, meta["in_channels"], dev, gate=_pkg().APPEARANCE_GATE,
                                          contrast=_pkg().APPEARANCE_CONTRAST,
                                          confidence=_pkg().APPEARANCE_CONFIDENCE,
                                          margin=_pkg().APPEARANCE_MARGIN,
                                          gate_objects=_pkg().APPEARANCE_GATE_OBJECTS) \
            if _pkg().APPEARANCE_WEIGHT > 0 and self.reg_weight > 0 else None
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
        self.potts_weight = self.reg_weight if _paint_has_polarity(vols) else 0.0
        self.readings = MapReadings.for_run(self.appearance, self.potts_weight)   # (map_readings.py)
        if self.reg_weight > 0 and not self.potts_weight:   # said when training starts
            edges = dims == 2 and _pkg().EDGE_CALIBRATION and NO_POLARITY == "gradient"   # (calibration)
            note = NO_POLARITY_NOTE if edges else NO_POLARITY_NOTE_ALONE
            p.advice = "; ".join(filter(None, (p.advice, note)))
        counts = find_centres(vols, p.classes, rng)
        self.train_pixels = int(counts[:, 1:].sum())
        if sum(counts[:, c].sum() > 0 for c in range(1, p.classes + 1)) < 2:
            raise UserError("fewer than two classes keep paint for training after the validation split")
        # where the data lives: on the GPU when it fits in a quarter of the free memory
        nbytes = sum(v.image.nbytes + v.train.nbytes * 2 for v in vols)
        data_dev = dev if dev.type == "cuda" and nbytes < 0.25 * available_memory(dev) else torch.device("cpu")
        self.aug_dev = dev if dev.type in ("cuda", "cpu") else torch.device("cpu")
        if data_dev.type == "cpu":
            self.aug_dev = torch.device("cpu") if dev.type != "cuda" else dev
        # a dense mask trains on its class shares (DENSE_TRAINING; no gap to place a boundary in either)
        self.painted_px = sum(int(pr.counts[1:].sum()) for pr in p.pairs)   # (validation._dense_share too)
        self.dense = dense = self.painted_px >= (1 - MIN_UNPAINTED) * sum(pr.labels.size for pr in p.pairs)
        self.balanced = not (dense and _pkg().DENSE_TRAINING == "shares")   # the loss (loop, validation)
        self.sampler = PatchSampler(vols, counts, dims=dims, patch=patch, crop=crop,
                                    device=self.aug_dev, data_device=data_dev, augment=p.augment,
                                    seed=p.seed, by_share=0.0 if self.balanced else 1 - _pkg().DENSE_EVEN_SHARE)
        max_crops = 128 if dev.type == "cuda" else 32
        self.valset: ValSet | None = build_valset(val_vols, patch=patch, block=block,
                                                  max_crops=max_crops, rng=rng,
                                                  data_device=data_dev)
        # keep_better: every painted pixel (training + held out), and the starting weights
        self.paintset, self.start_state = None, None
        same_head = p.continued or (p.init_source is not None and not getattr(p.model, "_new_head", False))
        every = [Volume(v.image, v.train, v.train if v.val is None else np.where(v.val > 0, v.val, v.train))
                 for v in vols]

        def crops_around_paint() -> ValSet | None:
            return build_valset(every, patch=patch, block=block, max_crops=2 * max_crops,
                                rng=np.random.default_rng(p.seed + 7), data_device=data_dev)

        self.same_paint = False
        if p.keep_better and same_head:
            self.paintset = crops_around_paint()
            self.start_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            # nothing painted since the starting model was trained (same images, counts per class): a tie keeps it
            before = (model.meta.get("training") or {}).get("data")
            self.same_paint = before is not None and before == p.painted["images"]
        # a head that carries an edge calibration (calibration.py) trains from its trained bias:
        # the shift is undone here and chosen afresh at the end (the carried one the reference to
        # beat), so that shifts do not compound round after round (keep-better's starting weights keep theirs)
        self.prior_threshold = carried_threshold(model) if same_head else None
        self.threshold_chosen = False  # set once this run's threshold is decided (validation.py)
        if self.prior_threshold is not None:
            shift_head(model, 1.0 - self.prior_threshold)
        model.meta["edge_threshold"] = None
        # the end-of-run edge calibration (calibration.py) looks at crops around all of the paint
        self.calset = None
        # (stacks: not unless EDGE_CALIBRATION_STACKS; a 2D model on a stack's planes alike)
        stack = any(pr.labels.ndim == 3 for pr in p.pairs)
        if _pkg().EDGE_CALIBRATION and not dense and (_pkg().EDGE_CALIBRATION_STACKS or not stack):
            self.calset = self.paintset or crops_around_paint()
        # more than two classes: kinds of object or parts of one, judged at the end (validation.py)
        self.kindset = (self.calset or self.paintset or crops_around_paint()) if p.classes > 2 else None
        self.val_pixels = 0
        for v in val_vols:
            if v.val is not None:
                self.val_pixels += int(np.count_nonzero(v.val))
        # model, optimiser, precision
        self.amp = autocast_dtype(dev, training=True)
        self.channels_last = uses_channels_last(dev, dims)
        self.memory_format = torch.channels_last_3d if dims == 3 else torch.channels_last
        if dev.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model.to(dev)
        if self.channels_last:
            model.to(memory_format=self.memory_format)
        model.train()
        # continuing: a frozen copy of the starting model anchors the unpainted pixels (loop);
        # made here, on the model's device and in its layout (a copy made before the move stayed
        # on the CPU while a CUDA run fed it CUDA batches); in training mode like the model, so
        # BatchNorm normalises both alike (its running statistics are the copy's own, never used)
        self.anchor = None
        if same_head and _pkg().ANCHOR_WEIGHT > 0:
            self.anchor = copy.deepcopy(model).train().requires_grad_(False)
        self.opt = _adamw(list(model.parameters()), lr=p.lr, weight_decay=p.weight_decay)
        self.scaler = (torch.amp.GradScaler("cuda") if self.amp == torch.float16 else None)
        self.precision = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp]


_NO_POLARITY = ("the painted objects are neither brighter nor darker than the painted background "
                "(as in DIC): their boundaries come from the network{}; paint the background where "
                "it meets them")
NO_POLARITY_NOTE = _NO_POLARITY.format(" and, at the end, the strongest edges near them, not from "
                                       "their brightness")
NO_POLARITY_NOTE_ALONE = _NO_POLARITY.format(" alone, not from the image's edges")  # stacks; no fallback


def _paint_has_polarity(vols) -> bool:
    """Whether every painted object class is brighter or darker than the painted background in
    the normalised image's channel mean (:func:`calibration.class_contrasts`, at least
    ``calibration.MIN_POLARITY`` from 0.5; True without both kinds of paint, or with
    ``REG_NEEDS_POLARITY`` off). The edge-aware regulariser's affinities are the image's
    intensity differences; where a class is neither (DIC relief: lit on one side, shaded on the
    other, the inside at the background's grey), the edges that run along the shear show no
    difference, and the regulariser carried the objects across them into the background."""
    from .calibration import MIN_POLARITY, class_contrasts

    if not _pkg().REG_NEEDS_POLARITY or not vols:
        return True
    painted = [v.train > 0 for v in vols]           # only the painted pixels: stacks can be large
    img = np.concatenate([v.image[:, m].mean(0) for v, m in zip(vols, painted)])
    paint = np.concatenate([v.train[m] for v, m in zip(vols, painted)])
    return all(abs(v - 0.5) >= MIN_POLARITY for v in class_contrasts(img, paint))
