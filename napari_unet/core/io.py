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

from .errors import UserError, UserOSError, UserTypeError, reason
from .outputs import MARK, check_output, check_space, reserve
from .labels import check_labels  # noqa: F401  (re-exported)

__all__ = ["atomic_path", "save_model", "read_model_meta", "load_model", "read_image", "axes_for",
           "write_tiff", "tiff_memmap"]

if TYPE_CHECKING:  # the model module imports torch; keep TIFF I/O free of it
    from .model import UNet

MODEL_SUFFIX = ".pt"
READ_FORMATS = ("napari-unet reads TIFF (.tif, .tiff), PNG, JPEG, BMP and the other formats of imageio; "
                "predict also reads .zarr/.ome.zarr stores and HDF5 (file.h5:dataset)")


# ----------------------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    from .outputs import temp_prefix

    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".part", dir=path.parent or ".")
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


def save_model(model: "UNet", path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save weights + JSON metadata (with provenance) in one file, atomically.

    Args:
        model: a napari-unet model (from :func:`napari_unet.build_model`, ``train`` or
            :func:`load_model`).
        path: the file to write (``.pt`` by convention); written to a temporary name and renamed.
            An earlier model of ours there is replaced; any other file (an image, a painting, a
            model of another tool) only with ``overwrite=True``.

    Returns:
        The path written.

    Raises:
        ValueError / TypeError: not a napari-unet model, or the path cannot be written (a
            folder, a missing folder, another file there, no space, no permission), with a
            message naming the problem. A failed write is also an ``OSError`` (errno kept).
    """
    import torch

    from .model import MODEL_FORMAT, MODEL_FORMAT_VERSION, model_meta

    path = Path(path)
    if not (path.parent if str(path.parent) else Path(".")).is_dir():
        raise UserError(f"cannot save the model to {path}: the folder {path.parent} does not exist")
    check_output(path, overwrite=overwrite, what="model file", model=True)

    meta = dict(model_meta(model))
    meta["saved"] = {**_versions(), "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta_json = json.dumps(meta)
    payload = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
               "meta_json": meta_json, "state_dict": state, "sha256": _checksum(meta_json, state)}
    import io as _io

    buf = _io.BytesIO()  # serialised in memory: a full disk is then an OSError (ENOSPC), not a
    torch.save(payload, buf)  # RuntimeError from inside torch's zip writer
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(buf.getbuffer())
    except OSError as e:
        raise UserOSError(e.errno, e.strerror or str(e), str(path)) from None
    return path


def _checksum(meta_json: str, state: dict) -> str:
    """sha256 of the metadata and every tensor's name, dtype, shape and bytes (in key order)."""
    import hashlib

    import torch

    h = hashlib.sha256(meta_json.encode())
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def read_model_meta(path: str | os.PathLike) -> dict[str, Any]:
    return _load_payload(path)[0]


def _load_payload(path: str | os.PathLike) -> tuple[dict, dict]:
    import torch

    from .model import MODEL_FORMAT, MODEL_FORMAT_VERSION

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} does not exist")
    from .bioimageio_package import is_package, read_package

    if is_package(path):  # a bioimage.io package (ours: exact model; foreign: a clear refusal)
        return read_package(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a model file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise UserError(f"model file {path} is empty (0 bytes): it was not written completely")
    if head != b"PK\x03\x04":
        raise UserError(f"{path} is not a napari-unet model file (a .pt file written by "
                        "'napari-unet train' or the plugin)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError) as e:
        raise UserError(f"model file {path} is damaged or truncated (not written completely?), or not a "
                        f"napari-unet model ({reason(e).rstrip('.')}); use another copy or train again") from None
    except Exception as e:  # e.g. pickle.UnpicklingError for a foreign pickle
        why = reason(e)
        raise UserError(f"{path} is not a napari-unet model file: {type(e).__name__}"
                        + (f": {why}" if why != type(e).__name__ else "")) from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(f"{path} is not a napari-unet model file (no '{MODEL_FORMAT}' header)")
    if int(payload.get("format_version", 0)) > MODEL_FORMAT_VERSION:
        raise UserError(f"{path} was written by a newer napari-unet (format "
                         f"{payload.get('format_version')}); upgrade napari-unet")
    try:
        meta = json.loads(payload["meta_json"])
        state = payload["state_dict"]
    except (KeyError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: damaged model metadata ({e})") from None
    stored = payload.get("sha256")
    if stored is not None:
        try:
            ok = isinstance(stored, str) and _checksum(payload["meta_json"], state) == stored
        except Exception:
            ok = False
        if not ok:
            raise UserError(f"model file {path} is damaged: its contents do not match the checksum "
                            "stored when it was saved; use another copy or train again")
    return meta, state


def load_model(path: str | os.PathLike) -> "UNet":
    """Load a model saved by :func:`save_model` (never unpickles arbitrary objects).

    Args:
        path: a file written by :func:`save_model`.

    Returns:
        The model (``UNet``) on the CPU in eval mode, with its metadata.

    Raises:
        ValueError: the file is missing, not a napari-unet model, corrupt (checksum), of a newer
            format, or its weights do not match its metadata.
    """
    from .model import model_from_state

    if not isinstance(path, (str, os.PathLike)):
        raise UserTypeError(f"load_model needs the path of a model file, got {type(path).__name__}")
    meta, state = _load_payload(path)
    try:
        return model_from_state(meta, state)
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise UserError(f"{path}: weights do not match the metadata ({reason(e)})") from None


# ----------------------------------------------------------------------------- images

def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a TIFF (memory-mapped when the file allows it) or another common image format."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file {path} does not exist")
    if path.is_dir():
        raise UserError(f"{path} is a folder, not an image file")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        with _tifffile_notes() as notes:
            try:
                with tifffile.TiffFile(path) as tif:
                    _check_complete(tif, path, notes)
                try:
                    return tifffile.memmap(path, mode="r")
                except (ValueError, TypeError, OSError):
                    return tifffile.imread(path)
            except UserError:
                raise
            except Exception as e:
                raise UserError(f"{path} is not a readable TIFF file: {reason(e)}") from None
    try:
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    except Exception as e:
        if "could not find a backend" in str(e).lower():  # imageio has no reader for this kind of file
            raise UserError(f"cannot read image {path}: {path.suffix or 'this kind of'} files are not read; "
                            f"{READ_FORMATS}") from None
        raise UserError(f"cannot read image {path}: {reason(e)}") from None


@contextlib.contextmanager
def _tifffile_notes() -> Iterator[list[str]]:
    """Collect what tifffile logs (e.g. 'invalid page offset') instead of printing it."""
    import logging

    log = logging.getLogger("tifffile")
    notes: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            notes.append(record.getMessage())

    handler, propagate = _Collect(logging.WARNING), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        yield notes
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


def _check_complete(tif: Any, path: Path, notes: list[str]) -> None:
    """Refuse a TIFF whose pages do not add up: a page chain pointing past the end of the
    file, page data beyond it, or a declared series larger than what is stored."""
    import struct

    size = os.path.getsize(path)
    problem = next((n for n in notes if "invalid page offset" in n or "corrupted" in n), None)
    pages = tif.pages
    n = len(pages)
    t = tif.tiff
    if problem is None and n:
        last = pages[n - 1]
        for page in {0: pages[0], 1: last}.values():
            ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts) if c]
            if ends and max(ends) > size:
                problem = f"page data ends at byte {max(ends)}, the file has {size}"
        fh = tif.filehandle
        fh.seek(last.offset)
        ntags = struct.unpack(t.tagnoformat, fh.read(t.tagnosize))[0]
        fh.seek(last.offset + t.tagnosize + ntags * t.tagsize)
        raw = fh.read(t.offsetsize)
        nxt = struct.unpack(t.offsetformat, raw)[0] if len(raw) == t.offsetsize else size
        if nxt >= size:
            problem = f"page {n} points to a next page at byte {nxt}, past the end ({size} bytes)"
    if problem is None and tif.series:
        s = tif.series[0]
        off = s.dataoffset
        if off is not None and off + s.nbytes > size:
            problem = f"the {'x'.join(map(str, s.shape))} series needs {off + s.nbytes} bytes, the file has {size}"
    if problem is not None:
        raise UserError(f"{path} is truncated or damaged ({problem}); it was probably not written "
                        "or copied completely")


