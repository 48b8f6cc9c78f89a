"""Training data: input checks, normalisation, the validation split, patch sampling, augmentation.

Everything here is numpy + torch (no Qt). The flow, used by :mod:`napari_unet.core.train`:

1. :func:`check_pairs` validates images/labels (shapes, dtypes, NaN, painted classes) and
   returns channels-first views plus the labels (0 = unlabeled, 1..K).
2. :func:`build_volumes` normalises every image exactly as ``predict`` does (percentile
   statistics computed once on the whole image, then applied to the region used), crops each
   image to the painted region plus context, and (``dims=2`` on a stack) keeps only the slices
   that carry paint. Each result is a :class:`Volume`.
3. :func:`split_validation` holds out spatial blocks of paint (so validation pixels are not
   next to a training stroke of the same block), keeping at least half of each class for
   training. Held-out pixels are removed from the training labels.
4. :class:`PatchSampler` draws class-balanced patches centred (with jitter) on painted pixels
   and augments them on the training device: flips, 90-degree and free rotations, scaling,
   intensity scale/shift, gamma and noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import UserError, UserTypeError, say
from .limits import check_label_range
from .normalize import apply_stats, percentile_stats

# most painted pixels per class and volume kept as patch centres (a random subset beyond)
MAX_CENTRES = 1_000_000


# ----------------------------------------------------------------------------- input checks

def _as_list(x: Any, name: str) -> list:
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise UserError(f"{name} is an empty list")
        return list(x)
    return [x]


def check_image(image: Any, name: str, dims: int, channel_axis: int | None) -> np.ndarray:
    """Return a channels-first view ``(C, *spatial)`` of ``image`` after checking it (the same
    checks and messages as prediction, plus NaN/inf)."""
    from .predict import as_channels_first, check_finite

    image = as_channels_first(image, name, dims, channel_axis)
    if image.dtype.kind == "f":
        check_finite(image, name=name, doing="training")
    return image


def check_train_labels(labels: Any, name: str, spatial_shape: tuple[int, ...],
                       image_name: str, unpainted_is_background: bool) -> np.ndarray:
    """Integer labels of the image's spatial shape; 0 = unlabeled (or background, see option)."""
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
        raise UserTypeError(f"{name} must be a numpy array, got {type(labels).__name__}")
    arr = labels if isinstance(labels, np.ndarray) else np.asarray(labels)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind == "f":
        raise UserTypeError(f"{name} must be an integer array (0 = unlabeled, 1..K = classes), got "
                        f"{arr.dtype}; " + say("if it holds whole numbers convert it with .astype(np.uint8)",
                                             "save the labels as an integer (uint8 or uint16) image"))
    elif arr.dtype.kind not in "iu":
        raise UserTypeError(f"{name} must be an integer array (0 = unlabeled, 1..K = classes), got {arr.dtype}")
    if tuple(arr.shape) != tuple(spatial_shape):
        raise UserError(f"{name} has shape {tuple(arr.shape)} but {image_name} has shape "
                         f"{tuple(spatial_shape)}; labels must match the image pixel for pixel")
    if arr.size and arr.dtype.kind == "i" and int(arr.min()) < 0:
        raise UserError(f"{name} contain negative values; labels are 0 = unlabeled, 1..K = classes")
    if arr.size:
        check_label_range(int(arr.max()), name)
    if unpainted_is_background:
        arr = np.where(arr == 0, 1, arr).astype(np.uint16 if arr.max(initial=0) > 255 else np.uint8)
    return arr


def class_counts(labels: np.ndarray, chunk: int = 1 << 24) -> np.ndarray:
    """Pixel count per label value (index = value), chunked."""
    flat = labels.reshape(-1)
    counts = np.zeros(1, np.int64)
    for s in range(0, flat.size, chunk):
        c = np.bincount(flat[s:s + chunk].astype(np.int64, copy=False))
        if len(c) > len(counts):
            c[:len(counts)] += counts
            counts = c
        else:
            counts[:len(c)] += c
    return counts


@dataclass
class Pair:
    image: np.ndarray          # channels first, not normalised
    labels: np.ndarray         # spatial, 0 = unlabeled
    counts: np.ndarray         # pixels per label value
    name: str
    stats: np.ndarray | None = None


