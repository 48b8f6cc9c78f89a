"""Argument types of the ``napari-unet`` command: a bad value is refused while parsing (exit 2)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .core.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose error is one line on stderr (no usage block) and exit 2:
    ``napari-unet train: error: argument --patch: ... (see napari-unet train --help)``.
    Subparsers made by ``add_subparsers`` are of this class too."""

    def error(self, message: str):
        text = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def _sizes(text: str, option: str, forms: str, minimum: int = 1):
    """``N`` or ``ZxYxX`` (also ``Z,Y,X``) as an int or a tuple; an ArgumentTypeError naming
    ``option`` and its accepted ``forms`` otherwise."""
    try:
        parts = tuple(int(p) for p in text.strip().lower().replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{option} must be {forms}, got {text!r}") from None
    if any(p < minimum for p in parts):
        least = "positive" if minimum == 1 else f"at least {minimum}"
        raise argparse.ArgumentTypeError(f"{option} sizes must be {least}, got {text!r}")
    return parts[0] if len(parts) == 1 else parts


def _tile_arg(text: str):
    t = text.strip().lower()
    if t == "auto":
        return "auto"
    if t in ("none", "whole", "0"):
        return None
    return _sizes(text, "--tile", "'auto', 'none', N or ZxYxX")


def _batch_arg(text: str):
    if text == "auto":
        return "auto"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-size must be 'auto' or a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"--batch-size must be positive, got {v}")
    return v


def _threshold_arg(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"--threshold is a probability between 0 and 1, got {text!r}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return v


def _patch_cli_arg(text: str):
    if text.strip().lower() == "auto":
        return "auto"
    return _sizes(text, "--patch", "'auto', N or ZxYxX", minimum=4)


def _spacing_arg(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--spacing must be numbers such as 2,0.5,0.5, got {text!r}") from None
    if not all(v > 0 for v in vals):
        raise argparse.ArgumentTypeError(f"--spacing values must be positive, got {text!r}")
    return vals


def _existing_file(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} {path} does not exist")
    if p.is_dir():
        raise UserError(f"{what} {path} is a folder, not a file")
    return p


def train_spacing(spacing: tuple[float, ...] | None, dims: int | None, init: str | None,
                  images: list[str]) -> tuple[float, ...] | None:
    """The voxel size (Z, Y, X) for ``train``: ``--spacing``, else the first image's recorded
    pixel size when it has all three (TIFF/OME/zarr/HDF5 metadata); only for 3D training
    (``--dims 3``, or a 3D ``--init`` model). Says on stderr where it came from."""
    import sys

    if dims is None and init is not None:
        from .core.io import read_model_meta

        try:
            dims = int(read_model_meta(init)["dims"])
        except Exception:  # training reports a bad --init with its own message
            dims = None
    if dims != 3:
        if spacing is not None:
            raise UserError("--spacing applies to 3D training (--dims 3): a 2D model sees one slice at a time")
        return None
    if spacing is not None:
        if len(spacing) != 3:
            raise UserError(f"--spacing must have 3 values (Z,Y,X) for --dims 3, got {len(spacing)}")
        return tuple(spacing)
    from .core.readers import input_pixel_size

    found = []
    for path in images:
        px = input_pixel_size(path).sizes
        found.append(tuple(float(px[a]) for a in "zyx") if all(a in px for a in "zyx") else None)
    first = next((f for f in found if f is not None), None)
    if first is None:
        return None
    src = images[found.index(first)]
    print(f"voxel size {','.join(f'{v:g}' for v in first)} (Z,Y,X) from {src}; --spacing Z,Y,X to override",
          file=sys.stderr)
    if any(f is not None and max(abs(a / b - 1) for a, b in zip(f, first)) > 0.05 for f in found):
        print("napari-unet: warning: the images have different voxel sizes; pooling and patch "
              f"follow {src}'s", file=sys.stderr)
    return first


def predict_channel_axis(shapes: list[tuple[int, ...]], meta: dict, names: list[str]) -> int | None:
    """No --channel-axis and a model of several channels: the axis of that size in every image
    of ``shapes`` (the last one where it qualifies: an RGB file with an RGB model), counted from
    the end and said on stderr; None where the files leave it in doubt (prediction then asks
    for --channel-axis); a UserError naming the image (of ``names``) that has no axis to spare
    for channels. The TIFF path (_cli_predict.py) and the block engine (_cli_bigdata.py) both
    use it."""
    import sys

    from .core.checks import guess_channel_axis

    cin = int(meta.get("in_channels", 1))
    if cin <= 1:
        return None
    for shape, name in zip(shapes, names):
        if len(shape) == int(meta.get("dims", 2)):
            raise UserError(f"the model takes {cin} channels, {name} has 1")
    guesses = set()
    for shape in shapes:
        axis = guess_channel_axis(shape, in_channels=cin)
        if axis is None:
            return None
        guesses.add(axis if axis < 0 else axis - len(shape))
    if len(guesses) != 1:
        return None
    axis = guesses.pop()
    print(f"napari-unet: the model takes {cin} channels: reading them from axis {axis} of each image; "
          "pass --channel-axis to choose another", file=sys.stderr)
    return axis


def note_stack_in_2d(dims: int | None, init: str | None, channel_axis: int | None,
                     image_paths: list[str], images: list) -> None:
    """``train`` without ``--dims`` trains 2D (the API's default). When every image is a stack
    (Z, Y, X) of at least ``MIN_PLANES`` planes alike enough to be a z-stack (not a time series), say on
    stderr that ``--dims 3`` would learn from the planes nobody painted too (the Train widget
    chooses 3D for such stacks)."""
    import sys

    from .core.frames import MIN_PLANES, unlike_planes

    if dims is not None or init is not None or channel_axis is not None or not images:
        return
    # a time series (planes much less alike than neighbouring pixels) is right in 2D
    if all(getattr(im, "ndim", 0) == 3 and im.shape[0] >= MIN_PLANES and unlike_planes(im) is None for im in images):
        print(f"napari-unet: note: {image_paths[0]} is a stack of {images[0].shape[0]} planes, "
              "trained slice by slice (2D, the default); --dims 3 learns from the planes you did "
              "not paint too", file=sys.stderr)


def check_instance_options(args, images, shapes) -> None:
    """``--instances``' numbers, before anything is predicted or written: one line naming the
    option and the value (the objects are made after the probabilities are written)."""
    import math

    if args.min_size < 0:
        raise UserError(f"--min-size must not be negative, got {args.min_size}")
    if not (math.isfinite(args.seed_distance) and args.seed_distance >= 0):
        raise UserError(f"--seed-distance must be a number of at least 0, got {args.seed_distance}")
    if args.spacing is None:
        return
    for p, shape in zip(images, shapes):
        axes = len(shape) - (args.channel_axis is not None)
        if len(args.spacing) != axes:
            raise UserError(f"--spacing has {len(args.spacing)} values but {p.name} has {axes} "
                            f"spatial axes (shape {tuple(shape)}): give one per axis")
