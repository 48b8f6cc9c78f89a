"""The files around the weights in a bioimage.io package: test image, cover, README, provenance."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

NORMALIZATION_NOTE = (
    "napari-unet maps the 1st and 99.8th percentiles of each channel of the whole image to 0 and 1 "
    "(no clipping); the package's scale_range step does the same per sample and channel. It differs "
    "only (a) for channels of more than 2,000,000 pixels, where napari-unet takes the percentiles "
    "on an even strided subsample (bioimage.io consumers use every pixel: a difference of a "
    "fraction of a grey level), (b) for a saturated image whose two percentiles are equal, where "
    "napari-unet falls back to the minimum and maximum, and (c) for a 2D model applied to a "
    "(Z, Y, X) stack, which napari-unet normalises as a whole and bioimage.io consumers slice by slice.")


def _size_at_least(target: int, mn: int, step: int) -> int:
    return mn + max(0, math.ceil((target - mn) / step)) * step


def test_shape(meta: dict, mn: int, step: int) -> tuple[int, ...]:
    """A valid input size (min + n * step) near 256 px in 2D, (min, ~128, ~128) in 3D."""
    if int(meta["dims"]) == 2:
        s = _size_at_least(256, mn, step)
        return (s, s)
    s = _size_at_least(128, mn, step)
    return (mn, s, s)


def _fit(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Centre-crop or (symmetrically) pad the spatial axes of a (C, *spatial) array to ``shape``."""
    sl, pad = [slice(None)], [(0, 0)]
    for n, s in zip(arr.shape[1:], shape):
        if n >= s:
            a = (n - s) // 2
            sl.append(slice(a, a + s))
            pad.append((0, 0))
        else:
            sl.append(slice(None))
            pad.append(((s - n) // 2, s - n - (s - n) // 2))
    out = np.asarray(arr[tuple(sl)], dtype=np.float32)
    if any(p != (0, 0) for p in pad):
        out = np.pad(out, pad, mode="symmetric")
    return out


def make_test_image(meta: dict, image: Any, channel_axis: int | None, mn: int, step: int) -> np.ndarray:
    """(C, *spatial) float32 raw test input: a part of ``image``, or a synthetic one."""
    shape = test_shape(meta, mn, step)
    cin = int(meta["in_channels"])
    if image is not None:
        from .predict import prepare_image

        arr = prepare_image(image, meta, channel_axis)
        if int(meta["dims"]) == 2 and arr.ndim == 4:  # a 2D model's stack: its middle slice
            arr = arr[:, arr.shape[1] // 2]
        out = _fit(arr, shape)
        from .checks import check_finite

        check_finite(out, name="the test image", doing="exporting")
        return out
    from .synthetic import make_nuclei

    chans = [make_nuclei(shape, seed=c)[0].astype(np.float32) for c in range(cin)]
    return np.stack(chans)


def exact_stats(img: np.ndarray, meta: dict) -> np.ndarray:
    """(channels, 2) percentiles of every pixel, as scale_range computes them (napari-unet's own
    percentile_stats subsamples channels over 2,000,000 pixels: the same up to then)."""
    from .normalize import MAX_SAMPLES, percentile_stats

    norm = meta.get("normalization") or {}
    low, high = norm.get("low", 1.0), norm.get("high", 99.8)
    if img[0].size <= MAX_SAMPLES:
        return percentile_stats(img, low, high, channel_axis=0)
    return np.stack([np.percentile(c.astype(np.float32).reshape(-1), [low, high]) for c in img])


def normalised(img: np.ndarray, meta: dict) -> np.ndarray:
    from .normalize import apply_stats

    return apply_stats(img, exact_stats(img, meta))


PALETTE = np.array([[230, 60, 60], [60, 200, 90], [70, 120, 240], [240, 200, 40], [200, 80, 220],
                    [40, 210, 210], [250, 140, 40], [150, 150, 150]], np.float32)


def cover_image(img: np.ndarray, probs: np.ndarray, meta: dict) -> np.ndarray:
    """(H, 2W, 3) uint8: the test input (left) and its predicted labels over it (right)."""
    x = normalised(img, meta)[0]
    p = probs
    if x.ndim == 3:  # middle plane of a volume
        x, p = x[x.shape[0] // 2], p[:, p.shape[1] // 2]
    gray = (np.clip(x, 0, 1) * 255).astype(np.float32)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    lab = np.argmax(p, axis=0)  # 0 = class 1 = background: left as it is
    over = rgb.copy()
    for k in range(1, p.shape[0]):
        m = lab == k
        over[m] = 0.45 * over[m] + 0.55 * PALETTE[(k - 1) % len(PALETTE)]
    return np.concatenate([rgb, over], axis=1).astype(np.uint8)


def write_cover(path: Path, img: np.ndarray, probs: np.ndarray, meta: dict) -> None:
    import imageio.v3 as iio

    iio.imwrite(path, cover_image(img, probs, meta), extension=".png")


def default_name(meta: dict) -> str:
    names = [n for n in meta.get("class_names", [])[1:]]
    what = " + ".join(names)[:60] if names else "segmentation"
    return f"napari-unet {meta['dims']}D U-Net ({what})"


def default_description(meta: dict) -> str:
    return (f"A {meta['dims']}D U-Net trained in napari-unet from painted strokes: "
            f"{meta['classes']} classes ({', '.join(meta.get('class_names', []))}), "
            f"{meta['in_channels']} input channel(s).")[:500]


def architecture_text(meta: dict) -> str:
    stem = ""
    if meta.get("stem"):
        stem = ("fixed filters in front (the image, and at Gaussian sigmas "
                + ", ".join("x".join(f"{v:g}" for v in s) for s in meta["stem"])
                + " voxels its smoothing, gradient magnitude and Hessian eigenvalues), ")
    return (f"U-Net, {meta['dims']}D, {stem}{meta['depth']} poolings (input sizes multiples of {meta['grid']}), "
            f"{meta['base_channels']} channels at full resolution doubling per level, two 3x3 "
            "convolutions + BatchNorm + ReLU per block, transposed-convolution upsampling, "
            f"1x1 head with {meta['classes']} logits; receptive field {meta.get('receptive_field')} px.")


def training_details(meta: dict) -> dict:
    t = meta.get("training") or {}
    if not t:
        return {}
    out: dict[str, Any] = {
        "training_preprocessing": "per-image percentile normalisation (1st-99.8th); random flips, "
                                  "rotations and intensity augmentation; sparse painted labels "
                                  "(0 = unlabeled, ignored by the loss)",
        "optimizer": "torch.optim.AdamW",
        "loss_function": "masked cross-entropy (+ Dice) on painted pixels",
    }
    if t.get("lr") is not None:
        out["initial_learning_rate"] = float(t["lr"])
    if t.get("batch_size") is not None:
        out["training_batch_size"] = float(t["batch_size"])
    if t.get("time_s") is not None:
        out["training_duration"] = round(float(t["time_s"]) / 3600.0, 5)
    return out


def readme(meta: dict, name: str, description: str, mn: int, step: int, halo: int,
           source_file: Path | None, eps: float) -> str:
    t = meta.get("training") or {}
    rows = "\n".join(f"| {i + 1} | {n} | {i} |" for i, n in enumerate(meta.get("class_names", [])))
    val = t.get("validation") or {}
    val_txt = (f"At the end of training, on held-out painted pixels: mean IoU {val.get('mean_iou'):.3f}, "
               f"mean Dice {val.get('mean_dice'):.3f} (step {val.get('step')})."
               if val.get("mean_iou") is not None else "No validation score was recorded in training.")
    train_txt = "This model has no training record." if not t else (
        f"Trained with napari-unet on {t.get('date')}: {t.get('steps')} steps "
        f"({t.get('total_steps')} in all), {t.get('time_s')} s on {t.get('device')} "
        f"({t.get('precision')}), patch {t.get('patch')}, batch {t.get('batch_size')}, "
        f"learning rate {t.get('lr')}, from {t.get('train_pixels')} painted pixels "
        f"({'fully painted masks, unpainted = background' if t.get('unpainted_is_background') else 'sparse strokes'}); "
        f"started from: {t.get('init') or 'a new model'}; stopped: {t.get('stop_reason')}.")
    return f"""# {name}

{description}

Exported by napari-unet's `export`{f' from `{source_file.name}`' if source_file else ''}.

## Input
`raw`: axes (batch, channel, {'z, ' if meta['dims'] == 3 else ''}y, x), {meta['in_channels']} channel(s), float32, any
intensity range. Spatial sizes are {mn} + n x {step} (the U-Net pools {meta['depth']} times).
Pre-processing: `scale_range` per sample and channel, percentiles {meta['normalization'].get('low', 1.0)} and
{meta['normalization'].get('high', 99.8)}, eps {eps:g}.

{NORMALIZATION_NOTE}

## Output
`probabilities`: axes (batch, channel, {'z, ' if meta['dims'] == 3 else ''}y, x), one channel per class
(softmax). Crop a halo of {halo} px on each side of a tile (measured receptive field
{meta.get('receptive_field')} px). Label value = channel index + 1 (napari-unet's convention:
0 is unlabeled, 1 is background).

| label | class | channel |
|---|---|---|
{rows}

## Training
{train_txt}

## Validation
{val_txt} The package's test tensors (`test_input.npy`, `test_output.npy`) are napari-unet's own
prediction of the test input; `bioimageio.core`'s `test_model` reproduces them from both weight
formats. Validate on images of your own with ground truth, e.g. `napari-unet evaluate`.

## Use in napari-unet
`napari-unet predict --model THIS.zip ...`, `napari-unet train --init THIS.zip ...`, or Load in the
Train widget: the settings under `config.napari_unet` restore the exact model.
"""
