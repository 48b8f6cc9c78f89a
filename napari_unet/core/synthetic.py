"""Deterministic synthetic microscopy: nuclei-like blobs with ground truth and sparse strokes.

Blobs of varied size, shape and brightness, some touching, blurred by a PSF, under uneven
illumination, with shot and read noise. Used by the sample data, the tests, the demo and
the quality benchmark. Pure numpy + scipy; fast enough to make on the fly.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["make_nuclei", "make_strokes", "sample_2d", "sample_3d"]

BACKGROUND, NUCLEUS = 1, 2


def _blob_field(shape: tuple[int, ...], rng: np.random.Generator, n: int, radius: tuple[float, float],
                touching: float) -> tuple[np.ndarray, np.ndarray]:
    """Return (instance labels, per-pixel brightness) for ``n`` ellipsoidal blobs."""
    nd = len(shape)
    inst = np.zeros(shape, np.uint16)
    bright = np.zeros(shape, np.float32)
    centres: list[np.ndarray] = []
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    label = 0
    tries = 0
    while label < n and tries < n * 50:
        tries += 1
        r = rng.uniform(*radius)
        radii = r * rng.uniform(0.7, 1.3, nd)
        if nd == 3:
            radii[0] *= 0.6  # anisotropic z sampling, as in most stacks
        c = np.array([rng.uniform(0, s) for s in shape])
        if centres:
            d = np.array([np.linalg.norm((c - o) / np.maximum(radii, 1)) for o in centres])
            # mostly separated, a share allowed to touch
            limit = 1.6 if rng.random() < touching else 2.4
            if d.min() < limit:
                continue
        centres.append(c)
        label += 1
        # random orientation in the last two axes
        th = rng.uniform(0, np.pi)
        dy, dx = grids[-2] - c[-2], grids[-1] - c[-1]
        u = (np.cos(th) * dy + np.sin(th) * dx) / radii[-2]
        v = (-np.sin(th) * dy + np.cos(th) * dx) / radii[-1]
        q = u ** 2 + v ** 2
        if nd == 3:
            q = q + ((grids[0] - c[0]) / radii[0]) ** 2
        mask = (q <= 1.0) & (inst == 0)
        inst[mask] = label
        level = rng.uniform(0.45, 1.0)
        bright[mask] = level * (1.0 - 0.35 * q[mask])  # brighter centre, dimmer rim
    return inst, bright


def make_nuclei(shape: tuple[int, ...] = (384, 384), *, seed: int = 0, density: float = 1.0,
                radius: tuple[float, float] = (7.0, 14.0), touching: float = 0.35,
                noise: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(image uint16, semantic labels uint8 (1 bg, 2 nucleus), instance labels uint16)``."""
    rng = np.random.default_rng(seed)
    nd = len(shape)
    area = float(np.prod(shape[-2:]))
    per_plane = density * area / (np.pi * np.mean(radius) ** 2) * 0.35
    n = int(per_plane * (shape[0] / (2 * np.mean(radius) * 0.6) if nd == 3 else 1))
    inst, bright = _blob_field(tuple(shape), rng, max(1, n), radius, touching)
    # texture inside nuclei (chromatin-like), blur by a PSF
    tex = ndi.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 1.5)
    signal = bright * (1.0 + 0.25 * tex / (tex.std() + 1e-6))
    sigma = (1.6, 1.0, 1.0) if nd == 3 else 1.0
    signal = ndi.gaussian_filter(signal, sigma)
    # uneven illumination: a smooth multiplicative field, and a background gradient
    coords = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    a, b = rng.uniform(-0.5, 0.5, 2)
    illum = 1.0 + a * coords[-1] + b * coords[-2] - 0.3 * (coords[-1] ** 2 + coords[-2] ** 2)
    illum = np.clip(illum, 0.35, None)
    backgr = 0.08 + 0.06 * (coords[-1] + 1) + 0.04 * ndi.gaussian_filter(
        rng.normal(0, 1, shape).astype(np.float32), 8) * 10
    expected = (signal * illum + backgr) * 900.0
    expected = np.clip(expected, 0, None)
    photons = rng.poisson(expected).astype(np.float32)
    img = photons + rng.normal(100.0, 12.0 * noise, shape).astype(np.float32)
    img = np.clip(img, 0, 65535).astype(np.uint16)
    semantic = np.where(inst > 0, NUCLEUS, BACKGROUND).astype(np.uint8)
    return img, semantic, inst


