"""Other modalities and other acquisitions rendered from the real BBBC039 nuclei, for
``benchmarks/quality.py``: the nuclei's real shapes, sizes, touching pairs and chromatin texture,
seen through the optics of another microscope or another acquisition. They are proxies, not real
images of those modalities (the real ones are checked outside the repository): they exercise what
differs there (three correlated colour channels; objects whose interior looks like the
background; few photons; uneven light; other object sizes) and count as information rows.

- ``he``: brightfield H&E, by Beer-Lambert stain mixing (Ruifrok & Johnston 2001's optical
  density vectors). Hematoxylin follows the Hoechst signal (DNA) plus a weak, even share; eosin
  is a smooth random field (cytoplasm and stroma) present everywhere, nuclei included, so the
  red and green channels carry both stains. RGB uint8, channels last.
- ``phase``: Zernike phase contrast. The phase delay is the smoothed nucleus signal; the image is
  one minus a high-pass of it (a dark object with a bright halo, and the shade-off that lets the
  interior of a large object drift back towards the background's grey), with shot noise.

Acquisition probes (``quality.py --probes``), the same truth unless said:

- ``lowlight``: ~20 photons at a nucleus's 99.5th percentile over 2 of background, Poisson shot
  noise plus Gaussian read noise (2 counts): a dim, short exposure. float32.
- ``shading``: uneven illumination (a Gaussian vignette falling to 30% at the far corner) plus an
  additive ramp of background light across X: one global threshold cannot fit it. float32.
- ``zoom2`` / ``zoom05`` / ``zoom033``: twice / half / a third of the pixel size's magnification
  (objects ~60 / ~15 / ~10 px across; the truth resampled by nearest neighbour), bilinear
  resampling of the image.
- ``dic``: differential interference contrast. The optical path is the smoothed nucleus signal;
  the image is its difference across a 1.4-px shear along the diagonal (relief: one side of
  each nucleus bright, the other dark, the interior the background's grey), a slow illumination
  field and shot noise. Neither brighter nor darker than the background: no threshold separates
  them.
- ``phase2``: ``phase`` at twice the magnification (nuclei ~60 px): the shade-off leaves their
  interior near the background's grey, so the paint shows no polarity.
- ``uneven``: each nucleus at its own brightness, a factor drawn from a log-normal (sigma 0.9,
  clipped to 0.08-4: a 50-fold range, as in transfected cells, the cell cycle or staining that
  reaches some nuclei less): the excess of the smoothed signal over the background, scaled within
  6 px of each nucleus; the noise stays as it was. One global threshold, and any score that adds
  up intensity, is ruled by the bright nuclei.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

HEMATOXYLIN = np.array([0.650, 0.704, 0.286])
EOSIN = np.array([0.072, 0.990, 0.105])


def _unit(img: np.ndarray) -> np.ndarray:
    """The image as the network sees it (napari-unet's 1-99.8 percentile normalisation), clipped."""
    from napari_unet.core.normalize import normalize

    return np.clip(normalize(img).astype(np.float64), 0, 1.5)


def _field(shape, sigma: float, rng) -> np.ndarray:
    f = ndi.gaussian_filter(rng.standard_normal(shape), sigma)
    return (f - f.mean()) / (f.std() + 1e-12)


def render_he(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """(Y, X) fluorescence nuclei -> (Y, X, 3) uint8 H&E-like brightfield."""
    rng = np.random.default_rng(seed)
    dna = _unit(img)
    hema = 0.08 + 0.9 * dna + 0.04 * _field(img.shape, 6, rng)
    eosin = np.clip(0.35 + 0.18 * _field(img.shape, 10, rng) + 0.06 * _field(img.shape, 2, rng), 0.02, None)
    od = hema[..., None] * HEMATOXYLIN + eosin[..., None] * EOSIN
    rgb = 240.0 * np.exp(-od)
    rgb *= 1 + 0.03 * rng.standard_normal(rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def render_phase(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """(Y, X) fluorescence nuclei -> (Y, X) uint16 phase-contrast-like image."""
    rng = np.random.default_rng(seed)
    phase = ndi.gaussian_filter(np.clip(_unit(img), 0, 1.2), 1.0)
    high = phase - ndi.gaussian_filter(phase, 8.0)
    inten = 1.0 - 0.9 * high + 0.05 * _field(img.shape, 30, rng)
    counts = rng.poisson(np.clip(inten, 0.02, None) * 400.0)
    return counts.astype(np.uint16)


def render_lowlight(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """(Y, X) fluorescence -> the same scene at ~20 photons per bright pixel (float32)."""
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(img, [1, 99.5])
    photons = np.clip((img.astype(np.float64) - lo) / (hi - lo), 0, None) * 20.0 + 2.0
    return (rng.poisson(photons) + rng.normal(0.0, 2.0, img.shape)).astype(np.float32)


def render_shading(img: np.ndarray) -> np.ndarray:
    """(Y, X) fluorescence -> under a vignette centred off-axis and an additive ramp (float32)."""
    h, w = img.shape
    yy, xx = np.mgrid[:h, :w]
    vignette = 0.3 + 0.7 * np.exp(-((yy - 0.2 * h) ** 2 + (xx - 0.2 * w) ** 2) / (2 * (0.6 * max(h, w)) ** 2))
    span = float(np.percentile(img, 99.5) - np.percentile(img, 1))
    return (img.astype(np.float64) * vignette + 0.25 * span * xx / w).astype(np.float32)


def render_dic(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """(Y, X) fluorescence nuclei -> (Y, X) uint16 DIC-like relief image."""
    rng = np.random.default_rng(seed)
    path = ndi.gaussian_filter(np.clip(_unit(img), 0, 1.2), 1.5)
    relief = ndi.shift(path, (0.7, 0.7), order=1) - ndi.shift(path, (-0.7, -0.7), order=1)
    inten = 0.5 + 1.2 * relief + 0.04 * _field(img.shape, 40, rng)
    return rng.poisson(np.clip(inten, 0.01, None) * 300.0).astype(np.uint16)


def render_uneven(img: np.ndarray, instances: np.ndarray, seed: int = 0) -> np.ndarray:
    """(Y, X) fluorescence nuclei -> the same scene with each nucleus at its own brightness
    (``instances``: their labels); the image's dtype."""
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(seed)
    ids = np.unique(instances[instances > 0])
    gain = np.ones(int(instances.max()) + 1)
    gain[ids] = np.clip(rng.lognormal(0.0, 0.9, ids.size), 0.08, 4.0)
    x = img.astype(np.float64)
    bg = float(np.median(x[instances == 0]))
    signal = np.clip(ndi.gaussian_filter(x, 1.0) - bg, 0, None)
    out = x + (gain[expand_labels(instances, 6)] - 1.0) * signal
    if img.dtype.kind in "ui":
        return np.clip(np.rint(out), 0, np.iinfo(img.dtype).max).astype(img.dtype)
    return out.astype(img.dtype)


def zoom(img: np.ndarray, instances: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Image (bilinear) and instance labels (nearest) at ``factor`` times the magnification."""
    out = ndi.zoom(img.astype(np.float32), factor, order=1)
    return out.astype(img.dtype) if img.dtype.kind in "ui" else out, ndi.zoom(instances, factor, order=0)