def check_pairs(images: Any, labels: Any, *, dims: int, channel_axis: int | None,
                unpainted_is_background: bool, what: str = "images") -> list[Pair]:
    imgs = _as_list(images, what)
    labs = _as_list(labels, "labels" if what == "images" else "val_labels")
    lname = "labels" if what == "images" else "val_labels"
    if len(imgs) != len(labs):
        raise UserError(f"{len(imgs)} {what} but {len(labs)} {lname}: give one labels array per image")
    pairs = []
    single = len(imgs) == 1 and not isinstance(images, (list, tuple))
    cin = None
    for i, (im, lab) in enumerate(zip(imgs, labs)):
        iname = what[:-1] if single else f"{what[:-1]} {i}"
        lname_i = lname if single else f"{lname} {i}"
        chw = check_image(im, iname, dims, channel_axis)
        if cin is None:
            cin = chw.shape[0]
        elif chw.shape[0] != cin:
            raise UserError(f"{iname} has {chw.shape[0]} channels but the first image has {cin}")
        lab = check_train_labels(lab, lname_i, chw.shape[1:], iname, unpainted_is_background)
        pairs.append(Pair(chw, lab, class_counts(lab), iname))
    return pairs


# ----------------------------------------------------------------------------- volumes

@dataclass
class Volume:
    """One normalised training region: ``image`` (C, *spatial) float32, labels (*spatial)."""

    image: np.ndarray
    train: np.ndarray          # training labels (validation pixels removed)
    val: np.ndarray | None     # validation labels (same shape) or None
    source: int                # index of the pair it came from
    origin: tuple[int, ...]    # where the region starts in the source (z first for dims=2 slices)
    tensor: torch.Tensor | None = None   # image on the data device
    labels_tensor: torch.Tensor | None = None
    centres: list[np.ndarray] = field(default_factory=list)  # per class value: flat indices


