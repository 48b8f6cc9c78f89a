"""Why a quality case fails: train ours on one case of ``benchmarks/quality.py`` for a fixed
number of steps (so the figures do not depend on the machine's load) and take the result apart.

Prints one JSON line: foreground IoU (argmax), false-positive / false-negative pixels, the share
of the image each class takes in the prediction and in the truth, where the false positives lie
(their distance to the nearest true pixel of the class: 1, 2, 3 or more px), and two questions
about the probability map:

- ``best_threshold``: the best IoU any threshold on the class-2 probability reaches (two classes
  only; an oracle: it looks at the truth). When it is close to the argmax IoU, the errors are
  confident and no calibration or threshold can remove them.
- ``prior_corrected``: the IoU after re-estimating the class priors on the image itself and
  re-weighting the probabilities (Saerens, Latinne & Decaestecker 2002, "Adjusting the outputs
  of a classifier to new a priori probabilities"; training is class-balanced, so its prior is
  uniform). No truth used.

Usage (from the repository root)::

    python benchmarks/quality_diagnose.py em/blobs --steps 400
    python benchmarks/quality_diagnose.py ovule3d/planes-m4 --steps 300 --seed 1
    python benchmarks/quality_diagnose.py em/lines-m4 --steps 900 --seed 0,1,2 --threads 1
    python benchmarks/quality_diagnose.py bbbc039/lines-m4 --steps 50 --quick --save /tmp/p.npz
    python benchmarks/quality_diagnose.py em/blobs --steps 900 --option depth=2
    python benchmarks/quality_diagnose.py ovule3d/planes-m4 --steps 400 --dims 2
    python benchmarks/quality_diagnose.py em/blobs --method forest
    python benchmarks/quality_diagnose.py em/lines-m4 --method appearance
    python benchmarks/quality_diagnose.py bbbc039-zoom033/lines-m4 --steps 600 --threads 1 --flux
    python benchmarks/quality_diagnose.py --image cells.tif --mask cells_mask.tif --steps 600
    python benchmarks/quality_diagnose.py --image he.tif --mask he_mask.tif --channel-axis -1 --style blobs

``--image``/``--mask`` take apart your own image and its truth mask, painted as
``quality.py --image --mask`` paints them (``--style``: lines-m4 by default, planes-m4 for a
stack); the row's case reads ``custom/STYLE``.

``--method appearance`` takes apart what the appearance prior (``losses.AppearancePrior``, its
histograms filled from every painted pixel at once, no augmentation) says on its own: its
argmax labels, and its posterior by signed distance to the truth's objects (negative: inside).

``--flux`` adds the edge calibration's inputs to the row (``calibration``: the reference, the edge
score and the painted object's and background's recall per threshold, the threshold chosen): on
nuclei the flux is often a plateau, where the threshold an oracle prefers and the one the flux
chooses can differ (docs/quality.md).
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from quality import custom_style, make_strokes
from quality_methods import custom_image, load_image, ours, random_forest, rf_features, score

ROOT = Path(__file__).resolve().parents[1]


# what a file --save wrote holds under "written_by"; only such a file is replaced by a later run
SAVE_MARK = "benchmarks/quality_diagnose.py --save"


def _npz_path(path: Path) -> Path:
    """``path`` as numpy saves it: with ``.npz`` added unless it ends so."""
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _not_ours(path: Path) -> str:
    """Why ``path`` must not be written (it exists and ``--save`` did not write it), or ""."""
    if not path.exists():
        return "" if path.parent.is_dir() else f"--save {path}: folder {path.parent} does not exist"
    if not path.is_file():
        return f"--save {path} is not a file"
    try:
        with np.load(path, allow_pickle=False) as z:
            ours = "written_by" in z.files and str(z["written_by"]) == SAVE_MARK
    except (OSError, ValueError, EOFError) as e:
        ours, why = False, f" ({str(e).splitlines()[0][:120]})"
    else:
        why = ""
    return "" if ours else (f"--save {path} exists and was not written by this script{why}: "
                            f"name a new file, or remove that one first")


def prior_correct(probs: np.ndarray, iters: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(re-weighted probabilities, the estimated priors), starting from a uniform prior."""
    k = probs.shape[0]
    flat = probs.reshape(k, -1).astype(np.float64)
    pi0 = np.full(k, 1.0 / k)
    pi = pi0.copy()
    for _ in range(iters):
        q = flat * (pi / pi0)[:, None]
        q /= q.sum(0, keepdims=True)
        pi = q.mean(1)
    shape = (k,) + (1,) * (probs.ndim - 1)
    return probs * (pi / pi0).reshape(shape), pi


