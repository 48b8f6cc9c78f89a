"""The ``napari-unet`` command: train, predict, evaluate, demo and gui, on top of ``core``.

A user's mistake prints one line (``napari-unet: error: ...``) and exits 2; progress goes to
stderr; output files are written to a temporary name and renamed.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from ._cli_args import (OneLineParser, _batch_arg, _existing_file, _patch_cli_arg, _positive_float,  # noqa: F401
                        _spacing_arg, _threshold_arg, _tile_arg, note_stack_in_2d, train_spacing)
from ._cli_report import ProgressBar, format_scores, json_safe, report_training  # noqa: F401  (re-exported)
from ._cli_run import Terminated
from ._cli_predict import add_predict_parser, cmd_predict, instance_outputs  # noqa: F401  (re-exported)
from .core.errors import UserError
from .core.limits import DEFAULT_TIME_LIMIT_CLI_S, DEFAULT_TIME_LIMIT_GUI_S

EXIT_USAGE = 2


# ----------------------------------------------------------------------------- evaluate

def scores_to_json(scores: dict) -> dict:
    """The scores as strict JSON: class values as keys, an undefined score (NaN) as null."""
    out = dict(scores)
    out["classes"] = {str(k): v for k, v in scores["classes"].items()}
    return json_safe(out)


ZERO_AS_BACKGROUND = "pass --truth-zero background if its 0 means background (an image without objects)"


def cmd_evaluate(args) -> int:
    import numpy as np

    from ._cli_inputs import read_inputs
    from .core.metrics import evaluate

    pred, truth = (np.asarray(a) for a in read_inputs([(args.pred, "--pred"), (args.truth, "--truth")],
                                                      doing="evaluate"))
    if pred.shape != truth.shape:
        raise UserError(f"--pred {args.pred} has shape {pred.shape} but --truth {args.truth} has {truth.shape}")
    if args.objects:
        from .core.objects import format_object_scores, match_objects

        if args.truth_zero == "unlabeled":
            raise UserError("--truth-zero unlabeled does not apply to --objects: object masks read 0 as background")
        # as pixel scoring: an all-0 truth is a blank painting unless the user says 0 is background
        if args.truth_zero == "auto" and truth.dtype.kind != "b" and not truth.any():
            raise UserError(f"--truth {args.truth} is all 0 (read as unlabeled): nothing to score; "
                            + ZERO_AS_BACKGROUND)
        res = match_objects(pred, truth)
        res.pop("matches")
        print(json.dumps(json_safe(res), indent=2) if args.json else format_object_scores(res))
        return 0
    scores = evaluate(pred, truth, truth_zero=args.truth_zero)
    if args.truth_zero == "auto" and "truth 0" in scores["truth_note"]:
        other = "unlabeled" if scores["truth_zero"] == "background" else "background"
        scores["truth_note"] += f" (--truth-zero {other} to read it the other way)"
    if not scores["classes"]:
        raise UserError(f"--truth {args.truth} has no labelled pixels (all 0 = unlabeled); " + ZERO_AS_BACKGROUND)
    if args.json:
        print(json.dumps(scores_to_json(scores), indent=2))
    else:
        print(format_scores(scores))
    return 0


# ----------------------------------------------------------------------------- train
# (the training engine's front end: see napari_unet/core/train.py)

def add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune a U-Net on painted labels",
                       description="Train a U-Net on image/label pairs (0 = unlabeled, 1..K = classes, "
                                   "1 = background). The model file is written atomically, as a "
                                   "checkpoint during training and at the end.")
    p.add_argument("--image", action="append", required=True, help="image: TIFF, PNG, .zarr/.ome.zarr or file.h5:dataset (repeatable)")
    p.add_argument("--labels", action="append", required=True, help="labels for the preceding --image (same formats)")
    p.add_argument("--out", required=True, help="model file to write (.pt)")
    p.add_argument("--dims", type=int, choices=(2, 3), default=None,
                   help="2: train on 2D slices (default), 3: volumetric patches (default: --init's)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--time-limit", type=float, help=f"seconds of training (default {DEFAULT_TIME_LIMIT_CLI_S:g} unless --steps)")
    g.add_argument("--steps", type=int, help="number of optimisation steps")
    p.add_argument("--init", help="model file (.pt, or a package from 'napari-unet export') to fine-tune "
                                  "from (a new head if the class count differs)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where to compute: auto (a CUDA or Apple GPU if there is one, else the CPU), cpu, cuda or mps")
    p.add_argument("--batch-size", type=_batch_arg, default="auto",
                   help="patches per training step: auto (from the device and patch size) or N")
    p.add_argument("--patch", type=_patch_cli_arg, default="auto", help="patch size: auto, N or ZxYxX")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 1e-3 2D, 2e-3 3D, 5e-4 continuing)")
    p.add_argument("--classes", type=int, default=None,
                   help="number of classes K (default: the highest painted label value)")
    p.add_argument("--class-names", default=None, help="comma-separated names, class 1 first")
    p.add_argument("--unpainted-is-background", action="store_true",
                   help="labels are full masks: 0 means background (class 1), not unlabeled")
    p.add_argument("--checkpoint-every", type=float, default=30.0,
                   help="seconds between checkpoints written to --out (default 30)")
    p.add_argument("--base-channels", type=int, default=None, help="U-Net width (default: by device)")
    p.add_argument("--depth", type=int, default=None, help="U-Net poolings (default: by device)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the paint held out for validation (default 0.1)")
    p.add_argument("--val-image", action="append", default=None, help="validation image (repeatable)")
    p.add_argument("--val-labels", action="append", default=None, help="labels for the preceding --val-image")
    p.add_argument("--channel-axis", type=int, default=None, help="axis holding channels, for multi-channel images")
    p.add_argument("--spacing", type=_spacing_arg, default=None,
                   help="3D: voxel size Z,Y,X (default: from the first image's metadata); an axis is "
                        "pooled only while its spacing is below twice the finest, the patch follows")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed for the initial weights, patch sampling and augmentation (default 0)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow replacing an existing --out file that napari-unet did not write")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> int:
    from ._cli_inputs import input_files, read_inputs
    from .core.train import iter_train

    if len(args.image) != len(args.labels):
        raise UserError(f"{len(args.image)} --image but {len(args.labels)} --labels: give one --labels per --image")
    if (args.val_image is None) != (args.val_labels is None) or (
            args.val_image is not None and len(args.val_image) != len(args.val_labels)):
        raise UserError("give one --val-labels per --val-image")
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a model file path such as model.pt")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise UserError(f"the folder of --out {out} does not exist")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise UserError(f"--time-limit must be positive, got {args.time_limit}")
    from .core.train_output import TrainOutput, model_file_bytes

    # a bad --depth/--base-channels is refused here, before the disk space for the model is estimated
    size = model_file_bytes(dims=args.dims, base_channels=args.base_channels, depth=args.depth,
                            classes=args.classes, device=args.device, init=args.init)
    specs = args.image + args.labels + (args.val_image or []) + (args.val_labels or [])
    # never an input, the model fine-tuned from included
    inputs = input_files(specs) + ([args.init] if args.init else [])
    target = TrainOutput(out, inputs=inputs, overwrite=args.overwrite, model_bytes=size)
    time_limit = args.time_limit
    if args.steps is None and time_limit is None:
        time_limit = DEFAULT_TIME_LIMIT_CLI_S
    init = str(_existing_file(args.init, "--init model")) if args.init else None
    val_image, val_labels = args.val_image or [], args.val_labels or []
    arrays = read_inputs([(p, "image") for p in args.image] + [(p, "labels") for p in args.labels]
                         + [(p, "validation image") for p in val_image]
                         + [(p, "validation labels") for p in val_labels])
    n, v = len(args.image), len(val_image)
    images, labels = arrays[:n], arrays[n:2 * n]
    from .core.checks import check_finite

    for spec, data in zip(args.image + val_image, images + arrays[2 * n:2 * n + v]):
        check_finite(data, name=str(spec), doing="training")   # named by its file, not "image 1"
    val_images, val_labels = (arrays[2 * n:2 * n + v], arrays[2 * n + v:]) if v else (None, None)
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    spacing = train_spacing(args.spacing, args.dims, init, args.image)
    channel_axis = args.channel_axis
    if channel_axis is None:
        channel_axis = train_channel_axis(args.image, images, args.labels, labels)
    note_stack_in_2d(args.dims, init, channel_axis, args.image, images)

    gen = iter_train(images if len(images) > 1 else images[0], labels if len(labels) > 1 else labels[0],
                     dims=args.dims, init=init, classes=args.classes, class_names=names,
                     steps=args.steps, time_limit=time_limit, device=args.device,
                     batch_size=args.batch_size, patch=args.patch, lr=args.lr,
                     base_channels=args.base_channels, depth=args.depth,
                     val_fraction=args.val_fraction, val_images=val_images, val_labels=val_labels,
                     unpainted_is_background=args.unpainted_is_background, checkpoint=target.checkpoint,
                     checkpoint_every=args.checkpoint_every, seed=args.seed,
                     channel_axis=channel_axis, spacing=spacing)
    try:
        finished, val_txt = report_training(gen, quiet=args.quiet)
    except KeyboardInterrupt as e:
        print(f"napari-unet: {'terminated' if isinstance(e, Terminated) else 'interrupted'}: "
              f"{target.settle(False)}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except OSError as e:  # e.g. the disk filled up during training: say where the model is
        from .core.errors import describe_os_error

        raise UserError(f"{describe_os_error(e)}; {target.settle(False)}") from None
    if finished.reason == "nan":
        print(f"napari-unet: warning: {finished.message}", file=sys.stderr)
    print(f"{target.settle(True)}: {finished.message}; {val_txt}")
    return 0


def train_channel_axis(image_paths, images, label_paths, labels) -> int | None:
    """No --channel-axis: None where every image has its labels' shape; else the channel axis
    the files leave no doubt about (an RGB image with 2D labels: -1), said on stderr, the same
    for every image; else a UserError that names the pair at fault (or, where some images have
    channels and others not, says so)."""
    from .core.checks import guess_channel_axis

    if all(tuple(im.shape) == tuple(lab.shape) for im, lab in zip(images, labels)):
        return None
    guesses: dict[int | None, str] = {}  # axis (None: no channel axis) -> the first image with it
    for path, im, lpath, lab in zip(image_paths, images, label_paths, labels):
        ishape, lshape = tuple(im.shape), tuple(lab.shape)
        axis = None if ishape == lshape else guess_channel_axis(ishape, spatial_shape=lshape)
        if axis is None and ishape != lshape:
            fits = any(ishape[:a] + ishape[a + 1:] == lshape for a in range(len(ishape)))
            raise UserError(f"--labels {lpath} has shape {lshape} but --image {path} has shape {ishape}"
                            + (" (pass --channel-axis N if one axis holds channels)" if fits else ""))
        guesses.setdefault(None if axis is None else (axis if axis < 0 else axis - im.ndim), path)
    if None in guesses:
        with_c = next(a for a in guesses if a is not None)
        shape = tuple(images[image_paths.index(guesses[with_c])].shape)
        raise UserError(f"the images have different channel counts: {guesses[None]} has 1, {guesses[with_c]} "
                        f"has {shape[with_c]} (shape {shape}); train on images of one kind")
    if len(guesses) > 1:
        raise UserError("the images hold their channels on different axes; give them the same layout, "
                        "or train on one at a time with --channel-axis")
    axis = next(iter(guesses))
    shape = tuple(images[0].shape)
    print(f"napari-unet: reading channels from axis {axis} of --image (shape {shape}: {shape[axis]} "
          f"channel{'s' if shape[axis] > 1 else ''}); pass --channel-axis to choose another", file=sys.stderr)
    return axis


# ----------------------------------------------------------------------------- main

def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = OneLineParser(
        prog="napari-unet",
        description="Paint a little, train a U-Net, segment everything: the headless side of the "
                    "napari-unet plugin. Labels: 0 = unlabeled, 1 = background, 2..K = classes.")
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True
    add_train_parser(sub)

    add_predict_parser(sub)

    p = sub.add_parser("evaluate", help="IoU and Dice of predicted labels against ground truth",
                       description="Per-class IoU/Dice with TP/FP/FN counts. Truth 0 is either unlabeled "
                                   "(ignored, as in paintings) or background (a complete mask): see --truth-zero.")
    p.add_argument("--pred", required=True, help="predicted labels: TIFF, PNG, .zarr/.ome.zarr or file.h5:dataset")
    p.add_argument("--truth", required=True, help="ground-truth labels (same formats)")
    p.add_argument("--truth-zero", choices=("auto", "background", "unlabeled"), default="auto",
                   help="what 0 in the truth means: background (a complete mask: 0 is background, every "
                        "other value foreground), unlabeled (ignored, as in paintings), or auto (default: "
                        "background for a boolean mask, 0 with one other value such as 0/1 or 0/255, or "
                        "0 with instance ids; unlabeled otherwise). The output says which was used.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--objects", action="store_true",
                   help="object scores instead: match objects at IoU 0.5..0.95 (TP/FP/FN, precision, recall, "
                        "F1, average precision, splits, merges); an instance mask is used as is, a semantic "
                        "mask (0/1, 0/255, or class labels with 1 = background) by connected components")
    p.set_defaults(func=cmd_evaluate)

    from ._cli_export import add_export_parser

    add_export_parser(sub)

    p = sub.add_parser("demo", help="headless demo on the synthetic sample data",
                       description="Train on the sample data's strokes, predict, evaluate, print the scores and write the outputs.")
    p.add_argument("--out-dir", default="demo_output",
                   help="folder for the model and the outputs (default demo_output, created if missing)")
    p.add_argument("--time-limit", type=_positive_float, default=DEFAULT_TIME_LIMIT_GUI_S,
                   help=f"seconds of training (default {DEFAULT_TIME_LIMIT_GUI_S:g})")
    p.add_argument("--overwrite", action="store_true",
                   help="allow replacing files in --out-dir that napari-unet did not write")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="where to compute: auto (a CUDA or Apple GPU if there is one, else the CPU), cpu, cuda or mps")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("gui", help="open napari with the plugin docked and the sample data loaded "
                                   "(the headless demo where there is no display)")
    p.add_argument("--no-sample", action="store_true", help="do not load the sample data")
    p.add_argument("--demo-out-dir", default="demo_output",
                   help="where the headless demo writes its outputs when there is no display (default demo_output)")
    p.set_defaults(func=cmd_gui)
    return parser


def cmd_demo(args) -> int:
    from ._demo import run_demo

    return run_demo(Path(args.out_dir), time_limit=args.time_limit, device=args.device, overwrite=args.overwrite)


def cmd_gui(args) -> int:
    from ._launch import run_gui

    return run_gui(sample=not args.no_sample, demo_out_dir=Path(args.demo_out_dir))


def main(argv: Sequence[str] | None = None) -> int:
    from ._cli_run import run_command

    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args.func, args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
