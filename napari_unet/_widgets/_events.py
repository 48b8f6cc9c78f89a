"""What the prediction worker (Predict, Batch, Batch on dask workers) sends to the main thread,
and the file-name stem of a layer: defined with the prediction job in napari_unet.core.jobs
(no Qt), importable from here too."""
from __future__ import annotations

from napari_unet.core.jobs import Progress, Result, safe_stem  # noqa: F401