def diagnose(probs: np.ndarray, truth: np.ndarray) -> dict:
    k = probs.shape[0]
    lab = (probs.argmax(0) + 1).astype(np.uint8)
    fg, pf = truth > 1, lab > 1
    fp = pf & (lab != truth)
    dist = ndi.distance_transform_edt(~fg)   # distance of each pixel to the nearest object pixel
    d = dist[fp & ~fg]
    out = dict(iou=round(score(lab, truth), 4), fp=int(fp.sum()), fn=int((fg & (lab != truth)).sum()),
               predicted_share=[round(float(np.mean(lab == c)), 3) for c in range(1, k + 1)],
               true_share=[round(float(np.mean(truth == c)), 3) for c in range(1, k + 1)],
               fp_background_by_distance={"1": int((d <= 1).sum()), "2": int(((d > 1) & (d <= 2)).sum()),
                                          "3": int(((d > 2) & (d <= 3)).sum()), ">3": int((d > 3).sum())})
    if k == 2:
        ths = np.linspace(0.05, 0.995, 60)
        best = max((score(np.where(probs[1] > t, 2, 1).astype(np.uint8), truth), t) for t in ths)
        out["best_threshold"] = dict(iou=round(best[0], 4), threshold=round(float(best[1]), 3))
    else:   # Predict's "one class per object" labels on the same probabilities
        from napari_unet import probabilities_to_labels

        per_object = probabilities_to_labels(probs.astype(np.float32), one_class_per_object=True)
        out["one_class_per_object"] = round(score(per_object, truth), 4)
    corrected, pi = prior_correct(probs)
    out["prior_corrected"] = dict(iou=round(score((corrected.argmax(0) + 1).astype(np.uint8), truth), 4),
                                  priors=[round(float(v), 3) for v in pi])
    return out


def appearance(im, strokes) -> tuple[np.ndarray, list[dict]]:
    """The appearance prior's posterior ``(K, *spatial)`` fitted on ``strokes`` over the whole
    image (normalised as training does, per channel), and its profile by signed distance to the
    truth's objects (two classes)."""
    import torch

    import napari_unet.core.train as T
    from napari_unet.core.losses import AppearancePrior
    from napari_unet.core.normalize import normalize

    img = np.asarray(im.img, np.float32)
    chans = np.moveaxis(img, im.channel_axis, 0) if im.channel_axis is not None else img[None]
    x = torch.from_numpy(np.stack([normalize(c) for c in chans]))[None]
    prior = AppearancePrior(im.classes, x.shape[1], torch.device("cpu"), contrast=T.APPEARANCE_CONTRAST)
    probs = torch.zeros((1, im.classes) + strokes.shape)
    prior(probs, x, torch.from_numpy(strokes.astype(np.int64))[None])   # fills the histograms
    q = prior.posterior(x)[0].numpy()
    rows = []
    if im.classes == 2:
        fg = im.truth > 1
        signed = np.where(fg, -ndi.distance_transform_edt(fg), ndi.distance_transform_edt(~fg))
        for r in (-3, -2, -1, 1, 2, 3, 4, 6, 8):
            m = np.round(signed) == r
            if m.any():
                rows.append(dict(px_from_boundary=r, object_posterior=round(float(q[1][m].mean()), 3),
                                 says_background=round(float((q[0][m] > 0.5).mean()), 3),
                                 object_below_0_2=round(float((q[1][m] < 0.2).mean()), 3)))
    return q, rows