def round_up(v: int, g: int) -> int:
    return -(-int(v) // g) * g


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    sl = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        any_ = mask.any(axis=other) if other else mask
        idx = np.flatnonzero(any_)
        if idx.size == 0:
            return None
        sl.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(sl)


def _pad_to(arr: np.ndarray, shape: Sequence[int], mode: str) -> np.ndarray:
    """Pad the trailing ``len(shape)`` axes at the far end to at least ``shape``."""
    lead = arr.ndim - len(shape)
    after = [max(0, s - n) for n, s in zip(arr.shape[lead:], shape)]
    return _pad_both(arr, [0] * len(shape), after, mode)


def _pad_both(arr: np.ndarray, before: Sequence[int], after: Sequence[int], mode: str) -> np.ndarray:
    lead = arr.ndim - len(before)
    pad = [(0, 0)] * lead + list(zip(before, after))
    if not any(a or b for a, b in pad):
        return arr
    if mode == "reflect":
        if min(arr.shape[lead:]) < 2:
            return np.pad(arr, pad, mode="edge")
        return np.pad(arr, pad, mode="reflect")
    return np.pad(arr, pad, mode="constant")


def build_volumes(pairs: list[Pair], *, dims: int, crop: tuple[int, ...], norm: dict,
                  context: tuple[int, ...]) -> list[Volume]:
    """Normalise every pair and cut it to its painted region plus ``context`` on each side.

    Where the image ends before that, the region is extended by mirroring (labels 0), so that
    a painted pixel can sit anywhere in a patch, also near the border: otherwise, in a short
    stack, every patch would start at the same few planes, the paint would always fall on the
    same phase of the network's pooling grid, and the other phases would go untrained.
    """
    vols: list[Volume] = []
    for k, pr in enumerate(pairs):
        if pr.stats is None:
            pr.stats = percentile_stats(pr.image, norm.get("low", 1.0), norm.get("high", 99.8), channel_axis=0)
        painted = pr.labels != 0
        if dims == 2 and pr.labels.ndim == 3:
            zs = np.flatnonzero(painted.any(axis=(1, 2)))
            parts = [(int(z), pr.image[:, z], pr.labels[z], painted[z]) for z in zs]
        else:
            parts = [(None, pr.image, pr.labels, painted)]
        for z, img, lab, pm in parts:
            bb = _bbox(pm)
            if bb is None:
                continue
            sl = tuple(slice(max(0, s.start - c), min(n, s.stop + c))
                       for s, c, n in zip(bb, context, lab.shape))
            before = [max(0, c - s.start) for s, c in zip(bb, context)]
            after = [max(0, s.stop + c - n) for s, c, n in zip(bb, context, lab.shape)]
            region = np.asarray(img[(slice(None),) + sl])
            norm_img = apply_stats(region, pr.stats)
            lab_r = np.array(lab[sl], copy=True)  # never modify the caller's labels
            norm_img = _pad_both(norm_img, before, after, "reflect")
            lab_r = _pad_both(lab_r, before, after, "constant")
            norm_img = _pad_to(norm_img, crop, "reflect")
            lab_r = _pad_to(lab_r, crop, "constant")
            origin = tuple(s.start - b for s, b in zip(sl, before))
            if z is not None:
                origin = (z,) + origin
            vols.append(Volume(np.ascontiguousarray(norm_img), lab_r, None, k, origin))
    return vols


# ----------------------------------------------------------------------------- validation split

def block_class_counts(labels: np.ndarray, block: tuple[int, ...], classes: int) -> np.ndarray:
    """Counts ``(n_blocks..., classes + 1)`` of each label value per block."""
    nb = tuple(-(-n // b) for n, b in zip(labels.shape, block))
    out = np.zeros(nb + (classes + 1,), np.int64)
    padded = _pad_to(labels, tuple(n * b for n, b in zip(nb, block)), "constant")
    # chunk along the first axis, one block row at a time
    for i in range(nb[0]):
        chunk = padded[i * block[0]:(i + 1) * block[0]]
        shp = []
        for n, b in zip(nb[1:], block[1:]):
            shp += [n, b]
        for v in range(1, classes + 1):
            m = (chunk == v).reshape([block[0]] + shp)
            s = m.sum(axis=(0,) + tuple(range(2, 2 * len(nb) - 1, 2)))
            out[i, ..., v] = s
    return out


def split_validation(vols: list[Volume], *, fraction: float, block: tuple[int, ...], classes: int,
                     rng: np.random.Generator) -> None:
    """Move about ``fraction`` of each class's paint, in whole spatial blocks, to ``vol.val``.

    A block goes to validation only if it helps a class still short of its target and leaves
    every class in it at least half of its paint for training.
    """
    if fraction <= 0:
        return
    counts = [block_class_counts(v.train, block, classes) for v in vols]
    total = sum(c.reshape(-1, classes + 1).sum(0) for c in counts)
    target = fraction * total
    val = np.zeros(classes + 1, np.int64)
    cands = [(i, idx) for i, c in enumerate(counts)
             for idx in zip(*np.nonzero(c[..., 1:].sum(-1)))]
    order = rng.permutation(len(cands))
    chosen: dict[int, list[tuple[int, ...]]] = {}
    for j in order:
        i, idx = cands[j]
        bc = counts[i][idx]
        present = bc > 0
        present[0] = False
        if not np.any(present & (val < target)):
            continue
        if np.any(present & (total - val - bc < 0.5 * total)):
            continue
        val += bc
        chosen.setdefault(i, []).append(idx)
        if np.all(val[1:] >= target[1:]):
            break
    for i, idxs in chosen.items():
        v = vols[i]
        v.val = np.zeros_like(v.train)
        for idx in idxs:
            sl = tuple(slice(a * b, (a + 1) * b) for a, b in zip(idx, block))
            v.val[sl] = v.train[sl]
            v.train[sl] = 0


# ----------------------------------------------------------------------------- sampling

def find_centres(vols: list[Volume], classes: int, rng: np.random.Generator) -> np.ndarray:
    """Fill ``vol.centres`` (flat indices of training paint per class); return counts (vol, class)."""
    counts = np.zeros((len(vols), classes + 1), np.int64)
    for i, v in enumerate(vols):
        flat = v.train.reshape(-1)
        v.centres = [np.zeros(0, np.int64)]
        for c in range(1, classes + 1):
            idx = np.flatnonzero(flat == c)
            if idx.size > MAX_CENTRES:
                idx = np.sort(rng.choice(idx, MAX_CENTRES, replace=False))
            v.centres.append(idx)
            counts[i, c] = int(np.count_nonzero(flat == c)) if idx.size == MAX_CENTRES else idx.size
    return counts


@dataclass
class AugmentConfig:
    flip: bool = True
    rot90: bool = True           # dihedral transforms in the YX plane (exact, no interpolation)
    rotate_p: float = 0.5        # free rotation in the YX plane (bilinear)
    scale_p: float = 0.5
    scale: tuple[float, float] = (0.8, 1.25)
    intensity_p: float = 0.8
    contrast: tuple[float, float] = (0.75, 1.33)
    shift: float = 0.1
    gamma_p: float = 0.4
    gamma: tuple[float, float] = (0.7, 1.45)
    noise_p: float = 0.3
    noise: float = 0.04


class PatchSampler:
    """Class-balanced random patches from :class:`Volume` s, augmented on ``device``.

    Each sample: pick a class present in the training paint (uniformly), a painted pixel of
    that class (volumes weighted by their paint), centre a crop on it with jitter, then
    resample the crop to the patch size with a random flip/rotation/scale (one grid_sample
    for image and labels; 90-degree rotations and flips land exactly on pixel centres).
    """

    def __init__(self, vols: list[Volume], counts: np.ndarray, *, dims: int, patch: tuple[int, ...],
                 crop: tuple[int, ...], device: torch.device, data_device: torch.device,
                 augment: AugmentConfig | None, seed: int):
        self.vols = vols
        self.dims = dims
        self.patch = tuple(patch)
        self.crop = tuple(crop)
        self.device = device
        self.data_device = data_device
        self.aug = augment
        self.rng = np.random.default_rng(seed)
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(int(seed) + 1)
        self.classes = counts.shape[1] - 1
        self.present = [c for c in range(1, self.classes + 1) if counts[:, c].sum() > 0]
        self.vol_p = {c: counts[:, c] / counts[:, c].sum() for c in self.present}
        for v in vols:
            if v.tensor is None:
                v.tensor = torch.from_numpy(v.image).to(data_device)
                v.labels_tensor = torch.from_numpy(v.train.astype(np.int16 if v.train.max(initial=0) < 32768 else np.int32)).to(data_device)
        self.pin = device.type == "cuda" and data_device.type == "cpu"
        if augment is not None and self.patch[-1] != self.patch[-2]:
            # rotations in normalised coordinates would shear a non-square patch
            from dataclasses import replace

            self.aug = replace(augment, rot90=False, rotate_p=0.0)

    def _origins(self, n: int) -> list[tuple[int, tuple[int, ...]]]:
        out = []
        rng = self.rng
        cls = rng.choice(self.present, size=n)
        sp = len(self.crop)
        for c in cls:
            vi = int(rng.choice(len(self.vols), p=self.vol_p[c]))
            v = self.vols[vi]
            cent = v.centres[c]
            flat = int(cent[rng.integers(len(cent))])
            pos = np.unravel_index(flat, v.train.shape)
            origin = []
            for ax in range(sp):
                size = v.train.shape[ax]
                jit = self.patch[ax] // 4
                centre = pos[ax] + (int(rng.integers(-jit, jit + 1)) if jit else 0)
                o = centre - self.crop[ax] // 2
                origin.append(int(min(max(0, o), size - self.crop[ax])))
            out.append((vi, tuple(origin)))
        return out

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x float32 (n, C, *patch), y int64 (n, *patch))`` on ``device``; y 0 = ignore."""
        xs, ys = [], []
        for vi, o in self._origins(n):
            v = self.vols[vi]
            sl = tuple(slice(a, a + c) for a, c in zip(o, self.crop))
            xs.append(v.tensor[(slice(None),) + sl])
            ys.append(v.labels_tensor[sl])
        x = torch.stack(xs)
        y = torch.stack(ys)
        if self.data_device != self.device:
            if self.pin:
                x, y = x.pin_memory(), y.pin_memory()
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
        return self.transform(x, y)

    def uniform_batch(self, n: int) -> torch.Tensor:
        """``n`` patches at uniformly random places (volumes weighted by size), not augmented:
        what the network sees at prediction, for re-estimating BatchNorm statistics."""
        sizes = np.array([v.train.size for v in self.vols], np.float64)
        xs = []
        for _ in range(n):
            v = self.vols[int(self.rng.choice(len(self.vols), p=sizes / sizes.sum()))]
            o = [int(self.rng.integers(0, s - p + 1)) for s, p in zip(v.train.shape, self.patch)]
            xs.append(v.tensor[(slice(None),) + tuple(slice(a, a + p) for a, p in zip(o, self.patch))])
        return torch.stack(xs).float()

    # -- augmentation on the device
    def _uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=self.device) * (hi - lo) + lo

    def _bern(self, n: int, p: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=self.device) < p

    def transform(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        a = self.aug
        dev = self.device
        x = x.float()
        yf = y.float().unsqueeze(1)
        geometric = a is not None and (a.flip or a.rot90 or a.rotate_p > 0 or a.scale_p > 0)
        if geometric or self.crop != self.patch:
            # affine (output -> input, normalised coords), in the YX plane (grid x = X, y = Y)
            ang = torch.zeros(n, device=dev)
            scale = torch.ones(n, device=dev)
            fx = torch.ones(n, device=dev)
            fy = torch.ones(n, device=dev)
            fz = torch.ones(n, device=dev)
            if a is not None:
                if a.rot90:
                    k = torch.randint(0, 4, (n,), generator=self.gen, device=dev).float()
                    ang = ang + k * (math.pi / 2)
                if a.rotate_p > 0:
                    ang = ang + torch.where(self._bern(n, a.rotate_p),
                                            self._uniform(n, -math.pi / 4, math.pi / 4), 0.0)
                if a.scale_p > 0:
                    s = torch.exp(self._uniform(n, math.log(a.scale[0]), math.log(a.scale[1])))
                    scale = torch.where(self._bern(n, a.scale_p), s, scale)
                if a.flip:
                    fx = torch.where(self._bern(n, 0.5), -1.0, 1.0)
                    fy = torch.where(self._bern(n, 0.5), -1.0, 1.0)
                    fz = torch.where(self._bern(n, 0.5), -1.0, 1.0)
            cos, sin = torch.cos(ang), torch.sin(ang)
            ry = self.patch[-2] / self.crop[-2]
            rx = self.patch[-1] / self.crop[-1]
            nd = self.dims
            theta = torch.zeros(n, nd, nd + 1, device=dev)
            # input = R(ang) * scale * flip * output, then shrunk to the crop's centre
            theta[:, 0, 0] = cos * scale * fx * rx
            theta[:, 0, 1] = -sin * scale * fy * rx
            theta[:, 1, 0] = sin * scale * fx * ry
            theta[:, 1, 1] = cos * scale * fy * ry
            if nd == 3:
                theta[:, 2, 2] = fz * (self.patch[0] / self.crop[0])
            size = (n, x.shape[1]) + self.patch
            grid = F.affine_grid(theta, list(size), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
            yf = F.grid_sample(yf, grid, mode="nearest", padding_mode="zeros", align_corners=False)
        y = yf[:, 0].round().long()
        if a is not None:
            shape = (n,) + (1,) * (x.ndim - 1)
            if a.gamma_p > 0:
                g = torch.exp(self._uniform(n, math.log(a.gamma[0]), math.log(a.gamma[1])))
                g = torch.where(self._bern(n, a.gamma_p), g, 1.0).view(shape)
                flat = x.reshape(n, -1)
                lo = flat.amin(1).view(shape)
                hi = flat.amax(1).view(shape)
                rng_ = (hi - lo).clamp_min(1e-6)
                x = lo + rng_ * ((x - lo) / rng_).clamp(0, 1) ** g
            if a.intensity_p > 0:
                on = self._bern(n, a.intensity_p)
                c = torch.where(on, torch.exp(self._uniform(n, math.log(a.contrast[0]),
                                                            math.log(a.contrast[1]))), 1.0)
                b = torch.where(on, self._uniform(n, -a.shift, a.shift), 0.0)
                x = x * c.view(shape) + b.view(shape)
            if a.noise_p > 0:
                sd = torch.where(self._bern(n, a.noise_p), self._uniform(n, 0.0, a.noise), 0.0)
                x = x + torch.randn(x.shape, generator=self.gen, device=dev) * sd.view(shape)
        return x.contiguous(), y


# ----------------------------------------------------------------------------- validation crops

@dataclass
class ValSet:
    x: torch.Tensor            # (n, C, *patch) on the data device
    y: torch.Tensor            # (n, *patch) labels (only each crop's own block), 0 = ignore
    pixels: int                # validation pixels (all of them, not only those in the crops)


def build_valset(vols: list[Volume], *, patch: tuple[int, ...], block: tuple[int, ...],
                 max_crops: int, rng: np.random.Generator, data_device: torch.device) -> ValSet | None:
    """Fixed validation crops of ``patch`` size, each centred on one block of held-out paint."""
    items = []
    pixels = 0
    for vi, v in enumerate(vols):
        if v.val is None:
            continue
        pixels += int(np.count_nonzero(v.val))
        counts = block_class_counts(v.val, block, int(v.val.max(initial=0)))
        for idx in zip(*np.nonzero(counts[..., 1:].sum(-1))):
            items.append((vi, idx))
    if not items:
        return None
    if len(items) > max_crops:
        keep = rng.choice(len(items), max_crops, replace=False)
        items = [items[i] for i in sorted(keep)]
    xs, ys = [], []
    for vi, idx in items:
        v = vols[vi]
        bsl = []
        csl = []
        for a, b, p, n in zip(idx, block, patch, v.val.shape):
            start, stop = a * b, min(n, (a + 1) * b)
            o = min(max(0, (start + stop) // 2 - p // 2), n - p)
            csl.append(slice(o, o + p))
            bsl.append(slice(start - o, stop - o))
        csl_t, bsl_t = tuple(csl), tuple(bsl)
        xs.append(v.image[(slice(None),) + csl_t])
        lab = np.zeros(patch, np.int64)
        lab[bsl_t] = v.val[csl_t][bsl_t]
        ys.append(lab)
    x = torch.from_numpy(np.stack(xs)).to(data_device)
    y = torch.from_numpy(np.stack(ys)).to(data_device)
    return ValSet(x, y, pixels)
