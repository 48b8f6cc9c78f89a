"""The Evaluate job (no Qt, no napari): per-class IoU/Dice of predicted labels against a ground
truth, per slice on stacks, and the error map; a generator with progress and the one cancel
mechanism of core.jobs (a ``threading.Event`` checked between steps). The Evaluate widget runs
it in a worker through its job panel and shows the :class:`Scores` on the main thread.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .jobs import Progress

__all__ = ["Scores", "ObjectResult", "iter_evaluate_job", "iter_object_job", "score_rows"]


@dataclass(frozen=True)
class Scores:
    """The result of one evaluation."""
    result: dict                 # core.metrics.evaluate's scores + truth_zero/truth_note
    rows: list[list[Any]]        # [scope, class, IoU, Dice, TP, FP, FN]: "all", then "z N" per slice
    errors: np.ndarray           # core.metrics.error_map (uint8 codes)
    counts: dict[int, int] = field(default_factory=dict)  # pixels per error code


@dataclass(frozen=True)
class ObjectResult:
    """The result of one object scoring."""
    result: dict                 # core.objects.match_objects' scores
    overlay: np.ndarray          # core.objects.object_overlay (matched / missed / false codes)
    counts: dict[int, int] = field(default_factory=dict)  # pixels per overlay code


def _rows(scope: str, result: dict) -> list[list[Any]]:
    return [[scope, c["name"], c["iou"], c["dice"], c["tp"], c["fp"], c["fn"]]
            for _, c in sorted(result["classes"].items())]


def score_rows(result: dict) -> list[list[Any]]:
    """The table rows of the whole image: one per class, the mean, and the foreground."""
    rows = _rows("all", result)
    rows.append(["all", "mean", result["mean_iou"], result["mean_dice"], "", "", ""])
    if "foreground_iou" in result:
        fg = result["foreground"]
        rows.append(["all", "foreground (all > 1)", result["foreground_iou"], result["foreground_dice"],
                     fg["tp"], fg["fp"], fg["fn"]])
    return rows


def iter_evaluate_job(pred: Any, truth: Any, *, truth_zero: str = "auto", name: str = "prediction",
                      class_names: list[str] | None = None,
                      cancel: threading.Event | None = None) -> Iterator[Progress | Scores]:
    """Score ``pred`` against ``truth``.

    Args:
        pred, truth: label arrays of one shape (truth may be boolean or hold instance ids).
        truth_zero: how the truth's 0 is read (core.truth.resolve_truth), once for the whole stack.
        name: the prediction's name, in the :class:`Progress` events.
        class_names: names of the classes (class 1 first).
        cancel: set it to stop at the next step (no Scores then).

    Yields:
        :class:`~napari_unet.core.jobs.Progress` after each step (the whole image, each slice of
        a stack, the error map), then one :class:`Scores`.

    Raises:
        ValueError (core.errors.UserError): shapes differ, or the labels are not labels.
    """
    from .metrics import ERROR_NAMES, error_map, evaluate
    from .truth import resolve_truth

    pred, truth, how = resolve_truth(pred, truth, truth_zero)
    slices = pred.shape[0] if pred.ndim == 3 else 0
    total = slices + 2

    def step(done: int) -> Progress:
        return Progress(name, 0, 1, done, total)

    if cancel is not None and cancel.is_set():
        return
    result = {**evaluate(pred, truth, class_names=class_names, truth_zero="unlabeled"), **how}
    rows = score_rows(result)
    yield step(1)
    for z in range(slices):
        if cancel is not None and cancel.is_set():
            return
        rows += _rows(f"z {z}", evaluate(pred[z], truth[z], class_names=class_names, truth_zero="unlabeled"))
        yield step(2 + z)
    if cancel is not None and cancel.is_set():
        return
    errors = error_map(pred, truth, truth_zero="unlabeled")
    counts = np.bincount(errors.ravel(), minlength=5)
    yield step(total)
    yield Scores(result, rows, errors, {code: int(counts[code]) for code in ERROR_NAMES})


def iter_object_job(pred: Any, truth: Any, *, name: str = "prediction",
                    cancel: threading.Event | None = None) -> Iterator[Progress | ObjectResult]:
    """Match predicted and true objects (IoU 0.5..0.95) and make the object overlay.

    Args:
        pred, truth: label arrays of one shape; an instance mask is used as is, class labels
            or a binary mask become objects by connected components (core.objects).
        name: the prediction's name, in the :class:`Progress` events.
        cancel: set it to stop at the next step (no ObjectResult then).

    Yields:
        :class:`~napari_unet.core.jobs.Progress` after the matching and after the overlay, then
        one :class:`ObjectResult`.

    Raises:
        ValueError: the shapes differ.
    """
    from .objects import match_objects, object_overlay

    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"Shapes do not match: prediction {pred.shape}, ground truth {truth.shape}.")
    if cancel is not None and cancel.is_set():
        return
    result = match_objects(pred, truth)
    yield Progress(name, 0, 1, 1, 2)
    if cancel is not None and cancel.is_set():
        return
    overlay = object_overlay(pred, truth)
    counts = np.bincount(overlay.ravel(), minlength=4)
    yield Progress(name, 0, 1, 2, 2)
    yield ObjectResult(result, overlay, {code: int(n) for code, n in enumerate(counts)})
