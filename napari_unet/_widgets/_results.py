"""Shared by Predict and Batch: the checks of their inputs, the prediction job (core.jobs) in a
worker thread, the result layers (main thread) and the panel they share."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import _layers
from ._events import Progress, Result, safe_stem  # noqa: F401  (importable from here too)
from ._frames import frame_channel_axis, is_time_lapse
from ._job_panel import JobPanel


def output_arrays(*args: Any, **kwargs: Any) -> dict:
    """Moved to :func:`napari_unet.core.jobs.output_arrays`."""
    from napari_unet.core.jobs import output_arrays as impl

    return impl(*args, **kwargs)


def rgb_channel_axis(layers: list, model: Any, channel_axis: int | None) -> int | None:
    """The channel axis to predict with: the one chosen, or, with 'none' chosen, the last axis
    for RGB layers given to a model of several input channels (as Train trains on them)."""
    if channel_axis is None and model.meta.get("in_channels", 1) > 1 and any(layer.rgb for layer in layers):
        return -1
    return channel_axis


def image_items(layers: list, model: Any, hint: str = "",
                channel_axis: int | None = None) -> list[tuple[str, np.ndarray]]:
    """(name, data) of image layers the model can segment; a UserError names the first that
    it cannot (RGB, not a stack for a 3D model, channels that do not match the model's with
    ``channel_axis``). Shared by Predict and Batch."""
    from napari_unet.core.predict import prepare_image

    from ._common import UserError

    items = []
    for layer in layers:
        if layer.rgb and channel_axis is None:  # (rgb_channel_axis: a 1-channel model here)
            n = model.meta.get("in_channels", 1)
            raise UserError(f"'{layer.name}' is an RGB image ({layer.data.shape[-1]} channels) but the model "
                            f"takes {n} channel{'s' if n != 1 else ''}: use a model trained on RGB images.")
        data = _layers.full_data(layer)
        spatial = len(data.shape) - (channel_axis is not None)
        if model.meta.get("dims") == 3 and spatial not in (3, 4):
            raise UserError(f"The model is 3D but '{layer.name}' is not a (Z, Y, X) stack or a "
                            f"(T, Z, Y, X) time-lapse{hint}.")
        shape, ca = data.shape, channel_axis
        if is_time_lapse(shape, ca):  # predicted frame by frame (_frames.py)
            shape, ca = shape[1:], frame_channel_axis(len(shape), ca)
        try:  # shape checks only (channel count, axes), no data read
            prepare_image(np.broadcast_to(np.zeros((), data.dtype), shape), model.meta, ca)
        except ValueError as e:
            raise UserError(f"'{layer.name}': {e}") from None
        # a dask/zarr layer stays lazy: the job reads it in its worker, whole when its results
        # fit in RAM, else block by block into a zarr store (core.predict_zarr)
        lazy = not isinstance(data, np.ndarray) and hasattr(data, "chunks") and hasattr(data, "dtype")
        items.append((layer.name, data if lazy else np.asarray(data)))
    return items


def predict_images(model: Any, items: list[tuple[str, np.ndarray]], *, tile: Any = "auto",
                   threshold: float | None = None, uncertainty: bool = True,
                   out_dir: Path | None = None, channel_axis: int | None = None,
                   out_format: str = "tiff", pixels: dict | None = None, workers: int = 0,
                   cancel: threading.Event | None = None,
                   one_class_per_object: bool | str = False) -> Iterator[Progress | Result]:
    """Worker thread: the prediction job of Predict and Batch, :func:`napari_unet.core.jobs.iter_predict_job`
    (or, with ``workers``, the same job on a local dask cluster, _cluster_batch.py); yields
    Progress, then a Result per image. ``cancel`` (a threading.Event) is the one way to stop it.
    ``one_class_per_object="auto"``: where the model suggests it and the image allows it."""
    if workers and out_dir is not None:  # Batch on a local dask cluster (_cluster_batch.py)
        if one_class_per_object is True:
            from ._common import UserError

            raise UserError("'one class per object' is not available on a dask cluster yet")
        from ._cluster_batch import predict_on_cluster

        yield from predict_on_cluster(model, items, workers=workers, out_dir=Path(out_dir), out_format=out_format,
                                      pixels=pixels, channel_axis=channel_axis, threshold=threshold,
                                      tile=tile, cancel=cancel)
        return
    from napari_unet.core.jobs import iter_predict_job

    yield from iter_predict_job(model, items, tile=tile, threshold=threshold, uncertainty=uncertainty,
                                out_dir=out_dir, channel_axis=channel_axis, out_format=out_format,
                                pixels=pixels, cancel=cancel, one_class_per_object=one_class_per_object)


def layer_pixel_size(layer: Any, spatial_ndim: int):
    """A readers.PixelSize from a layer's scale (and units, where napari has them)."""
    from napari_unet.core.readers import PixelSize, ngff_unit

    scale = [float(s) for s in layer.scale[-spatial_ndim:]]
    units = [str(u) for u in (getattr(layer, "units", None) or ())][-spatial_ndim:]
    unit = ngff_unit(units[-1]) if units else None
    if unit is None and all(s == 1.0 for s in scale):
        return PixelSize()  # nothing known: write no pixel size
    return PixelSize(dict(zip("zyx"[-spatial_ndim:], scale)), unit)


