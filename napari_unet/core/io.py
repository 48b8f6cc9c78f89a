"""Model files and TIFF I/O. Every file is written to a temporary name and renamed."""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .labels import check_labels  # noqa: F401  (re-exported)

if TYPE_CHECKING:  # the model module imports torch; keep TIFF I/O free of it
    from .model import UNet

MODEL_SUFFIX = ".pt"


# ----------------------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


# ----------------------------------------------------------------------------- models

def _versions() -> dict[str, str]:
    import torch

    from .. import __version__

    return {"napari_unet": __version__, "torch": torch.__version__, "numpy": np.__version__}


def save_model(model: "UNet", path: str | os.PathLike) -> Path:
    """Save weights + JSON metadata (with provenance) in one file, atomically."""
    import torch

    from .model import MODEL_FORMAT, MODEL_FORMAT_VERSION, model_meta

    meta = dict(model_meta(model))
    meta["saved"] = {**_versions(), "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
               "meta_json": json.dumps(meta), "state_dict": state}
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_model_meta(path: str | os.PathLike) -> dict[str, Any]:
    return _load_payload(path)[0]


def _load_payload(path: str | os.PathLike) -> tuple[dict, dict]:
    import torch

    from .model import MODEL_FORMAT, MODEL_FORMAT_VERSION

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError) as e:
        raise ValueError(f"{path} is not a readable napari-unet model file (corrupt or of "
                         f"another kind): {str(e).splitlines()[0][:200]}") from None
    except Exception as e:  # e.g. pickle.UnpicklingError for a foreign pickle
        raise ValueError(f"{path} is not a napari-unet model file: {type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a napari-unet model file (no '{MODEL_FORMAT}' header)")
    if int(payload.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer napari-unet (format "
                         f"{payload.get('format_version')}); upgrade napari-unet")
    try:
        meta = json.loads(payload["meta_json"])
        state = payload["state_dict"]
    except (KeyError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: damaged model metadata ({e})") from None
    return meta, state


def load_model(path: str | os.PathLike) -> "UNet":
    """Load a model saved by :func:`save_model` (never unpickles arbitrary objects)."""
    from .model import model_from_state

    meta, state = _load_payload(path)
    try:
        return model_from_state(meta, state)
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise ValueError(f"{path}: weights do not match the metadata ({str(e).splitlines()[0][:200]})") from None


# ----------------------------------------------------------------------------- images

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF (memory-mapped when the file allows it) or another common image format."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            try:
                return tifffile.memmap(path, mode="r")
            except (ValueError, TypeError, OSError):
                return tifffile.imread(path)
        except Exception as e:
            raise ValueError(f"{path} is not a readable TIFF file: {str(e).splitlines()[0][:200]}") from None
    try:
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except Exception as e:
        raise ValueError(f"cannot read image {path}: {str(e).splitlines()[0][:200]}") from None


def axes_for(arr: np.ndarray, channels_first: bool = False) -> str:
    spatial = "ZYX"[-(arr.ndim - channels_first):] if arr.ndim - channels_first <= 3 else None
    if spatial is None:
        raise ValueError(f"cannot name the axes of an array of shape {arr.shape}")
    return ("C" if channels_first else "") + spatial


def _pixel_kwargs(axes: str | None, pixel) -> tuple[dict, dict]:
    """(shaped metadata, other tifffile kwargs) for ``axes`` and a readers.PixelSize (or None)."""
    from .ngff import tiff_pixel_kwargs

    kw = tiff_pixel_kwargs(pixel, (axes or "").upper())
    meta = {"axes": axes} if axes else {}
    meta.update(kw.pop("extra_metadata", {}))
    return meta, kw


def write_tiff(path: str | os.PathLike, data: np.ndarray, *, axes: str | None = None,
               compress: bool = False, pixel=None) -> Path:
    """Write ``data`` to a TIFF atomically; ``axes`` (e.g. 'CZYX') go into the metadata, and a
    ``pixel`` size (readers.PixelSize) into the resolution tags and metadata.

    Uncompressed by default so that the file can be memory-mapped when read back."""
    import tifffile

    path = Path(path)
    meta, kw = _pixel_kwargs(axes, pixel)
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, metadata=meta, **kw,
                         compression="zlib" if compress else None, bigtiff=data.nbytes > 2 ** 31)
    return path


@contextlib.contextmanager
def tiff_memmap(path: str | os.PathLike, shape: tuple[int, ...], dtype, *, axes: str | None = None,
                pixel=None):
    """A writable memory-mapped TIFF at a temporary name, renamed to ``path`` on success."""
    import tifffile

    path = Path(path)
    with atomic_path(path) as tmp:
        meta, kw = _pixel_kwargs(axes, pixel)
        mm = tifffile.memmap(tmp, shape=shape, dtype=dtype, metadata=meta, **kw,
                             bigtiff=int(np.prod(shape)) * np.dtype(dtype).itemsize > 2 ** 31)
        try:
            yield mm
            mm.flush()
        finally:
            del mm


def labels_dtype(max_value: int) -> np.dtype:
    return np.dtype(np.uint8 if max_value < 256 else np.uint16)
