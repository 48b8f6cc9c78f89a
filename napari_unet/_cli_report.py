"""What ``napari-unet`` prints while it works: a progress bar on stderr and the training report
(shared by ``train`` and ``demo``)."""
from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line progress bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, label: str, stream=None, width: int = 28):
        self.label, self.width = label, width
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()
        self._last = -1.0

    def update(self, done: float, total: float, extra: str = "") -> None:
        now = time.perf_counter()
        frac = 0.0 if not total else min(1.0, done / total)
        if not self.tty and frac < 1.0 and now - self._last < 2.0:
            return  # a log file gets a line every 2 s, a terminal every update
        self._last = now
        fill = int(round(frac * self.width))
        bar = "#" * fill + "-" * (self.width - fill)
        line = f"{self.label} [{bar}] {frac * 100:5.1f}% {now - self.t0:6.1f}s {extra}"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def report_training(gen, *, quiet: bool = False):
    """Run a training generator to its end, printing its start and a live progress line on
    stderr; return ``(TrainFinished event, "val IoU ..." text)``. Used by train and demo."""
    import math

    from .core.events import TrainFinished, TrainStarted, TrainStep, Validation, quality_summary

    bar = None
    val_txt = "stability -"
    finished = None
    try:
        for ev in gen:
            if isinstance(ev, TrainStarted):
                limit = (f"{ev.total_steps} steps" if ev.total_steps else "") + (
                    (" / " if ev.total_steps and ev.time_limit else "") +
                    (f"{ev.time_limit:g} s" if ev.time_limit and math.isfinite(ev.time_limit) else ""))
                pooled = f", {ev.pooling}" if getattr(ev, "pooling", "") else ""
                print(f"training {ev.dims}D, {ev.classes} classes on {ev.device} ({ev.precision}); "
                      f"patch {'x'.join(map(str, ev.patch))}{pooled}, batch {ev.batch_size}; "
                      f"{ev.train_pixels} painted pixels for training, {ev.val_pixels} for validation; "
                      f"until {limit}", file=sys.stderr)
                if getattr(ev, "advice", ""):
                    print(f"note: {ev.advice}", file=sys.stderr)
                if not quiet:
                    bar = ProgressBar("train")
            elif isinstance(ev, TrainStep) and bar is not None:
                bar.update(ev.fraction, 1.0, f"step {ev.step} loss {ev.loss:.4f} {val_txt} "
                                             f"{ev.steps_per_s:.2f} steps/s")
            elif isinstance(ev, Validation):
                val_txt = quality_summary(ev)
            elif isinstance(ev, TrainFinished):
                finished = ev
    finally:
        gen.close()
        if bar is not None:
            bar.close()
    return finished, val_txt


def format_scores(scores: dict) -> str:
    """The pixel scores' table; an undefined score (NaN) reads "n/a"."""
    from .core.metrics import format_score as f

    rows = [f"{'class':>6} {'name':<14} {'IoU':>7} {'Dice':>7} {'TP':>10} {'FP':>10} {'FN':>10}"]
    for v, c in scores["classes"].items():
        rows.append(f"{v:>6} {c['name'][:14]:<14} {f(c['iou'], '7.4f')} {f(c['dice'], '7.4f')} "
                    f"{c['tp']:>10} {c['fp']:>10} {c['fn']:>10}")
    rows.append(f"{'mean':>6} {'':<14} {f(scores['mean_iou'], '7.4f')} {f(scores['mean_dice'], '7.4f')}")
    if "foreground_iou" in scores:
        rows.append(f"{'fg':>6} {'all classes >1':<14} {f(scores['foreground_iou'], '7.4f')} "
                    f"{f(scores['foreground_dice'], '7.4f')}")
    rows.append(f"{scores['pixels']} pixels scored, {scores['ignored']} unlabeled in the truth (ignored)")
    if scores.get("truth_note"):
        rows.append(scores["truth_note"])
    if scores.get("note"):
        rows.append(scores["note"])
    return "\n".join(rows)


def json_safe(obj):
    """``obj`` with every NaN float as None: strict JSON (``null``) for an undefined score."""
    import math

    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