def _put(viewer: Any, kind: str, name: str, data: np.ndarray, meta: dict, match: dict,
         **kwargs: Any) -> Any:
    """Update the layer tagged ``match`` (role, image, ...) in place, or add it."""
    for layer in viewer.layers:
        info = _layers.info(layer)
        if type(layer).__name__.lower() == kind and all(info.get(k) == v for k, v in match.items()):
            layer.data = data
            return layer
    add = viewer.add_labels if kind == "labels" else viewer.add_image
    with _layers.result_layer(viewer, match.get("image")):
        return add(data, name=name, metadata=meta, **kwargs)


def show_result(viewer: Any, result: Result, model: Any, *, probabilities: bool = True) -> dict:
    """Main thread: add/update probability layers (one per class), the labels layer and the
    uncertainty layer for ``result``. Returns {"labels": layer, "probs": [...], ...}."""
    name = result.image
    image = next((layer for layer in viewer.layers if layer.name == name), None)
    nd = result.labels.ndim
    geo = {}
    if image is not None:
        geo = {"scale": image.scale[-nd:], "translate": image.translate[-nd:]}
    meta = model.meta
    names = meta.get("class_names") or [f"class {v}" for v in meta.get("class_values", [])]
    values = meta.get("class_values") or list(range(1, len(names) + 1))
    out: dict[str, Any] = {"probs": []}
    if probabilities:
        for k, (value, cname) in enumerate(zip(values, names)):
            layer = _put(viewer, "image", f"{name} p({cname})", result.probabilities[k],
                         _layers.tag("probs", name, value=value), {"role": "probs", "image": name,
                                                                    "value": value},
                         colormap=_layers.PROB_COLORMAPS[(value - 1) % len(_layers.PROB_COLORMAPS)],
                         contrast_limits=(0.0, 1.0), blending="additive", opacity=0.7,
                         visible=value != 1, **geo)
            layer.contrast_limits = (0.0, 1.0)
            out["probs"].append(layer)
    if result.uncertainty is not None:
        out["uncertainty"] = _put(viewer, "image", f"{name} uncertainty", result.uncertainty,
                                  _layers.tag("uncertainty", name), {"role": "uncertainty", "image": name},
                                  colormap="magma", contrast_limits=(0.0, 1.0), visible=False, **geo)
    labels = _put(viewer, "labels", f"{name} labels", result.labels,
                  _layers.tag("labels", name, class_names=list(names)), {"role": "labels", "image": name},
                  colormap=_layers.paint_colormap(len(names), background_visible=False),
                  opacity=0.6, **geo)
    out["labels"] = labels
    _layers.keep_painting_on_top(viewer, name)
    return out


