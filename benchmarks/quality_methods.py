"""Data and methods for ``benchmarks/quality.py``: the benchmark images with their truth, the
classical baselines (Otsu, random forest), our network through the public API, and the score."""
from __future__ import annotations

import inspect
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

REAL_FILES = {
    "bbbc039": "bbbc039_u2os_nuclei",
    "em": "isbi2012_em",
    "ovule3d": "plantseg_ovule3d",
}

# BBBC039 under other acquisitions, and as DIC (renderings.py; quality.py --probes): information rows
PROBES = {
    "bbbc039-lowlight": "BBBC039 at ~20 photons (shot and read noise; proxy)",
    "bbbc039-shading": "BBBC039 under uneven illumination and a background ramp (proxy)",
    "bbbc039-zoom2": "BBBC039 at twice the magnification (nuclei ~60 px; proxy)",
    "bbbc039-zoom05": "BBBC039 at half the magnification (nuclei ~15 px; proxy)",
    "bbbc039-zoom033": "BBBC039 at a third of the magnification (nuclei ~10 px; proxy)",
    "bbbc039-dic": "BBBC039 nuclei rendered as DIC (relief, no brighter or darker; proxy)",
    "bbbc039-uneven": "BBBC039, each nucleus at its own brightness (a 50-fold range; proxy)",
    "bbbc039-phase2": "BBBC039 rendered as phase contrast at twice the magnification (proxy)",
}


@dataclass
class Image:
    name: str
    title: str              # for the table
    img: np.ndarray
    truth: np.ndarray       # uint8, 1 = background, 2..K = classes, no 0
    instances: np.ndarray | None = None
    thin: dict = field(default_factory=dict)  # {class: True} for network classes
    channel_axis: int | None = None  # -1 for RGB (the channels-last images of renderings.py)

    @property
    def classes(self) -> int:
        return int(self.truth.max())

    @property
    def options(self) -> dict:
        """Training options the image needs (its channel axis), for ``ours``."""
        return {} if self.channel_axis is None else {"channel_axis": self.channel_axis}


def _read(data: Path, stem: str):
    import tifffile

    return tifffile.imread(data / f"{stem}_img.tif"), tifffile.imread(data / f"{stem}_mask.tif")


def _crop(a, quick):
    if a is None or not quick:
        return a
    return a[..., :256, :256] if a.ndim == 2 else a[:, :96, :96]


