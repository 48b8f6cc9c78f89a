"""Sanity limits checked before any work: class counts and the memory a request needs.

A request that cannot work (an instance mask read as 60000 classes, a batch of 100000 patches)
is refused up front with a message that says what to do, instead of a silent 60000-class model
or a kill by the out-of-memory killer much later.
"""
from __future__ import annotations

import math

from .errors import UserError, option

__all__ = ["check_label_range", "check_binary_mask", "check_class_count", "training_step_bytes", "check_training_memory",
           "check_scratch_space"]

MAX_AUTO_CLASSES = 32        # more label values than this need an explicit classes=
MAX_CLASSES = 65535          # predicted labels are 16-bit
# training time when neither steps nor a time limit is given, per front end: the command line
# trains unattended (`napari-unet train`); the plugin's Train widget and the demo should show a
# result within a minute
DEFAULT_TIME_LIMIT_CLI_S = 300.0
DEFAULT_TIME_LIMIT_GUI_S = 60.0


def _size(n: float) -> str:
    from .outputs import _size as size

    return size(n)


def _instance_hint() -> str:
    return (f"An instance mask needs converting to classes first (a class map, e.g. every object "
            f"= 2) and {option('unpainted_is_background')} so that 0 counts as background")


def check_label_range(max_value: int, name: str = "labels") -> None:
    """Label values beyond any class count (checked before counting pixels per value)."""
    if max_value > MAX_CLASSES:
        raise UserError(f"{name} hold values up to {max_value}, more classes than napari-unet "
                        f"supports ({MAX_CLASSES}): that looks like an instance mask (one id per "
                        f"object). {_instance_hint()}")


def check_binary_mask(zeros: bool, values: set, name: str = "labels") -> None:
    """Refuse a binary mask saved as 0 and one value above 2 (0/255 from an image editor): read
    as a painting it has one class, with 0 as background it looks like an instance mask; say
    what the values mean and how to save it instead of either (never guessed)."""
    if zeros and len(values) == 1 and min(values) > 2:
        v = int(min(values))
        raise UserError(f"the {name} hold only 0 and {v}: a binary mask? labels are 0 = unpainted, "
                        f"1 = background, 2.. = classes; save it as 1/2, or as 0/2 with "
                        f"{option('unpainted_is_background')} (0 = background)")


def check_class_count(max_value: int, classes: int | None, known: int = 0) -> None:
    """Refuse label values that look like instance ids unless ``classes`` says so explicitly
    (``known``: the class count of the model being fine-tuned or continued)."""
    if classes is not None and classes > MAX_CLASSES:
        raise UserError(f"{option('classes', classes)} is more than napari-unet supports "
                        f"({MAX_CLASSES}: predicted labels are 16-bit)")
    if classes is None and max_value > max(MAX_AUTO_CLASSES, known):
        raise UserError(
            f"the labels hold values up to {max_value}: that looks like an instance mask (one id per "
            f"object), not classes 1..K. {_instance_hint()}; if you really mean {max_value} classes, "
            f"pass {option('classes', max_value)}")


def training_step_bytes(batch: int, patch: tuple[int, ...], base_channels: int, classes: int,
                        bytes_per_value: int = 2) -> int:
    """A lower bound of the memory one training step needs: the full-resolution activations of
    the first and last block (4 maps of ``base_channels``), the input, and the logits with
    their softmax and gradient. Only an impossible request exceeds it."""
    px = batch * math.prod(patch)
    return int(px * bytes_per_value * (4 * base_channels + 3 * classes) + px * 4)


def check_training_memory(batch: int, patch: tuple[int, ...], base_channels: int, classes: int,
                          available: int, device: str) -> None:
    need = training_step_bytes(batch, patch, base_channels, classes)
    if need > available:
        raise UserError(
            f"a training step with batches of {batch} patches of {'x'.join(map(str, patch))} pixels "
            f"and {classes} classes needs at least {_size(need)}, but {_size(available)} is available "
            f"on {device}; use a much smaller batch ({option('batch_size', 'auto')} picks one for the "
            f"device), a smaller patch, or fewer classes")


def check_scratch_space(folder, need: int, instead: str) -> None:
    """MemoryError when results of ``need`` bytes, too large for RAM, do not fit in 90% of the
    free space of ``folder``; ``instead`` says what the user can do (ends the message)."""
    import shutil

    free = shutil.disk_usage(folder).free
    if need > 0.9 * free:
        raise MemoryError(f"the results of this image need up to {need / 2**30:.1f} GiB, more than RAM "
                          f"allows, and {folder} has only {free / 2**30:.1f} GiB free for them on disk: "
                          f"{instead}")
