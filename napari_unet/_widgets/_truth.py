"""Which layers Evaluate offers as ground truth, and their data on use.

A mask opened with File > Open (a TIFF of 0/1, 0/255 or instance ids) arrives in napari as an
Image layer with an integer dtype. Evaluate offers such layers as truth beside the Labels layers
and converts them when scoring (level 0 of a multiscale layer, read into numpy; booleans stay
booleans). Their 0 is then read by "truth 0 is" exactly as the command line reads a truth TIFF
(core/truth.py: auto, background or unlabeled). A float image is not offered: scoring it would
need a guess (a probability map? a mask saved as float?), so the user is told how to convert it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import _layers

# our Labels layers that are never a truth or a prediction ("object_errors": _object_scores.ROLE)
OURS = ("errors", "paint", "object_errors")


def is_labels(layer: Any) -> bool:
    """A Labels layer that is not one of our overlays or paintings."""
    return type(layer).__name__ == "Labels" and _layers.role(layer) not in OURS


def _dtype(layer: Any) -> np.dtype:
    return np.dtype(getattr(_layers.full_data(layer), "dtype", np.float32))


def _made_from(viewer: Any, name: str) -> bool:
    """Whether we made layers (a painting, a prediction) for the image called ``name``: it is an
    image being segmented, not a ground truth."""
    return any(_layers.info(other).get("image") == name and other.name != name for other in viewer.layers)


def is_mask_image(viewer: Any, layer: Any) -> bool:
    """An integer or boolean, single-channel Image layer of the user's (not RGB, not one of our
    probability/uncertainty layers, not an image we painted on or predicted)."""
    return (_layers.is_image(layer) and not getattr(layer, "rgb", False)
            and _dtype(layer).kind in "biu" and not _made_from(viewer, layer.name))


def is_truth(viewer: Any, layer: Any) -> bool:
    """What the ground-truth list offers: Labels layers and integer Image layers (masks)."""
    return is_labels(layer) or is_mask_image(viewer, layer)


def float_image_message(layer: Any) -> str:
    return (f"'{layer.name}' is a float image ({_dtype(layer)}), not a mask: ground truth must hold "
            "whole numbers (0 and 1..K, or object ids). Right-click the layer > Convert to Labels, "
            "or save the mask as an integer (uint8/uint16) image.")


def float_hint(viewer: Any) -> str:
    """" <why a float image is not offered>" for the first float image that may be a mask, or ""."""
    floats = [layer for layer in viewer.layers
              if _layers.is_image(layer) and not getattr(layer, "rgb", False) and _dtype(layer).kind == "f"
              and not _made_from(viewer, layer.name)]
    return " " + float_image_message(floats[0]) if floats else ""


def no_truth_message(viewer: Any) -> str:
    """Why there is nothing to score against, naming a float image the user may have meant."""
    return ("Choose a prediction labels layer and a ground truth (a labels layer or an integer image)."
            + float_hint(viewer))


def truth_data(layer: Any) -> np.ndarray:
    """The truth layer's full-resolution data as a numpy array (a UserError for a float image)."""
    from ._common import UserError

    if type(layer).__name__ != "Labels" and _dtype(layer).kind not in "biu":
        raise UserError(float_image_message(layer))
    return np.asarray(_layers.full_data(layer))
