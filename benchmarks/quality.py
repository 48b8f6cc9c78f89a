"""Segmentation quality from sparse strokes: our U-Net vs Otsu vs a random-forest pixel classifier.

Data: the synthetic nuclei (``napari_unet.core.synthetic``), painted with ``make_strokes``
(well under 10% of the pixels). Each method gets the same strokes of the same training image;
scores are foreground IoU against the full ground truth, on the painted image itself and on
held-out images generated with other seeds (never painted, never seen in training).

- Otsu: ``skimage.filters.threshold_otsu`` on each image (unsupervised).
- RF: scikit-image's pixel classifier (``skimage.future.fit_segmenter`` with
  ``multiscale_basic_features``, sklearn ``RandomForestClassifier``) trained on the strokes.
  It gets the same per-image percentile normalisation as the U-Net (a stronger baseline than
  raw intensities when illumination differs between images).
- U-Net: ``napari_unet.train`` with default settings on the CPU for ``--time-limit`` seconds.

Usage::

    python benchmarks/quality.py                  # 120 s of training per case (the real run)
    python benchmarks/quality.py --quick          # smoke run (15 s, fewer held-out images)
    python benchmarks/quality.py --time-limit 60 --threads 2
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def normalised(img: np.ndarray) -> np.ndarray:
    from napari_unet.core.normalize import normalize

    return normalize(img)


def otsu_labels(img: np.ndarray) -> np.ndarray:
    from skimage.filters import threshold_otsu

    return np.where(img > threshold_otsu(img), 2, 1).astype(np.uint8)


def rf_features(img: np.ndarray) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(normalised(img), intensity=True, edges=True, texture=True,
                                     sigma_min=1, sigma_max=16)


def rf_fit(img: np.ndarray, strokes: np.ndarray, seed: int = 0):
    from sklearn.ensemble import RandomForestClassifier
    from skimage.future import fit_segmenter

    clf = RandomForestClassifier(n_estimators=50, n_jobs=2, max_depth=10, max_samples=0.05,
                                 random_state=seed)
    return fit_segmenter(strokes, rf_features(img), clf)


def rf_predict(clf, img: np.ndarray) -> np.ndarray:
    from skimage.future import predict_segmenter

    return predict_segmenter(rf_features(img), clf).astype(np.uint8)


def unet_labels(model, img: np.ndarray) -> np.ndarray:
    from napari_unet.core.predict import predict, probabilities_to_labels

    return probabilities_to_labels(predict(model, img, device="cpu"))


def fg_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    from napari_unet.core.metrics import evaluate

    return float(evaluate(pred, truth).get("foreground_iou", float("nan")))


def run_case(name, train_img, train_sem, strokes, heldout, *, dims, time_limit, log):
    from napari_unet import train
    from napari_unet.core.events import TrainFinished, TrainStarted, Validation
    from napari_unet.core.train import iter_train

    painted = float((strokes > 0).mean())
    log(f"[{name}] image {train_img.shape}, painted {painted * 100:.2f}% of the pixels, "
        f"{len(heldout)} held-out images")
    t = time.perf_counter()
    clf = rf_fit(train_img, strokes)
    rf_time = time.perf_counter() - t
    model, started, steps = None, None, 0
    last_val = None
    t = time.perf_counter()
    for ev in iter_train(train_img, strokes, dims=dims, time_limit=time_limit, device="cpu", seed=0):
        if isinstance(ev, TrainStarted):
            started = ev
        elif isinstance(ev, Validation):
            last_val = ev
        elif isinstance(ev, TrainFinished):
            model, steps = ev.model, ev.step
    train_time = time.perf_counter() - t
    log(f"[{name}] U-Net: {steps} steps in {train_time:.0f} s ({steps / train_time:.2f} steps/s), "
        f"patch {started.patch}, batch {started.batch_size}, base {model.meta['base_channels']}, "
        f"depth {model.meta['depth']}; RF fit {rf_time:.0f} s"
        + (f"; last validation mean IoU {last_val.mean_iou:.3f}" if last_val else ""))
    rows = []
    for label, img, sem in [("painted image", train_img, train_sem)] + [
            (f"held-out {i + 1}", im, se) for i, (im, se) in enumerate(heldout)]:
        rows.append((label, fg_iou(otsu_labels(img), sem), fg_iou(rf_predict(clf, img), sem),
                     fg_iou(unet_labels(model, img), sem)))
    return rows, {"steps": steps, "time": train_time, "painted": painted}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=None, help="seconds of U-Net training per case (default 120, --quick 15)")
    ap.add_argument("--quick", action="store_true", help="smoke run: short training, one held-out image")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--cases", default="2d,3d,3d-slices",
                    help="comma-separated: 2d, 3d (dims=3), 3d-slices (dims=2 on the stacks)")
    args = ap.parse_args(argv)
    import torch

    from napari_unet.core.synthetic import make_nuclei, make_strokes

    torch.set_num_threads(args.threads)
    tl = args.time_limit if args.time_limit is not None else (15.0 if args.quick else 120.0)
    n_held = 1 if args.quick else 3

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    results = []
    if "2d" in cases:
        img, sem, inst = make_nuclei((384, 384), seed=0)
        strokes = make_strokes(sem, inst, seed=0)
        held = [make_nuclei((384, 384), seed=100 + i)[:2] for i in range(n_held)]
        rows, info = run_case("2D", img, sem, strokes, held, dims=2, time_limit=tl, log=log)
        results.append(("2D (384x384), dims=2", rows, info))
    if "3d" in cases or "3d-slices" in cases:
        img, sem, inst = make_nuclei((24, 192, 192), seed=1, radius=(7.0, 12.0))
        strokes = make_strokes(sem, inst, seed=1, plane_step=4)
        held = [make_nuclei((24, 192, 192), seed=200 + i, radius=(7.0, 12.0))[:2] for i in range(n_held)]
        if "3d" in cases:
            rows, info = run_case("3D", img, sem, strokes, held, dims=3, time_limit=tl, log=log)
            results.append(("3D (24x192x192), dims=3", rows, info))
        if "3d-slices" in cases:
            rows, info = run_case("3D slices", img, sem, strokes, held, dims=2, time_limit=tl, log=log)
            results.append(("3D (24x192x192), dims=2 (info)", rows, info))

    print(f"\nForeground IoU from sparse strokes; U-Net trained {tl:.0f} s on CPU "
          f"({torch.get_num_threads()} threads). Held-out images were never painted.\n")
    head = f"| {'case':<36} | {'evaluated on':<14} | {'Otsu':>6} | {'RF':>6} | {'U-Net':>6} | {'margin':>7} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    ok = True
    for name, rows, info in results:
        held = [r for r in rows if r[0].startswith("held-out")]
        summary = list(rows)
        if len(held) > 1:
            summary.append(("held-out mean",) + tuple(float(np.mean([r[i] for r in held])) for i in (1, 2, 3)))
        for label, o, r, u in summary:
            margin = u - max(o, r)
            print(f"| {name:<36} | {label:<14} | {o:6.3f} | {r:6.3f} | {u:6.3f} | {margin:+7.3f} |")
        key_rows = [summary[0]] + ([summary[-1]] if held else [])
        if "(info)" not in name:  # dims=2 on a stack is shown for information, not the bar
            ok &= all(u - max(o, r) >= 0.05 for _, o, r, u in key_rows)
        print(f"| {'':<36} | {'(painted %)':<14} | {info['painted'] * 100:5.2f}% | steps {info['steps']} in {info['time']:.0f} s |")
    print(f"\nbar (U-Net >= 0.05 IoU above both baselines on the painted image and the held-out mean, "
          f"2D and 3D dims=3): "
          f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
