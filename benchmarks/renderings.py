"""Two other modalities rendered from the real BBBC039 nuclei, for ``benchmarks/quality.py``:
the nuclei's real shapes, sizes, touching pairs and chromatin texture, seen through the optics of
another microscope. They are proxies, not real images of those modalities (the real ones are
checked outside the repository): they exercise what differs there (three correlated colour
channels; objects whose interior looks like the background) and count as information rows.

- ``he``: brightfield H&E, by Beer-Lambert stain mixing (Ruifrok & Johnston 2001's optical
  density vectors). Hematoxylin follows the Hoechst signal (DNA) plus a weak, even share; eosin
  is a smooth random field (cytoplasm and stroma) present everywhere, nuclei included, so the
  red and green channels carry both stains. RGB uint8, channels last.
- ``phase``: Zernike phase contrast. The phase delay is the smoothed nucleus signal; the image is
  one minus a high-pass of it (a dark object with a bright halo, and the shade-off that lets the
  interior of a large object drift back towards the background's grey), with shot noise.
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