def load_image(name: str, data: Path, quick: bool = False) -> Image:
    """The benchmark image ``name`` (see ``IMAGES``); ``quick`` crops it."""
    from napari_unet.core.synthetic import make_nuclei

    if name.startswith("bbbc039"):   # the real nuclei, as they are or rendered
        img, inst = _read(data, REAL_FILES["bbbc039"])
        img, inst = _crop(img, quick), _crop(inst.astype(np.int32), quick)
        if name in PROBES:
            import renderings as R

            if name.startswith("bbbc039-zoom"):
                img, inst = R.zoom(img, inst, {"bbbc039-zoom2": 2.0, "bbbc039-zoom05": 0.5}.get(name, 1 / 3))
            elif name == "bbbc039-phase2":
                img, inst = R.zoom(img, inst, 2.0)
                img = R.render_phase(img)
            elif name == "bbbc039-lowlight":
                img = R.render_lowlight(img)
            elif name == "bbbc039-dic":
                img = R.render_dic(img)
            elif name == "bbbc039-uneven":
                img = R.render_uneven(img, inst)
            else:
                img = R.render_shading(img)
        truth = np.where(inst > 0, 2, 1).astype(np.uint8)
        if name in PROBES:
            return Image(name, PROBES[name], img, truth, inst)
        if name == "bbbc039-he":
            from renderings import render_he

            return Image(name, "BBBC039 nuclei rendered as H&E brightfield (RGB; proxy)",
                         render_he(img), truth, inst, channel_axis=-1)
        if name == "bbbc039-phase":
            from renderings import render_phase

            return Image(name, "BBBC039 nuclei rendered as phase contrast (proxy)", render_phase(img),
                         truth, inst)
        if name == "bbbc039":
            return Image(name, "BBBC039 U2OS nuclei (fluorescence)", img, truth, inst)
        if name == "bbbc039-3class":
            # 3 classes: dim and bright nuclei, split at the median of the nuclei's mean intensity
            ids = np.unique(inst[inst > 0])
            means = ndi.mean(img.astype(np.float64), inst, ids)
            bright = ids[means > np.median(means)]
            truth[np.isin(inst, bright)] = 3
            return Image(name, "BBBC039, dim/bright nuclei (3 classes)", img, truth, inst)
    if name == "em":
        img, mask = _read(data, REAL_FILES["em"])
        truth = (_crop(mask, quick) > 0).astype(np.uint8) + 1  # 2 = membrane
        return Image(name, "ISBI 2012 EM, membranes", _crop(img, quick), truth, thin={2: True})
    if name == "ovule3d":
        img, inst = _read(data, REAL_FILES["ovule3d"])
        inst = _crop(inst.astype(np.int32), quick)
        boundary = ndi.maximum_filter(inst, 3) != ndi.minimum_filter(inst, 3)
        return Image(name, "PlantSeg ovule 3D, cell boundaries", _crop(img, quick),
                     boundary.astype(np.uint8) + 1, thin={2: True})
    if name == "ihc":
        img, truth = _ihc_tissue()
        if quick:
            img, truth = img[:256, :256], truth[:256, :256]
        return Image(name, "IHC tissue, DAB-stained epithelium (RGB; truth from colour deconvolution)",
                     img, truth, ndi.label(truth == 2)[0], channel_axis=-1)
    if name == "synth2d":
        img, sem, inst = make_nuclei((256, 256) if quick else (384, 384), seed=0)
        return Image(name, "synthetic nuclei 2D", img, sem, inst.astype(np.int32))
    if name == "synth3d":
        img, sem, inst = make_nuclei((24, 96, 96) if quick else (24, 192, 192), seed=1, radius=(7.0, 12.0))
        return Image(name, "synthetic nuclei 3D", img, sem, inst.astype(np.int32))
    raise ValueError(f"unknown image {name!r}")


def custom_image(image: Path, mask: Path, channel_axis: int | None = None) -> Image:
    """Your own image and its truth mask (TIFF, or PNG/JPEG and the like; 0 = background, any
    other value an object; an instance mask's values separate touching objects), checked like the
    benchmark's images (``quality.py --image --mask``). ``channel_axis``: the image's
    colour/channel axis, if any; without one, an image with one axis more than its mask gets
    that axis as its channels when exactly one axis fits (said on stderr). Axes of length 1
    (an ImageJ file's single time point or channel) are dropped first. Raises ValueError (or
    OSError) naming what does not fit, before anything is trained."""
    import sys

    from napari_unet.core.checks import check_finite
    from napari_unet.core.io import read_image

    img, inst = np.array(read_image(image)), np.array(read_image(mask))   # in memory, writable
    if channel_axis is None and img.shape != inst.shape:
        img, inst = _squeezed(img), _squeezed(inst)
        channel_axis = _channels_from_mask(img.shape, inst.shape)
        if channel_axis is not None:
            print(f"{Path(image).name}: axis {channel_axis} (length {img.shape[channel_axis]}) taken as "
                  f"the channels, from the mask's shape {inst.shape} (name it with --channel-axis)",
                  file=sys.stderr)
    spatial = img.shape if channel_axis is None else tuple(
        n for i, n in enumerate(img.shape) if i != channel_axis % img.ndim)
    if inst.shape != spatial:
        hint = (" (if it has channels, name their axis with --channel-axis)"
                if channel_axis is None and img.ndim == inst.ndim + 1 else "")
        raise ValueError(f"the mask {mask} is {inst.shape}, the image's spatial shape is {spatial} "
                         f"(image {img.shape}{', channel axis %d' % channel_axis if channel_axis is not None else ''})"
                         f"{hint}")
    if inst.ndim not in (2, 3):
        raise ValueError(f"the mask {mask} has {inst.ndim} axes: 2D images or 3D stacks only")
    if img.dtype.kind not in "biuf":
        raise ValueError(f"the image {image} holds {img.dtype} values: numbers only")
    check_finite(img, name=f"the image {image}", doing="checking it")
    inst = _integer_labels(inst, mask)
    truth = np.where(inst > 0, 2, 1).astype(np.uint8)
    if (truth == 2).all() or (truth == 1).all():
        raise ValueError(f"the mask {mask} has {'no background' if (truth == 2).all() else 'no objects'}")
    return Image("custom", f"{Path(image).name} (truth {Path(mask).name})", img, truth,
                 inst.astype(np.int32), channel_axis=channel_axis)