def make_strokes(semantic: np.ndarray, instances: np.ndarray, *, seed: int = 0,
                 object_fraction: float = 0.3, background_strokes: int | None = None,
                 plane_step: int = 4) -> np.ndarray:
    """Sparse paint the way a person would: a short line inside some objects, a few background
    strokes, both kept 2 px from object borders (a person paints near edges, not on them);
    0 = unpainted. For stacks, only every ``plane_step``-th plane is
    painted. Usually well under 10% of pixels."""
    rng = np.random.default_rng(seed)
    strokes = np.zeros(semantic.shape, np.uint8)
    planes = range(0, semantic.shape[0], plane_step) if semantic.ndim == 3 else [None]
    for z in planes:
        sem = semantic if z is None else semantic[z]
        ins = instances if z is None else instances[z]
        out = strokes if z is None else strokes[z]
        ids = np.unique(ins[ins > 0])
        chosen = rng.choice(ids, size=max(1, int(len(ids) * object_fraction)), replace=False) if len(ids) else []
        for i in chosen:
            m = ndi.binary_erosion(ins == i, iterations=2)
            ys, xs = np.nonzero(m)
            if len(ys) < 3:
                continue
            # a stroke through the object's interior along its long axis
            cy, cx = ys.mean(), xs.mean()
            cov = np.cov(np.stack([ys, xs]))
            w, v = np.linalg.eigh(cov)
            d = v[:, -1]
            for t in np.linspace(-1.2, 1.2, 25) * np.sqrt(w[-1]):
                yy, xx = int(round(cy + t * d[0])), int(round(cx + t * d[1]))
                for oy in (-1, 0, 1):
                    for ox in (-1, 0, 1):
                        y2, x2 = yy + oy, xx + ox
                        if 0 <= y2 < m.shape[0] and 0 <= x2 < m.shape[1] and m[y2, x2]:
                            out[y2, x2] = NUCLEUS
        far = ndi.binary_erosion(sem == BACKGROUND, iterations=2)
        n_bg = background_strokes if background_strokes is not None else max(3, int(np.sqrt(sem.size) / 40))
        h, w_ = sem.shape
        for _ in range(n_bg):
            y, x = rng.integers(0, h), rng.integers(0, w_)
            ang = rng.uniform(0, np.pi)
            length = rng.integers(15, 45)
            for t in range(length):
                yy = int(round(y + t * np.sin(ang)))
                xx = int(round(x + t * np.cos(ang)))
                for oy in (-1, 0, 1):
                    for ox in (-1, 0, 1):
                        y2, x2 = yy + oy, xx + ox
                        if 0 <= y2 < h and 0 <= x2 < w_ and far[y2, x2]:
                            out[y2, x2] = BACKGROUND
    return strokes


def sample_2d(seed: int = 0):
    """(image, ground truth, strokes) for the 2D sample."""
    img, sem, inst = make_nuclei((384, 384), seed=seed)
    return img, sem, make_strokes(sem, inst, seed=seed)


def sample_3d(seed: int = 1):
    """(stack, ground truth, strokes) for the 3D sample (Z, Y, X)."""
    img, sem, inst = make_nuclei((24, 192, 192), seed=seed, radius=(7.0, 12.0))
    return img, sem, make_strokes(sem, inst, seed=seed, plane_step=4)
