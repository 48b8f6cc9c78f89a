"""Measured-and-not-kept training variants for the thin-class cases, reproducible: each one
patches the library for this process only, then runs ``quality_diagnose.py`` (fixed steps) or,
for ``tta``, trains once and scores plain and test-time-augmented predictions.

Variants (docs/quality.md, 2026-12-02, second session):

- ``region``: a local region term (Mumford-Shah / local Chan-Vese; Kim & Ye 2019,
  "Mumford-Shah loss functional for image segmentation with deep learning") added to the
  edge-aware regulariser: every pixel pays ``sum_k p_k |I - mu_k|^2 / var(I)``, ``mu_k`` the
  class's mean intensity in a ``--window`` px box around it (soft, from the detached
  prediction, shrunk towards the patch's class mean). It pulls a boundary to the intensity
  midway between the classes' local means, e.g. the half-maximum of a membrane's profile.
- ``unbalanced``: the stroke cross-entropy as a plain mean over painted pixels (the library
  weighs each class equally).
- ``tta``: the 8 flips/rotations of the image predicted and averaged (and the first 2 only).
- ``features``: fixed filter responses as extra input channels (Gaussian at sigma 1, 2, 4, and
  at each sigma the gradient magnitude and the Hessian's eigenvalues: the kind of features the
  random forest gets), the regulariser's affinities still on the image alone (docs/quality.md,
  2026-12-02, third session).
- ``bilateral``: a long-range Potts term with a fixed-width intensity kernel (Tang et al.
  2018's dense-CRF loss, sampled: ``--pairs`` random offsets per step, ``--sigma-xy`` px,
  ``--sigma-i`` in normalised intensity), added to the edge-aware regulariser (docs/quality.md,
  2026-12-02, fourth session).

Every variant was measured before the appearance prior became the default (2026-12-02, fourth
session); to reproduce its figures, turn the prior off: ``NAPARI_UNET_APPEARANCE=0``.

Usage (from the repository root)::

    python benchmarks/quality_variants.py region --weight 1 -- em/lines-m4 --steps 900 --threads 1
    python benchmarks/quality_variants.py unbalanced -- ovule3d/planes-m4 --steps 430 --threads 1
    python benchmarks/quality_variants.py tta -- em/lines-m4 --steps 900 --threads 1
    python benchmarks/quality_variants.py features -- em/blobs --steps 900 --threads 1
    NAPARI_UNET_APPEARANCE=0 python benchmarks/quality_variants.py bilateral --weight 3 -- em/lines-m8 --steps 900 --threads 1 --seed 1,2
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def region_term(probs: torch.Tensor, image: torch.Tensor, window: int, shrink: float = 0.05) -> torch.Tensor:
    dims = probs.ndim - 2
    pool = F.avg_pool2d if dims == 2 else F.avg_pool3d
    x = image.float()
    n, k, c = probs.shape[0], probs.shape[1], x.shape[1]
    spatial = x.shape[2:]
    with torch.no_grad():
        p = probs.float()
        px = (p.unsqueeze(2) * x.unsqueeze(1)).reshape(n, k * c, *spatial)
        box = dict(kernel_size=window, stride=1, padding=window // 2, count_include_pad=False)
        num = pool(px, **box).reshape(n, k, c, *spatial)
        den = pool(p, **box).unsqueeze(2)
        g = (px.reshape(n, k, c, -1).sum(-1) / p.reshape(n, k, 1, -1).sum(-1).clamp_min(1e-6))
        mu = (num + shrink * g.reshape(n, k, c, *([1] * dims))) / (den + shrink)
        var = x.reshape(n, c, -1).var(-1).clamp_min(1e-6).reshape(n, 1, c, *([1] * dims))
        d2 = ((x.unsqueeze(1) - mu) ** 2 / var).sum(2)
    return (probs * d2).sum(1).mean()


def add_to_regulariser(name: str, weight: float, term) -> None:
    """Patch ``term(probs, image)`` into the training loop's regulariser at ``weight`` (the
    loop multiplies what the regulariser returns by its own weight and ramp: divided out)."""
    import napari_unet.core.train as tr
    import napari_unet.core.train.loop as loop
    from napari_unet.core.losses import edge_aware_potts

    if tr.REG_WEIGHT <= 0 or tr.REG_WEIGHT_3D <= 0:
        raise SystemExit(f"{name} rides on the edge-aware regulariser: unset NAPARI_UNET_REG / NAPARI_UNET_REG_3D=0")

    def potts_plus(probs, image, offsets):
        w = tr.REG_WEIGHT if probs.ndim == 4 else tr.REG_WEIGHT_3D
        return edge_aware_potts(probs, image, offsets) + (weight / w) * term(probs, image)

    loop.edge_aware_potts = potts_plus


def use_region(weight: float, window: int) -> None:
    add_to_regulariser("region", weight, lambda probs, image: region_term(probs, image, window))


def bilateral_term(probs: torch.Tensor, image: torch.Tensor, pairs: int, sigma_xy: float,
                   sigma_i: float, gen: torch.Generator) -> torch.Tensor:
    """Long-range Potts with a fixed-width intensity kernel (Tang et al. 2018's dense-CRF loss,
    sampled): ``pairs`` random offsets per step, each component ~ N(0, sigma_xy^2) px (in the
    YX plane), ``w_ij = exp(-|I_i - I_j|^2 / (2 sigma_i^2))`` on the normalised image. Pixels
    of like intensity within ~sigma_xy px are pulled into the same class."""
    from napari_unet.core.losses import _pair_slices

    spatial = probs.shape[2:]
    dims = len(spatial)
    total = probs.new_zeros(())
    n = 0
    while n < pairs:
        off = [0] * dims
        dy, dx = (torch.randn(2, generator=gen) * sigma_xy).round().int().tolist()
        if (dy, dx) == (0, 0) or abs(dy) >= spatial[-2] or abs(dx) >= spatial[-1]:
            continue
        off[-2], off[-1] = dy, dx
        a, b = _pair_slices(spatial, tuple(off))
        with torch.no_grad():
            d2 = (image[a] - image[b]).float().pow(2).sum(1)
            w = torch.exp(-d2 / (2 * sigma_i ** 2))
        total = total + (w * (1 - (probs[a] * probs[b]).sum(1))).mean()
        n += 1
    return total / pairs


def use_bilateral(weight: float, pairs: int, sigma_xy: float, sigma_i: float) -> None:
    gen = torch.Generator().manual_seed(1234)
    add_to_regulariser("bilateral", weight,
                       lambda probs, image: bilateral_term(probs, image, pairs, sigma_xy, sigma_i, gen))


def use_unbalanced() -> None:
    import napari_unet.core.train as tr
    from napari_unet.core.losses import sparse_loss

    def unbalanced(logits, target, *, dice_weight=0.5, entropy_weight=0.0, eps=1.0):
        logits = logits.float()
        t = target.long()
        w = (t > 0).float()
        nll = -F.log_softmax(logits, 1).gather(1, (t - 1).clamp_min(0).unsqueeze(1)).squeeze(1)
        ce = (nll * w).sum() / w.sum().clamp_min(1.0)
        dice = sparse_loss(logits, target, dice_weight=1.0) - sparse_loss(logits, target, dice_weight=0.0)
        return ce + dice_weight * dice + 0.0 * logits.sum()

    tr.sparse_loss = unbalanced


def single_channel(im, variant: str):
    """``im``, or a clear exit for an image with channels (RGB), which ``variant`` does not take."""
    if im.channel_axis is not None:
        raise SystemExit(f"quality_variants.py {variant}: {im.name} has channels; {variant} takes "
                         "single-channel images")
    return im


def tta(case: str, steps: int, seed: int, threads: int, data: Path) -> dict:
    import napari_unet
    from quality import make_strokes
    from quality_methods import load_image, ours, score

    torch.set_num_threads(threads)
    name, style = case.split("/")
    im = single_channel(load_image(name, data), "tta")   # the flips below act on the last two axes
    run = ours(im.img, make_strokes(im, style), dims=3 if style.startswith("planes") else 2,
               steps=steps, seed=seed, **im.options)   # trains, then the plain prediction (run.probs)
    acc, n, out = None, 0, {}
    for rot in range(4):
        for flip in (False, True):
            if rot == 0 and not flip:
                p = run.probs
            else:
                x = np.rot90(im.img, rot, axes=(-2, -1))
                x = np.flip(x, -1) if flip else x
                p = napari_unet.predict(run.model, np.ascontiguousarray(x), device="cpu")
                p = np.rot90(np.flip(p, -1) if flip else p, -rot, axes=(-2, -1))
            acc = p if acc is None else acc + p
            n += 1
            if n in (1, 2, 8):
                out[{1: "plain", 2: "flip2", 8: "tta8"}[n]] = round(score((acc.argmax(0) + 1).astype(np.uint8), im.truth), 4)
    return dict(case=case, steps=steps, seed=seed, **out)


def filter_channels(img: np.ndarray, sigmas=(1, 2, 4)) -> np.ndarray:
    """``img`` (normalised to its 1-99.8 percentiles) and its filter responses, channels last."""
    from scipy import ndimage as ndi
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals

    x = img.astype(np.float32)
    lo, hi = np.percentile(x, (1, 99.8))
    x = (x - lo) / max(float(hi - lo), 1e-6)
    chans = [x]
    for s in sigmas:
        chans += [ndi.gaussian_filter(x, s), ndi.gaussian_gradient_magnitude(x, s)]
        h = hessian_matrix(x, sigma=s, order="rc", use_gaussian_derivatives=True)
        chans += [e * s * s for e in hessian_matrix_eigvals(h)]   # scale-normalised
    return np.stack(chans, -1).astype(np.float32)


def features(case: str, steps: int, seed: int, threads: int, data: Path) -> dict:
    import napari_unet.core.train.loop as loop
    from napari_unet.core.losses import edge_aware_potts
    from quality import make_strokes
    from quality_diagnose import diagnose
    from quality_methods import load_image, ours

    torch.set_num_threads(threads)
    name, style = case.split("/")
    im = single_channel(load_image(name, data), "features")
    x = filter_channels(im.img)
    loop.edge_aware_potts = lambda probs, image, offsets: edge_aware_potts(probs, image[:, :1], offsets)
    run = ours(x, make_strokes(im, style), dims=3 if style.startswith("planes") else 2, steps=steps,
               seed=seed, channel_axis=-1)
    return dict(case=case, variant="features", channels=x.shape[-1], steps=steps, seed=seed,
                **diagnose(run.probs, im.truth))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("variant", choices=["region", "unbalanced", "tta", "features", "bilateral"])
    ap.add_argument("--weight", type=float, default=1.0, help="region, bilateral: the term's weight")
    ap.add_argument("--window", type=int, default=15, help="region: the local window (px, odd)")
    ap.add_argument("--pairs", type=int, default=8, help="bilateral: random offsets per step")
    ap.add_argument("--sigma-xy", type=float, default=10.0, help="bilateral: offset spread (px)")
    ap.add_argument("--sigma-i", type=float, default=0.1, help="bilateral: intensity kernel width (normalised image)")
    args = ap.parse_args(own)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import quality_diagnose

    if args.variant in ("tta", "features"):
        q = argparse.ArgumentParser()
        q.add_argument("case")
        q.add_argument("--steps", type=int, default=400)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--data", type=Path, default=quality_diagnose.ROOT.parent / "shared" / "data" / "real")
        a = q.parse_args(rest)
        run = tta if args.variant == "tta" else features
        print(json.dumps(run(a.case, a.steps, a.seed, a.threads, a.data)))
        return 0
    if args.variant == "region":
        use_region(args.weight, args.window | 1)
    elif args.variant == "bilateral":
        use_bilateral(args.weight, args.pairs, args.sigma_xy, args.sigma_i)
    else:
        use_unbalanced()
    return quality_diagnose.main(rest)


if __name__ == "__main__":
    sys.exit(main())
