"""The interactive simulation of ``benchmarks/quality.py``: a user who paints a little, trains,
looks at the error overlay and paints where the prediction is most wrong, round after round.

Round 0: lines through 10% of the objects (skeleton segments for a thin class) and a few
background lines kept 4 px from any object; ``round_time`` seconds of training. Each later
round adds ``n_new`` strokes with :func:`strokes.corrections` (one stroke of the true class
along each of the wrong regions with the most room for a 3-px brush; 1-px rims along borders
are not painted, nor pixels already painted: where the paint is still wrong the user goes to
the next errors) and continues from the previous model
(``init=`` it, keeping the better of the two when the API offers ``keep_better``), for
``round_time`` seconds again. 2D images only.

Each round's log line also takes the round apart (:func:`round_detail`): the new strokes' pixels
by class, false positives and negatives, the pixels that turned right and wrong near the new
strokes (under 10 px, 10-30 px) and far from them, and, for two classes, the IoU of the
round's weights at other thresholds than the one its edge calibration chose (a drop in the
weights or in the threshold).
"""
from __future__ import annotations

import numpy as np

import strokes as S
from quality_methods import Image, ours, score


def first_strokes(im: Image, seed: int) -> np.ndarray:
    """Round 0's strokes: lines through 10% of the objects, 8 background lines 4 px away."""
    return S.lines(im.truth, seed, margin=4, fraction=0.1, instances=im.instances, thin=im.thin,
                   n_background=8)


def round_detail(run, truth: np.ndarray, before: np.ndarray | None, new: np.ndarray | None,
                 strokes: np.ndarray | None = None) -> dict:
    """What one round did: ``run`` (``quality_methods.Run``) against ``truth``; ``before``: the
    previous round's labels and ``new``: the pixels its corrections painted (None in round 0)
    in ``strokes`` (the round's paint: ``new_px``, those pixels by class)."""
    from scipy import ndimage as ndi

    obj, true_obj = run.labels > 1, truth > 1
    out = dict(false_pos=int(np.count_nonzero(obj & ~true_obj)), false_neg=int(np.count_nonzero(~obj & true_obj)))
    if new is not None and strokes is not None:
        out["new_px"] = {int(c): int(n) for c, n in zip(*np.unique(strokes[new], return_counts=True))}
    if new is not None and before is not None:
        dist = ndi.distance_transform_edt(~new) if new.any() else np.full(truth.shape, np.inf)
        right, was = run.labels == truth, before == truth
        for name, lo, hi in (("near", 0, 10), ("mid", 10, 30), ("far", 30, np.inf)):
            zone = (dist >= lo) & (dist < hi)
            out[name] = (int(np.count_nonzero(right & ~was & zone)), int(np.count_nonzero(~right & was & zone)))
    if run.probs is not None and run.probs.shape[0] == 2:
        from napari_unet.core.train.calibration import carried_threshold

        t = carried_threshold(run.model) or 0.5    # the shift the model's head carries
        p = np.clip(run.probs[1].astype(np.float64), 1e-7, 1 - 1e-7)   # back to the trained head's
        raw = 1 / (1 + (1 - p) / p * (1 - t) / t)
        out["iou_at"] = {th: score(np.where(raw > th, 2, 1).astype(np.uint8), truth)
                         for th in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)}
    return out


def _detail_text(d: dict) -> str:
    text = f"; FP {d['false_pos']}, FN {d['false_neg']}"
    if "far" in d:
        text += "; turned right/wrong " + ", ".join(f"{k} +{d[k][0]}/-{d[k][1]}" for k in ("near", "mid", "far"))
    if "iou_at" in d:
        text += "; IoU at " + " ".join(f"{th:g}:{v:.4f}" for th, v in d["iou_at"].items())
    return text


def simulate(im: Image, *, round_time: float | None, rounds: int = 3, n_new: int = 8, seed: int = 1,
             round_steps: int | None = None, train_seed: int = 0, log=print) -> list[dict]:
    """Run the simulation on ``im``; one dict per round: round, new_strokes, painted (px),
    painted_pct, iou, steps, seconds, kept_previous. ``round_steps`` trains a fixed number of
    steps per round instead of ``round_time`` seconds (figures that do not depend on the
    machine's load, so that runs can go side by side); ``train_seed`` seeds the training."""
    if im.truth.ndim != 2:
        raise ValueError("the interactive simulation paints 2D images only")
    strokes = first_strokes(im, seed)
    out, model, new, before, added = [], None, 0, None, None
    for r in range(rounds + 1):
        if r > 0:
            before, old = run.labels, strokes
            strokes, new = S.corrections(run.labels, im.truth, strokes, n=n_new)
            added = strokes != old
        run = ours(im.img, strokes, dims=2, time_limit=None if round_steps else round_time,
                   steps=round_steps, init=model, seed=train_seed, **im.options)
        model = run.model
        row = dict(round=r, new_strokes=new, painted=int(np.count_nonzero(strokes)),
                   painted_pct=100.0 * np.count_nonzero(strokes) / strokes.size,
                   iou=score(run.labels, im.truth), steps=run.steps, seconds=run.seconds,
                   kept_previous=run.kept_previous)
        detail = round_detail(run, im.truth, before, added, strokes)
        row.update(detail)
        out.append(row)
        log(f"[{im.name}/interactive] round {r}: +{new} strokes, {row['painted']} px painted "
            f"({row['painted_pct']:.2f}%), IoU {row['iou']:.3f}, {run.steps} steps"
            + (" (kept the previous model)" if run.kept_previous else "")
            + f"; edge threshold {getattr(model, 'meta', {}).get('edge_threshold')}"
            + (f" ({run.message})" if run.message else "")
            + (f"; new paint by class {detail['new_px']}" if "new_px" in detail else "") + _detail_text(detail))
    return out


def table(name: str, rows: list[dict], bar: float = 0.85) -> list[str]:
    """Markdown lines for one simulation, with the issue's two criteria."""
    lines = [f"Interactive simulation on {name}:", "",
             "| round | new strokes | painted px | painted % | IoU | steps | kept previous |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['new_strokes']} | {r['painted']} | {r['painted_pct']:.2f}% "
                     f"| {r['iou']:.3f} | {r['steps']} | {'yes' if r['kept_previous'] else 'no'} |")
    ious = [r["iou"] for r in rows]
    drops = [b - a for a, b in zip(ious, ious[1:]) if b < a]
    within3 = max(ious[1:4]) if len(ious) > 1 else float("nan")
    lines += ["", f"- never loses IoU from one round to the next: "
              f"{'yes' if not drops else f'NO (worst drop {min(drops):+.3f})'}",
              f"- best IoU within 3 correction rounds: {within3:.3f} "
              f"({'reaches' if within3 >= bar else 'does NOT reach'} {bar:.2f})"]
    return lines