def axes_for(arr: np.ndarray, channels_first: bool = False) -> str:
    spatial = "ZYX"[-(arr.ndim - channels_first):] if arr.ndim - channels_first <= 3 else None
    if spatial is None:
        raise UserError(f"cannot name the axes of an array of shape {arr.shape}")
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
        tifffile.imwrite(tmp, data, metadata=meta, software=MARK, **kw,
                         compression="zlib" if compress else None, bigtiff=data.nbytes > 2 ** 31)
    return path


@contextlib.contextmanager
def tiff_memmap(path: str | os.PathLike, shape: tuple[int, ...], dtype, *, axes: str | None = None,
                pixel=None):
    """A writable memory-mapped TIFF at a temporary name, renamed to ``path`` on success."""
    import tifffile

    path = Path(path)
    with atomic_path(path) as tmp:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        check_space(tmp.parent, nbytes)
        meta, kw = _pixel_kwargs(axes, pixel)
        mm = tifffile.memmap(tmp, shape=shape, dtype=dtype, metadata=meta, **kw,
                             software=MARK, bigtiff=nbytes > 2 ** 31)
        with open(tmp, "r+b") as f:  # allocate now: a full disk is an error here, not a SIGBUS later
            reserve(f.fileno(), os.path.getsize(tmp), path)
        try:
            yield mm
            mm.flush()
        finally:
            del mm

