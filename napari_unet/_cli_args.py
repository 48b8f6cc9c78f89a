"""Argument types of the ``napari-unet`` command: a bad value is refused while parsing (exit 2)."""
from __future__ import annotations

import argparse
from pathlib import Path

from .core.errors import UserError


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
