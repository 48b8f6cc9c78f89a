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
where bf16 is unsupported), channels-last (2D; 3D too on a CPU), cudnn benchmark, data and augmentation on the
GPU when they fit, and no host synchronisation except when an event is emitted (about 10/s).

Stopping: ``steps``/``time_limit`` (at least one is required; ``time_limit=math.inf`` trains
until stopped), the ``stop`` event (checked every step and between validation/preview
batches), or closing the generator. A NaN/inf loss restores the last good weights and ends
with ``reason="nan"``.

Layout: :mod:`.config` (:class:`TrainConfig`, per-device defaults), :mod:`.setup` (the plan made
eagerly, then data, sampler, validation crops, model and optimizer), :mod:`.loop` (the steps and
the one finish path), :mod:`.validation`, :mod:`.provenance`, :mod:`.tuning`. The tunables below
and ``sparse_loss`` are looked up here at run time: monkeypatch them on this package.
"""
from __future__ import annotations

import os

from ..losses import sparse_loss  # noqa: F401  (looked up here by the loop: tests patch it)

DEFAULT_LR = 2e-3  # a fresh 3D run's peak learning rate
# a fresh 2D run's: at 1e-3 the EM line cases gained 0.013 on average at 120 s and the worst of
# three seeds at 1,080 steps 0.610 -> 0.625; 3D at 250 steps lost (docs/quality.md, 31st session).
# The whole table: 13 of 15 pass (12 at 2e-3); BBBC039's fixed-step correction rounds swing by up
# to 0.007 (0.0014 at 2e-3; 32nd session)
DEFAULT_LR_2D = 1e-3
# lr when continuing (model=/init=), 2D or 3D: DEFAULT_LR times this (5e-4). At half, 280-step
# correction rounds on BBBC039 dropped by 0.001-0.003 in late rounds (3 seeds of 4); at a quarter,
# by under 0.0005 (1 seed of 4) with the same final IoU (docs/quality.md, eighth session)
FINETUNE_LR_FACTOR = float(os.environ.get("NAPARI_UNET_FINETUNE_LR", 0.25))
EMIT_INTERVAL = 0.1          # seconds between TrainStep events (each step when slower)
VAL_MIN_INTERVAL = 15.0      # seconds between validations (at least)
VAL_MAX_SHARE = 0.05         # validation may take at most this share of the time
# a live preview that costs more than PREVIEW_FREE_S (a big slice; a 3D model's slab: 16 x 1024 x
# 1024 takes ~23 s on 2 cores) waits PREVIEW_SPACING times its cost before the next one, so that
# later previews take at most about a quarter of the run (the first one's cost is not known
# before it runs: a 60-s run of that slab keeps 0.60 of its steps); cheaper ones follow
# ``preview_every``
PREVIEW_FREE_S = 0.2
PREVIEW_SPACING = 3.0
WARMUP_STEPS = 30
ENTROPY_WEIGHT = 0.0          # entropy minimisation on unpainted pixels (see losses)
# the returned weights: an exponential moving average (0: off). A fresh run's average warms up at
# (1 + step) / (10 + step), under 0.99 until step 890: its window is about the last ninth of the
# run (weights ~ step**8), so this value only acts in longer runs and in continued ones, which
# use it from the first step. Longer windows (weights ~ step**2 or ~ step) measured on EM, 600
# steps: dots +0.004 / +0.007, lines -0.005 / -0.013 (docs/quality.md, thirtieth session)
EMA_DECAY = 0.99
BN_RECALIBRATE = True        # re-estimate BatchNorm statistics at the end (see _recalibrate_bn)
UNCERTAIN_BELOW = 0.75       # a pixel is "uncertain" when its top class probability is below this
# the edge-aware regulariser on every pixel (losses.edge_aware_potts): its weight against the
# stroke loss, its ramp (share of the run over which it grows from 0, so the strokes set the
# classes first) and the neighbour distances it compares; environment overrides for benchmarks
REG_WEIGHT = float(os.environ.get("NAPARI_UNET_REG", 3.0))
# 3D: measured on the ovule stack (thin cell-boundary sheets, painted on every 6th plane) the
# full weight cost 0.06 IoU against none and 1.0 cost 0.017 (benchmarks/quality.py)
REG_WEIGHT_3D = float(os.environ.get("NAPARI_UNET_REG_3D", os.environ.get("NAPARI_UNET_REG", 1.0)))
# ... and for a 3D model with fixed filters in front (STEM_3D, below): 0.3, with the appearance
# prior. Without either (twenty-sixth to forty-second sessions), a real stack painted on one plane
# of five (CHO nuclei, brightness falling with depth) scored 0.562 / 0.301 / 0.275 over three
# seeds at fixed steps; at 0.3 with the prior 0.611 / 0.619 / 0.639. The ovule's thin walls pay
# 0.008-0.009 (250 steps, two seeds), the synthetic stack 0.004-0.009 at 450 steps (+0.006 at
# 250), and a 3D step takes 1.23x as long (docs/quality.md, forty-third session)
REG_WEIGHT_3D_STEM = float(os.environ.get("NAPARI_UNET_REG_3D_STEM", 0.3))
REG_RAMP = float(os.environ.get("NAPARI_UNET_REG_RAMP", 0.25))
# the appearance prior on the unpainted pixels (losses.AppearancePrior): its weight (with the
# regulariser's ramp) and its gate (px): at 900 steps it kept EM membranes from spreading over
# the cytoplasm (docs/quality.md, 2026-12-02, fourth session); 0: off
APPEARANCE_WEIGHT = float(os.environ.get("NAPARI_UNET_APPEARANCE", 1.0))
# the edge-aware regulariser only where the paint shows the objects brighter or darker than the
# background (setup._paint_has_polarity; calibration.MIN_POLARITY); the appearance prior stays
REG_NEEDS_POLARITY = os.environ.get("NAPARI_UNET_REG_NEEDS_POLARITY", "1") == "1"
APPEARANCE_GATE = int(os.environ.get("NAPARI_UNET_APPEARANCE_GATE", 2))
# its contrast feature's half-width (px; intensity minus its mean over a 15-px square, so that
# shading does not pass for an object; 0: intensity only) and the posterior under which the
# predicted class is charged (0.5: wherever the appearance prefers another class). On BBBC039
# rendered as phase contrast the intensity-only prior at 0.5 cost 0.025, this one 0.013
# (docs/quality.md, 2026-12-02, fifth session)
APPEARANCE_CONTRAST = int(os.environ.get("NAPARI_UNET_APPEARANCE_CONTRAST", 7))
APPEARANCE_CONFIDENCE = float(os.environ.get("NAPARI_UNET_APPEARANCE_CONFIDENCE", 0.2))
# the gate excuses narrow strips predicted background (or one object class over another)
# only; an object class predicted where the image says background pays at any width (1: the
# gate excuses every strip, as in the fifth session). EM membranes, 900 steps: lines-m8 0.550 -> 0.590 (seed 0), em/blobs 0.442 -> 0.499;
# nuclei move within their seed spread (docs/quality.md, sixth session). The margin (px) spares
# pixels next to a predicted boundary: measured with the gate off, it gave the EM gain back
APPEARANCE_GATE_OBJECTS = os.environ.get("NAPARI_UNET_APPEARANCE_GATE_OBJECTS", "0") == "1"
APPEARANCE_MARGIN = int(os.environ.get("NAPARI_UNET_APPEARANCE_MARGIN", 0))
# a halo (phase contrast: calibration.HALO_MAX, read on the calibration crops at step READ_MAPS_AT,
# twice that, ... and at a continued run's start; HALO_READINGS readings in a row; map_readings.py) gates the object
# classes too for the rest of the run: the halo between touching cells looks like background, and
# charged at any width the network carved it out of every colony (Omnipose's colonies at 1,200
# steps: 0.916 / 0.751 -> 0.981 / 0.911; docs/quality.md)
HALO_GATE = os.environ.get("NAPARI_UNET_HALO_GATE", "1") == "1"
READ_MAPS_AT = 150   # the network's map read (map_readings.py): a halo, objects over background
HALO_READINGS = 2
# objects spread over what looks like the painted background (edge_evidence.swell_overshoot over
# SWELL_MAX, read with the halo, SWELL_READINGS times in a row; not once a halo is seen, which
# looks like background inside a colony) stop the edge-aware regulariser for the rest of the run:
# in a flat unpainted region next to the objects it drives whichever class the network leans to
# all the way there, and a bright glow around Caulobacter cells became object (610 steps 0.31 ->
# 0.51, 120 s 0.37 -> 0.56; no case of the benchmark reads over 0.45; docs/quality.md, fiftieth
# session). 0: the regulariser stays
SWELL_GUARD = os.environ.get("NAPARI_UNET_SWELL_GUARD", "1") == "1"
SWELL_MAX = float(os.environ.get("NAPARI_UNET_SWELL_MAX", 1.0))
SWELL_READINGS = int(os.environ.get("NAPARI_UNET_SWELL_READINGS", 2))
# at the end of a run, move the background/object boundary onto the image's edges (calibration.py);
# EM membranes 900 steps, lines-m2/m4/m8: 0.603/0.589/0.588 -> 0.612/0.625/0.617; nuclei keep 0.5
# (docs/quality.md, ninth session); BBBC039 at 80 steps 0.874/0.854 -> 0.913/0.913, 3 classes at
# 300 steps 0.674/0.665 -> 0.681/0.671 (eleventh session). 0: off
EDGE_CALIBRATION = os.environ.get("NAPARI_UNET_EDGE_CALIBRATION", "1") == "1"
# a run on a dense mask (at most calibration.MIN_UNPAINTED of it unpainted) trains on the mask's
# own class shares: strokes' proportions say nothing, so their training balances the classes
# (batches centred on each class in turn, each class weighing the same in the cross-entropy), but
# a dense mask's proportions are the image's, and balancing them had a rare class predicted 2-4x
# too often. "shares": patches centred on painted pixels whose class is drawn by its share of the
# paint (DENSE_EVEN_SHARE of them on each class in turn, as nnU-Net oversamples foreground, so that
# a rare class is still seen) and a cross-entropy in which every painted pixel counts the same (the
# Dice term stays per class). 600 steps, IoU against "shift": EM mitochondria of two sections
# 0.447 -> 0.623 and 0.339 -> 0.565 (seed 1 0.624); ISBI membranes and BBBC039 within 0.001;
# two seeds each: 3 classes 0.899 / 0.881 -> 0.925 / 0.869, IHC 0.969 / 0.958 -> 0.957 / 0.965,
# H&E 0.943 / 0.944 -> 0.935 / 0.940
# (docs/quality.md, thirty-eighth session). "shift": balanced training, then the head shifted to
# the mask's class shares (validation._dense_share; the logit adjustment of Menon et al. 2021;
# thirty-seventh session); "balanced": as strokes
DENSE_TRAINING = os.environ.get("NAPARI_UNET_DENSE_TRAINING", "shares")
if DENSE_TRAINING not in ("shares", "shift", "balanced"):   # a typo must not quietly change training
    raise ValueError(f"NAPARI_UNET_DENSE_TRAINING must be shares, shift or balanced, not {DENSE_TRAINING!r}")
DENSE_EVEN_SHARE = min(max(float(os.environ.get("NAPARI_UNET_DENSE_EVEN_SHARE", 1 / 3)), 0.0), 1.0)
# Stacks (3 spatial axes; 3D models and 2D models on their planes alike) with the flux criterion
# (calibration.CRITERION): the region's Laplacian sum does not gain by cutting away the dim, Z-blurred
# planes near an object's top and bottom, as the mean edge strength did (it chose 0.85-0.9 on the
# synthetic stack: 200 steps 0.724 -> 0.696, twelfth session). 3D model, fixed steps, not
# calibrated -> flux: synthetic stack 200 steps seeds 0/1 0.724/0.735 -> 0.756/0.760; ovule 250
# steps 0.581/0.613 -> 0.621/0.613 (docs/quality.md, fourteenth session). With the gradient
# criterion stacks stay uncalibrated unless this is 1; 0: never calibrate stacks
from .calibration import CRITERION as _CRITERION  # noqa: E402

_STACKS = os.environ.get("NAPARI_UNET_EDGE_CALIBRATION_STACKS", "")
EDGE_CALIBRATION_STACKS = _STACKS == "1" or (_STACKS == "" and _CRITERION == "flux")
# continuing a model: weight of losses.anchor_kl (keep the starting model's prediction on the
# unpainted pixels; 0: off)
ANCHOR_WEIGHT = float(os.environ.get("NAPARI_UNET_ANCHOR", 1.0))
# keep-better when nothing new was painted: a better fit to the paint is not enough, the new weights'
# boundaries must also follow the image's edges clearly better (their region's flux,
# calibration.region_flux, above the previous model's by calibration.MIN_GAIN, relative)
KEEP_BETTER_EDGES = os.environ.get("NAPARI_UNET_KEEP_BETTER_EDGES", "1") == "1"
# ... or, whatever the edges say, if their prediction is clearly steadier: its agreement with that of
# the mirrored crops (Validation.agreement) up by STEADY_GAIN, the fit to the paint down by at most
# STEADY_SLACK. Continuations on the same strokes (docs/quality.md, twenty-second session): a gain
# of 0.008-0.027 came with +0.008 to +0.033 IoU, one of 0.0055 or less with -0.021 to +0.012. 0: off
STEADY_GAIN = float(os.environ.get("NAPARI_UNET_STEADY_GAIN", 0.0075))
STEADY_SLACK = 0.01
# more than two classes: when the paint shows them as kinds of object (each painted object one
# class; postprocess.classes_are_kinds on the model's own objects around the paint), the model's
# record says so (meta["one_class_per_object"]) and predictions give each object one class
KINDS_FROM_PAINT = os.environ.get("NAPARI_UNET_KINDS", "1") == "1"
# the regulariser's neighbour distances (px), 2D and 3D: 1, 2, 4. At 900 steps (fixed-step
# runs, benchmarks/quality_diagnose.py) 1, 2 px did better on small objects (synthetic nuclei
# lines-m4 0.911 -> 0.930; the 4-px pairs shrink them by ~1 px) and no worse elsewhere, but in
# short rounds it converges more slowly: the interactive simulation at ~110-140 steps per 40 s
# round gave 0.715, 0.866, 0.937, 0.926 with 1, 2 against 0.809, 0.871, 0.927, 0.939 with
# 1, 2, 4 (docs/quality.md). 3D: 1 px alone cost 0.036 on the synthetic stack
REG_DILATIONS = tuple(int(v) for v in os.environ.get("NAPARI_UNET_REG_DIL", "1,2,4").split(","))
REG_DILATIONS_3D = tuple(int(v) for v in os.environ.get("NAPARI_UNET_REG_DIL_3D", "1,2,4").split(","))
# 2D: the longest pairs for a run's first REG_LONG_STEPS steps only, whose convergence they speed
# up; after that they would shrink small objects (nuclei ~10 px across, 900 steps: 0.930 -> 0.941;
# phase contrast, 600 steps: -0.004 to -0.009; docs/quality.md, twenty-first session). 0: the
# longest pairs throughout
REG_LONG_STEPS = int(os.environ.get("NAPARI_UNET_REG_LONG_STEPS", 300))
# 3D on a CPU: train channels-last-3d, as prediction does (oneDNN's 3D convolutions, their
# backward pass above all, are faster in that layout): 1.24x the steps per second on the
# synthetic stack (benchmarks/train_memory_format.py, median of 3 alternating pairs), the same
# IoU at fixed steps (docs/quality.md, twelfth session). CUDA 3D stays contiguous (not measured
# on a GPU)
CHANNELS_LAST_3D_CPU = os.environ.get("NAPARI_UNET_CHANNELS_LAST_3D", "1") == "1"

# a fresh model gets fixed filters in front of its first layer (model.FilterStem: the image's
# smoothing, gradient magnitude and Hessian eigenvalues at these sigmas, in units of the finest
# voxel side), e.g. "1,2,4"; "": none. 3D: on by default, and a 3D model with the stem trains
# with a weaker regulariser (REG_WEIGHT_3D_STEM; none until the forty-third session): the
# filters give the network the image's edges and ridges, and the regulariser at full weight only
# widened the thin boundaries of the ovule stack. 120 s, idle (docs/quality.md, twenty-sixth
# session), with neither loss: the real ovule 0.601 -> 0.648 and the synthetic stack 0.805 ->
# 0.857 (250 fixed steps, four seeds: the ovule +0.017 to +0.044; the stem alone or no
# regulariser alone at most +0.015); a 3D step costs 1.32x with the stem, a 3D prediction 1.48x
# (benchmarks/stem_cost.py), and the two losses at REG_WEIGHT_3D_STEM 1.23x on top
# (benchmarks/train_speed.py --dims 3 --losses default against --losses strokes).
# A model keeps what it was built with when it continues.
# 2D: off. At 1, 2, 4 (600 steps) EM dots gained 0.027-0.042 but EM lines-m4 lost 0.017, the
# synthetic nuclei 0.008 and phase contrast 0.013; without the 2D regulariser EM lines fell to
# 0.511 and BBBC039 to 0.902 (twenty-fifth and twenty-sixth sessions). At 1, 2 with the
# regulariser (twenty-seventh session) the 600-step runs gained (EM dots +0.024 / +0.048, three
# classes +0.031 / +0.080), but in 120-s runs EM lines-m2 fell under its bar (0.622 -> 0.586; at
# 1,000 fixed steps -0.024 / -0.004) while EM dots stayed under its own (0.536 -> 0.553)
def _sigmas(name: str, default: str) -> tuple[float, ...] | None:
    v = os.environ.get(name, default).strip()
    return tuple(float(s) for s in v.split(",")) if v else None


STEM_3D = _sigmas("NAPARI_UNET_STEM_3D", "1,2,4")
STEM_2D = _sigmas("NAPARI_UNET_STEM_2D", "")

from .config import TrainConfig, default_architecture, default_patch_batch  # noqa: E402
from .loop import iter_train, train  # noqa: E402
from .tuning import ThreadTuner, _adamw  # noqa: E402,F401

__all__ = ["iter_train", "train", "TrainConfig", "default_architecture", "default_patch_batch",
           "ThreadTuner", "DENSE_TRAINING", "DENSE_EVEN_SHARE", "DEFAULT_LR", "DEFAULT_LR_2D", "FINETUNE_LR_FACTOR", "EMA_DECAY", "ENTROPY_WEIGHT", "REG_WEIGHT", "REG_WEIGHT_3D", "REG_WEIGHT_3D_STEM",
           "REG_RAMP", "REG_NEEDS_POLARITY", "REG_DILATIONS", "REG_DILATIONS_3D", "REG_LONG_STEPS", "ANCHOR_WEIGHT", "APPEARANCE_WEIGHT",
           "STEM_2D", "STEM_3D", "APPEARANCE_GATE", "APPEARANCE_CONTRAST", "APPEARANCE_CONFIDENCE", "APPEARANCE_MARGIN", "APPEARANCE_GATE_OBJECTS",
           "HALO_GATE", "READ_MAPS_AT", "HALO_READINGS",
           "SWELL_GUARD", "SWELL_MAX", "SWELL_READINGS"]
