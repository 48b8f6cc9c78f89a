"""Sample data: the synthetic nuclei image/stack with ground truth and a few painted strokes.

Each sample opens as the image, a ground-truth labels layer and a sparse painting layer that
the Train widget recognises, so a user can press Train right away. Generated on the fly
(numpy + scipy); importing this module does not import torch.
"""
from __future__ import annotations

from ._widgets._layers import paint_colormap, paint_name, tag

CLASS_NAMES = ["background", "nucleus"]


def _layers(name: str, image, truth, strokes) -> list[tuple]:
    return [
        (image, {"name": name, "colormap": "gray", "metadata": tag("image", name)},
         "image"),
        (truth, {"name": f"{name} truth", "colormap": paint_colormap(2, background_visible=False),
                 "opacity": 0.35, "visible": False, "metadata": tag("truth", name),
                 }, "labels"),
        (strokes, {"name": paint_name(name), "colormap": paint_colormap(2),
                   "opacity": 0.8,
                   "metadata": tag("paint", name, class_names=list(CLASS_NAMES))}, "labels"),
    ]


def sample_2d() -> list[tuple]:
    from .core.synthetic import sample_2d as make

    return _layers("nuclei 2d", *make())


def sample_3d() -> list[tuple]:
    from .core.synthetic import sample_3d as make

    return _layers("nuclei 3d", *make())