@dataclass(frozen=True)
class Skipped:
    """Sent by the prediction worker for an image the engine refused; the others go on."""
    image: str
    reason: str   # the engine's message, "image contains NaN ..." read as "it contains NaN ..."

    def __post_init__(self) -> None:
        if self.reason.startswith("image "):
            object.__setattr__(self, "reason", "it " + self.reason[len("image "):])


class PredictionPanel(JobPanel):
    """What Predict and Batch share: the job panel (_job_panel.py: Run/Cancel, progress,
    status) running :func:`predict_images`, and the current-model line, which follows the
    viewer's evented model state. Mixed into a QWidget; subclasses lay the parts out and handle
    ``_on_result`` / ``_on_finished``."""

    busy_message = "A prediction is already running."

    def _init_panel(self, viewer: Any, run_text: str) -> None:
        from ._common import hint
        from ._state import model_state

        self.viewer = viewer
        self.state = model_state(viewer)
        self._model: Any = None
        self._suggested_for: Any = None
        self._init_job_panel(run_text)
        self.model_label = hint(self.state.describe())
        self.state.changed.connect(self._model_changed)

    def _model_changed(self, *_: Any) -> None:
        try:
            self.model_label.setText(self.state.describe())
            if self.state.model is not self._suggested_for:  # a new model (not a new source)
                self._suggested_for = self.state.model
                self._follow_model(self.state.model)
        except RuntimeError:  # the widget was closed
            pass

    def _follow_model(self, model: Any) -> None:
        """A new current model: subclasses set what it suggests (one class per object)."""

    def _model_and_targets(self, none_message: str) -> tuple[Any, list]:
        """The current model and the image layers to segment (``self.targets()``); a UserError
        when a run is already going, there is no model, or no image (``none_message``)."""
        from ._common import UserError

        self._check_idle()
        model = self.state.require()
        layers = self.targets()
        if not layers:
            raise UserError(none_message)
        return model, layers

    def _start(self, model: Any, items: list[tuple[str, np.ndarray]], message: str, **kwargs: Any) -> None:
        """Predict ``items`` in the background; ``kwargs`` go to :func:`predict_images`. In this
        process, image by image: one the engine refuses (NaN, ...) is skipped, named, and the
        others go on (``self.skipped``); on a dask cluster, the job stops at the first."""
        self._model = model
        self.skipped: list[tuple[str, str]] = []

        def job(cancel: threading.Event):
            if kwargs.get("workers"):
                return (yield from predict_images(model, items, cancel=cancel, **kwargs))
            from dataclasses import replace

            for i, item in enumerate(items):
                try:
                    for ev in predict_images(model, [item], cancel=cancel, **kwargs):
                        yield replace(ev, index=i, count=len(items)) if isinstance(ev, Progress) else ev
                except (ValueError, TypeError) as e:   # this image only (a UserError is a ValueError)
                    yield Skipped(item[0], str(e) or type(e).__name__)
                if cancel.is_set():
                    return None

        self._start_job(job, message)

    def skipped_text(self) -> str:
        """'; skipped 'b': it contains NaN ...' for the final status line ('' when none)."""
        return "".join(f"; skipped '{name}': {why.rstrip('.')}" for name, why in self.skipped)

    def _on_event(self, ev: Any) -> None:
        if isinstance(ev, Skipped):
            from ._common import show_error

            self.skipped.append((ev.image, ev.reason))
            show_error(f"Skipped '{ev.image}': {ev.reason}")
        elif isinstance(ev, Progress):
            self.set_progress((ev.index + ev.done / max(ev.total, 1)) / ev.count)
            where = f"{ev.index + 1}/{ev.count} " if ev.count > 1 else ""
            self.status.setText(f"{where}{ev.image}: {ev.unit} {ev.done}/{ev.total}")
        elif isinstance(ev, Result):
            self._on_result(ev)

    def _on_result(self, result: Result) -> None:  # pragma: no cover - overridden
        raise NotImplementedError
