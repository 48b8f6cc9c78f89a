#!/usr/bin/env python
"""Regenerate the sample data in this folder (deterministic; a few MB).

    python sample_data/make_sample_data.py [OUT_DIR]

Writes, for the 2D image and the 3D stack:
  nuclei2d.tif / nuclei3d.tif                 the image (uint16)
  nuclei2d_truth.tif / nuclei3d_truth.tif     ground truth (1 = background, 2 = nucleus)
  nuclei2d_strokes.tif / nuclei3d_strokes.tif sparse strokes a person might paint (0 = unpainted)
The same data is what the plugin's File > Open Sample > napari-unet menu shows.
"""
from __future__ import annotations

import sys
from pathlib import Path

from napari_unet.core.io import write_tiff
from napari_unet.core.synthetic import sample_2d, sample_3d


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (img, truth, strokes) in (("nuclei2d", sample_2d()), ("nuclei3d", sample_3d())):
        axes = "YX" if img.ndim == 2 else "ZYX"
        write_tiff(out / f"{name}.tif", img, axes=axes)
        write_tiff(out / f"{name}_truth.tif", truth, axes=axes, compress=True)
        write_tiff(out / f"{name}_strokes.tif", strokes, axes=axes, compress=True)
        painted = (strokes > 0).mean() * 100
        print(f"{name}: {img.shape} {img.dtype}, {painted:.1f}% painted -> {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