def _number(text: str):
    if "," in text:      # a tuple, e.g. spacing=0.235,0.15,0.15
        return tuple(_number(t) for t in text.split(","))
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@contextlib.contextmanager
def _recording_calibration(on: bool):
    """While a run trains: each call of ``calibration.choose_threshold`` (the end-of-run edge
    calibration) appended to the yielded list as {reference, chosen, scores, recall, bg_recall}
    (per threshold, rounded); nothing recorded when not ``on``."""
    from napari_unet.core.train import calibration

    choices: list[dict] = []
    if not on:
        yield choices
        return
    original = calibration.choose_threshold
    signature = inspect.signature(original)

    def recording(*args, **kwargs):
        chosen = original(*args, **kwargs)
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()            # the library's own defaults, not a copy of them here
        scores, thresholds = call.arguments["scores"], call.arguments["thresholds"]
        order = sorted(range(len(thresholds)), key=lambda i: thresholds[i])

        def per_threshold(values, digits):
            return None if values is None else {f"{thresholds[i]:g}": round(float(values[i]), digits)
                                                for i in order}
        choices.append(dict(reference=call.arguments["reference"], chosen=chosen,
                            scores=per_threshold(scores, 6),
                            recall=per_threshold(call.arguments["recall"], 4),
                            bg_recall=per_threshold(call.arguments["bg_recall"], 4)))
        return chosen

    calibration.choose_threshold = recording
    try:
        yield choices
    finally:
        calibration.choose_threshold = original


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("case", nargs="?", help="IMAGE/STYLE as in quality.py --list, e.g. em/blobs "
                                            "(or --image and --mask)")
    ap.add_argument("--image", type=Path, help="your own image (TIFF, PNG, ...) instead of a case")
    ap.add_argument("--mask", type=Path, help="its truth mask (TIFF, PNG, ...; 0 = background)")
    ap.add_argument("--channel-axis", type=int, help="the image's colour/channel axis (-1 for RGB; "
                    "default: the axis the mask lacks, if exactly one fits)")
    ap.add_argument("--style", help="with --image: lines-mN, blobs (2D) or planes-mN[-everyK] "
                                    "(stacks); default lines-m4 / planes-m4")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", default="0",
                    help="training seed, or several (0,1,2): one line each, then their mean and spread")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the cropped images of quality.py --quick")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "real")
    ap.add_argument("--save", type=Path, help="also save probabilities, truth and strokes (.npz)")
    ap.add_argument("--dims", type=int, choices=(2, 3),
                    help="2: a 2D model on a stack's painted planes (default: 3 for planes-*, else 2)")
    ap.add_argument("--method", choices=("ours", "forest", "appearance"), default="ours",
                    help="forest: take apart the random forest's labels (the benchmark's settings) "
                         "instead; appearance: the appearance prior's posterior on its own")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="a training option of napari_unet.iter_train (integers, floats, text, or "
                         "comma-separated tuples such as spacing=0.235,0.15,0.15), "
                         "e.g. depth=2; repeatable")
    ap.add_argument("--flux", action="store_true",
                    help="also record the edge calibration's choice (calibration.choose_threshold's "
                         "reference, edge score and painted object and background recall per "
                         "threshold, the threshold chosen): why a run chose its threshold")
    args = ap.parse_args(argv)
    if args.image or args.mask:
        if not (args.image and args.mask) or args.case:
            ap.error("--image and --mask go together, instead of a case")
        if args.quick:
            ap.error("--quick crops the benchmark's own images, not --image")
        try:
            im = custom_image(args.image, args.mask, args.channel_axis)
            style = custom_style(im.truth.ndim == 3, args.style)
        except (OSError, ValueError) as e:
            ap.error(str(e))
        args.case = f"custom/{style}"
    else:
        if args.style or args.channel_axis is not None:
            ap.error("--style and --channel-axis go with --image (a case names its style)")
        name, _, style = (args.case or "").partition("/")
        if not style or style == "interactive":
            ap.error("give IMAGE/STYLE, e.g. em/blobs (not the interactive simulation), or --image and --mask")
        im = load_image(name, args.data, quick=args.quick)
    import torch

    torch.set_num_threads(args.threads)
    strokes = make_strokes(im, style)
    try:
        seeds = [int(v) for v in str(args.seed).split(",")]
    except ValueError:
        ap.error(f"--seed takes integers separated by commas, got {args.seed!r}")
    if args.save and len(seeds) > 1:
        ap.error("--save takes one seed")
    if args.save:
        if args.save.is_dir():
            ap.error(f"--save {args.save} is a folder: name a file")
        args.save = _npz_path(args.save)
        refusal = _not_ours(args.save)
        if refusal:
            ap.error(refusal)
    options = {}
    for item in args.option:
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            ap.error(f"--option takes KEY=VALUE, got {item!r}")
        options[key] = _number(value)
    dims = args.dims or (3 if style.startswith("planes") else 2)
    if dims == 3 and im.img.ndim < 3:
        ap.error(f"{args.case} is a 2D image: --dims 3 needs a stack")
    if args.method != "ours" and (options or args.dims):
        ap.error(f"--option and --dims are training options of ours, not of the {args.method}")
    if args.method == "appearance":
        q, rows = appearance(im, strokes)
        print(json.dumps(dict(case=args.case, method="appearance", **diagnose(q, im.truth))), flush=True)
        for row in rows:
            print(json.dumps(row), flush=True)
        return 0
    if args.method == "forest":
        lab = random_forest(rf_features(im.img, im.channel_axis), strokes, args.threads)
        probs = np.stack([lab == c for c in range(1, im.classes + 1)]).astype(np.float32)
        print(json.dumps(dict(case=args.case, method="forest", **diagnose(probs, im.truth))), flush=True)
        return 0
    ious = []
    for seed in seeds:
        with _recording_calibration(args.flux) as choices:
            run = ours(im.img, strokes, dims=dims, steps=args.steps, seed=seed, **im.options, **options)
        if args.save:
            from napari_unet.core.io import atomic_path

            with atomic_path(args.save) as tmp, open(tmp, "wb") as f:   # whole or not at all
                np.savez_compressed(f, probs=run.probs.astype(np.float16), truth=im.truth,
                                    strokes=strokes, written_by=np.array(SAVE_MARK))
        record = run.model.meta.get("training") or {}
        reg = record.get("regulariser") or {}
        row = dict(case=args.case, steps=args.steps, seed=seed, dims=dims, **options,
                   train_seconds=round(run.seconds, 1),
                   edge_threshold=record.get("edge_threshold"),
                   halo_seen_at_step=reg.get("halo_seen_at_step"),
                   edge_aware_off_at_step=reg.get("edge_aware_off_at_step"),
                   **diagnose(run.probs, im.truth))
        if im.classes > 2:   # what Predict gives by default (each object one class where chosen)
            row.update(labels_iou=round(score(run.labels, im.truth), 4), kinds=record.get("kinds"))
        if args.flux:
            row["calibration"] = choices
        ious.append(row["iou"])
        print(json.dumps(row), flush=True)
    if len(seeds) > 1:   # single-seed differences on thin classes are inside this spread
        print(json.dumps(dict(case=args.case, steps=args.steps, seeds=seeds, iou_mean=round(float(np.mean(ious)), 4),
                              iou_min=min(ious), iou_max=max(ious))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