def _squeezed(a: np.ndarray) -> np.ndarray:
    """``a`` without its axes of length 1, unless that would leave fewer than 2."""
    return a.squeeze() if sum(n > 1 for n in a.shape) >= 2 else a


def _channels_from_mask(shape: tuple, spatial: tuple) -> int | None:
    """The one axis of an image of ``shape`` whose removal leaves the mask's ``spatial`` shape
    (the last such axis if several fit, as for RGB); None if the image has not exactly one axis
    more than the mask, or none fits."""
    if len(shape) != len(spatial) + 1:
        return None
    fits = [i for i in range(len(shape)) if shape[:i] + shape[i + 1:] == tuple(spatial)]
    return fits[-1] if fits else None


def _integer_labels(inst: np.ndarray, mask: Path) -> np.ndarray:
    """The mask as integer labels: integers and booleans as they are; floats (as ImageJ saves a
    32-bit mask) only if every value is a finite whole number."""
    if np.issubdtype(inst.dtype, np.integer) or np.issubdtype(inst.dtype, np.bool_):
        return inst
    if np.issubdtype(inst.dtype, np.floating) and np.isfinite(inst).all() and (inst == np.round(inst)).all():
        return inst.astype(np.int64)
    raise ValueError(f"the mask {mask} holds {inst.dtype} values that are not whole numbers: "
                     f"integer labels only (0 = background)")


def _ihc_tissue() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's immunohistochemistry image (real, 512x512 RGB, shipped with the package: no
    download) and a truth for its DAB-stained (brown) epithelium: the DAB channel of a colour
    deconvolution (Ruifrok & Johnston 2001), smoothed (sigma 3), above Otsu's threshold, regions
    and holes under 200 / 3,000 px removed. Not a public ground truth: a proxy that tells
    whether a method keeps a textured stained region whole (its lighter nuclei inside)."""
    from skimage import data
    from skimage.color import rgb2hed
    from skimage.filters import gaussian, threshold_otsu

    img = data.immunohistochemistry()
    dab = gaussian(rgb2hed(img)[..., 2], 3)
    mask = dab > threshold_otsu(dab)
    for keep_small, area in ((False, 200), (True, 3000)):   # small regions, then small holes
        lab, _ = ndi.label(~mask if keep_small else mask)
        small = np.bincount(lab.ravel()) < area
        small[0] = False
        mask = mask | small[lab] if keep_small else mask & ~small[lab]
    return img, (mask.astype(np.uint8) + 1)


# ----------------------------------------------------------------------------- scores

def score(pred: np.ndarray, truth: np.ndarray) -> float:
    """Foreground IoU: class 2's IoU for two classes, the mean IoU over classes 2..K otherwise."""
    ious = []
    for c in range(2, int(truth.max()) + 1):
        p, t = pred == c, truth == c
        union = np.count_nonzero(p | t)
        ious.append(np.count_nonzero(p & t) / union if union else 1.0)
    return float(np.mean(ious))


def stroke_fit(pred: np.ndarray, strokes: np.ndarray) -> float:
    """Balanced accuracy on the painted pixels (mean per-class recall): what a user can check."""
    rec = [np.mean(pred[strokes == c] == c) for c in np.unique(strokes) if c > 0]
    return float(np.mean(rec)) if rec else 0.0


# ----------------------------------------------------------------------------- classical

