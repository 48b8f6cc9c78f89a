"""The quality benchmark's other modalities and acquisitions (benchmarks/renderings.py): H&E
brightfield and phase contrast rendered from a fluorescence image keep the objects where they
were and look like those modalities (nuclei purple on pink; dark nuclei with bright halos),
reproducibly; DIC shows nuclei as relief, neither brighter nor darker; each nucleus can be given
its own brightness; the acquisition probes
(few photons, uneven light, zoom) do what they say."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from renderings import (render_dic, render_he, render_lowlight, render_phase, render_shading,  # noqa: E402
                        render_uneven, zoom)

from napari_unet.core.synthetic import make_nuclei  # noqa: E402


@pytest.fixture(scope="module")
def nuclei_and_labels():
    img, _, inst = make_nuclei((160, 160), seed=3)
    return img, inst


@pytest.fixture(scope="module")
def nuclei():
    img, sem, inst = make_nuclei((160, 160), seed=3)
    return img, inst > 0


def test_he_is_rgb_with_nuclei_darker_and_bluer_than_the_eosin_background(nuclei):
    img, fg = nuclei
    rgb = render_he(img, seed=0)
    assert rgb.shape == img.shape + (3,) and rgb.dtype == np.uint8
    core = ndi.binary_erosion(fg, iterations=2)
    bg = ndi.binary_erosion(~fg, iterations=4)
    r, g, b = (rgb[..., i].astype(float) for i in range(3))
    assert r[core].mean() < r[bg].mean() - 30          # hematoxylin absorbs red
    assert (b / (r + 1))[core].mean() > (b / (r + 1))[bg].mean()   # purple against pink
    assert g[bg].mean() < r[bg].mean()                 # eosin absorbs green: pink background
    np.testing.assert_array_equal(rgb, render_he(img, seed=0))
    assert not np.array_equal(rgb, render_he(img, seed=1))


def test_phase_has_dark_nuclei_with_bright_halos(nuclei):
    img, fg = nuclei
    ph = render_phase(img, seed=0).astype(float)
    assert ph.shape == img.shape and ph.min() >= 0
    core = ndi.binary_erosion(fg, iterations=2)
    halo = ndi.binary_dilation(fg, iterations=2) & ~fg
    far = ndi.binary_erosion(~fg, iterations=8)
    assert ph[core].mean() < 0.85 * ph[far].mean()
    assert ph[halo].mean() > ph[far].mean()
    np.testing.assert_array_equal(ph, render_phase(img, seed=0).astype(float))


def test_dic_shows_each_nucleus_as_relief_lit_on_one_side_with_the_background_grey_inside(nuclei):
    img, fg = nuclei
    dic = render_dic(img, seed=0).astype(float)
    assert dic.shape == img.shape and dic.min() >= 0
    core = ndi.binary_erosion(fg, iterations=3)
    far = ndi.binary_erosion(~fg, iterations=8)
    # the shear runs along the diagonal: the rim towards +Y+X is lit, the opposite rim shaded
    ring = ndi.binary_dilation(fg, iterations=2) & ~ndi.binary_erosion(fg, iterations=2)
    shade = ring & ~np.roll(np.roll(fg, 3, 0), 3, 1)       # no object 3 px up-left: the top-left rim
    lit = ring & ~np.roll(np.roll(fg, -3, 0), -3, 1)       # none 3 px down-right: the bottom-right rim
    assert dic[lit].mean() > dic[far].mean() + 0.1 * dic[far].mean()
    assert dic[shade].mean() < dic[far].mean() - 0.1 * dic[far].mean()
    # no threshold: the interior sits at the background's level, within 10%
    assert abs(dic[core].mean() - dic[far].mean()) < 0.1 * dic[far].mean()
    np.testing.assert_array_equal(dic, render_dic(img, seed=0).astype(float))


def test_acquisition_probes_keep_the_objects_and_change_what_they_claim(nuclei):
    img, fg = nuclei
    core = ndi.binary_erosion(fg, iterations=2)
    far = ndi.binary_erosion(~fg, iterations=4)
    low = render_lowlight(img, seed=0)
    assert low.dtype == np.float32 and low.shape == img.shape
    assert 12 < low[core].mean() < 25 and low[far].mean() < 6          # ~20 photons over ~2
    snr = lambda a: (a[core].mean() - a[far].mean()) / a[far].std()   # noqa: E731
    assert snr(low) < 0.5 * snr(img.astype(float))                     # shot and read noise
    np.testing.assert_array_equal(low, render_lowlight(img, seed=0))

    sh = render_shading(img)
    h, w = img.shape
    corner = np.zeros_like(fg)
    corner[: h // 4, : w // 4] = True
    opposite = np.zeros_like(fg)
    opposite[-h // 4:, -w // 4:] = True
    # the background brightens across X (the ramp); objects stay brighter than their surroundings
    assert sh[far & opposite].mean() > sh[far & corner].mean()
    assert sh[core & corner].mean() > sh[far & corner].mean()

    big, inst = zoom(img, fg.astype(np.int32), 2.0)
    assert big.shape == (2 * h, 2 * w) and big.dtype == img.dtype
    assert abs(inst.mean() - fg.mean()) < 0.01
    small, inst_s = zoom(img, fg.astype(np.int32), 0.5)
    assert small.shape == (h // 2, w // 2) and set(np.unique(inst_s)) <= {0, 1}


def test_uneven_gives_each_nucleus_its_own_brightness_and_leaves_the_background(nuclei_and_labels):
    img, inst = nuclei_and_labels
    out = render_uneven(img, inst, seed=0)
    assert out.shape == img.shape and out.dtype == img.dtype
    np.testing.assert_array_equal(out, render_uneven(img, inst, seed=0))
    far = ndi.distance_transform_edt(inst == 0) > 8
    np.testing.assert_array_equal(out[far], img[far])      # the background as it was
    ids = np.unique(inst[inst > 0])
    bg = float(np.median(img[inst == 0]))
    ratio = (ndi.mean(out.astype(float), inst, ids) - bg) / (ndi.mean(img.astype(float), inst, ids) - bg)
    assert ratio.min() < 0.5 and ratio.max() > 2           # dimmer and brighter than they were
    assert ratio.max() / ratio.min() > 5
