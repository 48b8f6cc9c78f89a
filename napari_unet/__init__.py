"""napari-unet: paint a little, train a U-Net, segment everything.

The public API is imported lazily: ``import napari_unet`` pulls in neither torch, Qt nor napari.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_API = {
    "build_model": "napari_unet.core.model",
    "predict": "napari_unet.core.predict",
    "predict_to_store": "napari_unet.core.predict_store",
    "iter_predict": "napari_unet.core.predict",
    "probabilities_to_labels": "napari_unet.core.predict",
    "entropy": "napari_unet.core.predict",
    "save_model": "napari_unet.core.io",
    "load_model": "napari_unet.core.io",
    "evaluate": "napari_unet.core.metrics",
    "error_map": "napari_unet.core.metrics",
    "train": "napari_unet.core.train",
    "iter_train": "napari_unet.core.train",
    "instance_labels": "napari_unet.core.instances",
    "match_objects": "napari_unet.core.objects",
    "measure_objects": "napari_unet.core.measure",
}

__all__ = ["__version__", *_API]

if TYPE_CHECKING:  # pragma: no cover
    from .core.io import load_model, save_model
    from .core.metrics import error_map, evaluate
    from .core.instances import instance_labels
    from .core.measure import measure_objects
    from .core.model import build_model
    from .core.objects import match_objects
    from .core.predict import entropy, iter_predict, predict, probabilities_to_labels
    from .core.predict_store import predict_to_store
    from .core.train import iter_train, train


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