def otsu(img: np.ndarray, strokes: np.ndarray, classes: int, channel_axis: int | None = None) -> np.ndarray:
    """Otsu's threshold on the image (multi-Otsu for K > 2 classes; on the mean over channels
    for a multi-channel image); which side is which class (the polarity: membranes are dark) is
    chosen as the assignment that fits the strokes best."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    x = img.astype(np.float32)
    if channel_axis is not None:
        x = x.mean(axis=channel_axis)
    th = [threshold_otsu(x)] if classes == 2 else list(threshold_multiotsu(x, classes=classes))
    region = np.digitize(x, th)  # 0..K-1, darkest first
    best, best_fit = None, -1.0
    for perm in itertools.permutations(range(1, classes + 1)):
        lab = np.asarray(perm, np.uint8)[region]
        fit = stroke_fit(lab, strokes)
        if fit > best_fit:
            best, best_fit = lab, fit
    return best


def rf_features(img: np.ndarray, channel_axis: int | None = None) -> np.ndarray:
    from skimage.feature import multiscale_basic_features

    return multiscale_basic_features(img.astype(np.float32), sigma_min=1, sigma_max=16,
                                     channel_axis=channel_axis)


def random_forest(features: np.ndarray, strokes: np.ndarray, threads: int) -> np.ndarray:
    """scikit-image's pixel classifier on the strokes, the acceptance check's settings."""
    from sklearn.ensemble import RandomForestClassifier
    from skimage.future import fit_segmenter, predict_segmenter

    clf = RandomForestClassifier(n_estimators=50, n_jobs=threads, max_depth=10, max_samples=0.05,
                                 random_state=0)
    return predict_segmenter(features, fit_segmenter(strokes, features, clf)).astype(np.uint8)


# ----------------------------------------------------------------------------- ours

@dataclass
class Run:
    labels: np.ndarray
    model: object
    steps: int
    seconds: float
    kept_previous: bool = False
    message: str = ""
    probs: np.ndarray | None = None


def ours(img, strokes, *, dims: int, time_limit: float | None = None, steps: int | None = None,
         init=None, keep_better: bool = True, seed: int = 0, **options) -> Run:
    """``napari_unet.iter_train`` with its defaults on the CPU for ``time_limit`` seconds (or
    ``steps`` steps; from ``init`` when given, keeping the better of the two where the API
    offers it), then ``napari_unet.predict``; labels as Predict gives them by default (argmax + 1;
    more than two classes: one class per object where the model suggests it). ``options``: other training
    options (e.g. ``depth=2``; ``channel_axis`` is passed to the prediction too), for
    experiments; the benchmark itself passes none."""
    import napari_unet

    kw = dict(dims=dims, time_limit=time_limit, steps=steps, device="cpu", seed=seed, **options)
    if init is not None:
        kw["init"] = init
        if keep_better and "keep_better" in inspect.signature(napari_unet.iter_train).parameters:
            kw["keep_better"] = True
    t = time.perf_counter()
    last = None
    for ev in napari_unet.iter_train(img, strokes, **kw):
        last = ev
    secs = time.perf_counter() - t
    if getattr(last, "reason", None) in ("nan", "error"):
        raise RuntimeError(f"training ended with {last.reason}: {getattr(last, 'message', '')}")
    model = last.model
    labels, probs = predicted_labels(model, img, options.get("channel_axis"))
    return Run(labels, model, int(getattr(last, "step", 0)), secs,
               bool(getattr(last, "kept_previous", False)), getattr(last, "message", ""), probs)


def predicted_labels(model, img, channel_axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``napari_unet.predict`` on the CPU, then the labels Predict gives by default (uint8):
    argmax, each object one class where the model's training found each painted object of one
    class (more than two classes). Returns (labels, probabilities)."""
    import napari_unet
    from napari_unet.core.postprocess import probabilities_to_labels, suggests_one_class_per_object

    probs = napari_unet.predict(model, img, device="cpu", channel_axis=channel_axis)
    labels = probabilities_to_labels(probs, one_class_per_object=suggests_one_class_per_object(model.meta))
    return labels.astype(np.uint8), probs
