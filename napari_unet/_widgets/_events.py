"""What the prediction worker (Predict, Batch, Batch on dask workers) sends to the main thread,
and the file-name stem of a layer: shared without import cycles (no Qt here)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Progress:
    image: str
    index: int          # which image (0-based) of ``count``
    count: int
    done: int           # tiles of this image
    total: int


@dataclass(frozen=True)
class Result:
    image: str
    probabilities: np.ndarray      # (classes, *spatial) float32
    labels: np.ndarray             # class values 1..K
    uncertainty: np.ndarray | None
    files: tuple[str, ...] = ()


def safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "image"
