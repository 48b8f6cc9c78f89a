"""Class-balanced patch sampling from the training regions (numpy + torch)."""
from __future__ import annotations

import numpy as np
import torch

from .augment import AugmentConfig, Augmenter
from .regions import Volume

__all__ = ["PatchSampler", "find_centres", "MAX_CENTRES"]

# most painted pixels per class and volume kept as patch centres (a random subset beyond)
MAX_CENTRES = 1_000_000


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


class PatchSampler(Augmenter):
    """Class-balanced random patches from :class:`Volume` s, augmented on ``device``.

    Each sample: pick a class present in the training paint (uniformly; with ``by_share``, that
    share of the picks by the class's share of the paint instead, as a dense mask's classes come
    in the image), a painted pixel of that class (volumes weighted by their paint), centre a crop
    on it with jitter, then
    resample the crop to the patch size with a random flip/rotation/scale (one grid_sample
    for image and labels; 90-degree rotations and flips land exactly on pixel centres).
    """

    def __init__(self, vols: list[Volume], counts: np.ndarray, *, dims: int, patch: tuple[int, ...],
                 crop: tuple[int, ...], device: torch.device, data_device: torch.device,
                 augment: AugmentConfig | None, seed: int, by_share: float = 0.0):
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
        paint = np.array([counts[:, c].sum() for c in self.present], np.float64)
        self.class_p = by_share * paint / paint.sum() + (1 - by_share) / len(self.present) if by_share else None
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
        cls = rng.choice(self.present, size=n, p=self.class_p) if self.class_p is not None else \
            rng.choice(self.present, size=n)   # (the same draws as before by_share existed)
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
