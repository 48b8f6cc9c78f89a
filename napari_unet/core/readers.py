"""Lazy image inputs: TIFF (memory-mapped, or through tifffile's zarr store), zarr and OME-Zarr
(NGFF 0.4 and 0.5), HDF5 (``file.h5:dataset``), numpy and dask arrays; with pixel sizes.

:func:`open_image` returns an :class:`ImageSource`: a small, picklable handle that reads only
the region asked for (``source[slices]`` -> numpy), so a dask worker can reopen the same input
by path. Nothing here loads a whole array. zarr/h5py/dask are imported only when needed.
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError, UserTypeError, reason
from .pixels import PixelSize  # noqa: F401  (re-exported)

__all__ = ["PixelSize", "ngff_unit", "ImageSource", "is_lazy_spec", "spec_file", "open_image",
           "ngff_multiscale", "input_pixel_size"]

# unit spellings found in TIFF/ImageJ/OME metadata -> NGFF (UDUNITS-2) names
_UNITS = {"um": "micrometer", "µm": "micrometer", "\u03bcm": "micrometer", "micron": "micrometer",
          "microns": "micrometer", "micrometer": "micrometer", "micrometre": "micrometer",
          "nm": "nanometer", "nanometer": "nanometer", "mm": "millimeter", "millimeter": "millimeter",
          "cm": "centimeter", "centimeter": "centimeter", "m": "meter", "meter": "meter",
          "a": "angstrom", "\u00c5": "angstrom", "angstrom": "angstrom", "pixel": None, "": None}
_H5 = re.compile(r"^(?P<file>.+\.(?:h5|hdf5|hdf|he5))(?::(?P<key>.*))?$", re.IGNORECASE)
_ZARR = re.compile(r"^(?P<file>.+\.zarr)/?(?::(?P<key>.*))?$", re.IGNORECASE)
_OPEN: dict[tuple, Any] = {}  # per-process cache of opened files (a dask worker reopens by path)


def ngff_unit(unit: Any) -> str | None:
    """An NGFF unit name for a unit spelling from file metadata (None when unknown)."""
    if unit is None:
        return None
    u = str(unit).strip()
    return _UNITS.get(u, _UNITS.get(u.lower(), u.lower() if u.isalpha() and len(u) > 2 else None))


@dataclass
class ImageSource:
    """A lazily read image. ``source[idx]`` returns a numpy array of just that region."""

    kind: str                  # "tiff", "zarr", "h5", "array" (numpy / dask / array-like)
    path: str | None
    key: str | None
    shape: tuple[int, ...]
    dtype: np.dtype
    axes: str | None = None    # e.g. "ZYX" or "CZYX" where metadata names them
    pixel_size: PixelSize = field(default_factory=PixelSize)
    chunks: tuple[int, ...] | None = None
    name: str = "image"
    drop: tuple[int, ...] = ()  # singleton axes of the stored array left out (e.g. NGFF t, c)
    array: Any = None          # kind == "array": the array itself

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def spec(self) -> str:
        return f"{self.path}:{self.key}" if self.key else str(self.path)

    def raw(self) -> Any:
        """The stored array (opened once per process)."""
        if self.kind == "array":
            return self.array
        k = (self.kind, self.path, self.key)
        if k not in _OPEN:
            _OPEN[k] = _open_raw(self.kind, self.path, self.key)
        return _OPEN[k]

    def __getitem__(self, idx) -> np.ndarray:
        if not isinstance(idx, tuple):
            idx = (idx,)
        idx = idx + (slice(None),) * (self.ndim - len(idx))
        if self.drop:
            it = iter(idx)
            idx = tuple(0 if ax in self.drop else next(it) for ax in range(self.ndim + len(self.drop)))
        part = self.raw()[idx]
        if hasattr(part, "compute"):  # dask: read in this thread, whatever the caller runs on
            part = part.compute(scheduler="sync")
        return np.asarray(part)

    def to_dask(self):
        """A dask array over this source (chunked as stored), for whole-array reductions."""
        import dask.array as da

        if self.kind == "array" and hasattr(self.array, "dask") and not self.drop:
            return self.array
        chunks = self.chunks or "auto"
        return da.from_array(self, chunks=chunks, asarray=True, fancy=False, name=f"read-{self.name}-{id(self)}")

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items()}


def _open_raw(kind: str, path: str, key: str | None) -> Any:
    if kind == "tiff":
        import tifffile

        try:
            return tifffile.memmap(path, mode="r")
        except (ValueError, TypeError, OSError):
            import zarr

            return zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    if kind == "zarr":
        import zarr

        node = zarr.open(path, mode="r")
        return node[key] if key else node
    if kind == "h5":
        import h5py

        return _open_h5_file(h5py, path)[key]
    raise UserError(f"unknown source kind {kind!r}")


# ----------------------------------------------------------------------------- entry point

def is_lazy_spec(spec: Any) -> bool:
    """Whether a path names a zarr store or an HDF5 dataset (read through this module)."""
    s = str(spec)
    return bool(_H5.match(s) or _ZARR.match(s) or (os.path.isdir(s) and _looks_like_zarr(Path(s))))


def spec_file(spec: str | os.PathLike) -> str:
    """The file or store on disk that ``spec`` names (``file.h5:dataset`` -> ``file.h5``)."""
    s = os.fspath(spec)
    m = _H5.match(s) or _ZARR.match(s)
    return m.group("file") if m else s


def _looks_like_zarr(p: Path) -> bool:
    return any((p / f).exists() for f in ("zarr.json", ".zgroup", ".zarray", ".zattrs"))


def open_image(spec: Any, name: str | None = None) -> ImageSource:
    """Open ``spec`` lazily: a path (TIFF, ``.zarr``/``.ome.zarr``, ``file.h5:dataset``), or a
    numpy / dask / zarr array. Raises FileNotFoundError / ValueError naming the problem."""
    if not isinstance(spec, (str, os.PathLike)):
        if not hasattr(spec, "shape") or not hasattr(spec, "dtype"):
            raise UserTypeError(f"image must be a path or an array, got {type(spec).__name__}")
        chunks = getattr(spec, "chunksize", None) or getattr(spec, "chunks", None)
        if chunks is not None and (not isinstance(chunks, tuple) or not all(isinstance(c, int) for c in chunks)):
            chunks = None
        return ImageSource("array", None, None, tuple(int(s) for s in spec.shape), np.dtype(spec.dtype),
                           chunks=chunks, name=name or "image", array=spec)
    s = os.fspath(spec)
    m = _H5.match(s)
    if m:
        return _open_h5(m.group("file"), m.group("key"), name)
    m = _ZARR.match(s)
    if m or (os.path.isdir(s) and _looks_like_zarr(Path(s))):
        return _open_zarr(m.group("file") if m else s, m.group("key") if m else None, name)
    p = Path(s)
    if not p.exists():
        raise FileNotFoundError(f"image file {p} does not exist")
    if p.is_dir():
        raise UserError(f"{p} is a folder, not an image file or a zarr store")
    if p.suffix.lower() in (".tif", ".tiff"):
        return _open_tiff(p, name)
    from .io import read_image  # other formats: small images, read whole

    return open_image(read_image(p), name=name or p.stem)


def _stem(p: str | Path) -> str:
    n = Path(p).name
    for suf in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif", ".hdf5", ".h5", ".hdf", ".he5"):
        if n.lower().endswith(suf):
            return n[: -len(suf)]
    return Path(n).stem


def _open_tiff(p: Path, name: str | None) -> ImageSource:
    import tifffile

    from .io import _check_complete, _tifffile_notes

    try:
        with _tifffile_notes() as notes, tifffile.TiffFile(p) as tif:
            _check_complete(tif, p, notes)  # a truncated file is refused, not read as its first page
            series = tif.series[0]
            shape, dtype, axes = tuple(series.shape), series.dtype, series.axes
            px = _tiff_pixel_size(tif, axes)
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"{p} is not a readable TIFF file: {reason(e)}") from None
    axes = axes.replace("Q", "").upper() if len(axes) == len(shape) else None
    if axes and not set(axes) <= set("TCZYXS"):
        axes = None
    return ImageSource("tiff", str(p), None, shape, np.dtype(dtype), axes=axes, pixel_size=px,
                       name=name or _stem(p))


def _tiff_pixel_size(tif, axes: str) -> PixelSize:
    px = PixelSize()
    page = tif.pages[0]
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
            pix = next(e for e in root.iter() if e.tag.endswith("Pixels"))
            for a in "XYZ":
                v = pix.get(f"PhysicalSize{a}")
                if v:
                    px.sizes[a.lower()] = float(v)
                    px.unit = px.unit or ngff_unit(pix.get(f"PhysicalSize{a}Unit", "µm"))
            if px:
                return px
        except (ET.ParseError, StopIteration, ValueError):
            pass
    ij = tif.imagej_metadata or {}
    shaped = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else {}
    unit = ij.get("unit") or shaped.get("unit")
    if isinstance(shaped.get("pixel_size"), dict):  # written by napari-unet (ngff.tiff_pixel_kwargs)
        return PixelSize({k: float(v) for k, v in shaped["pixel_size"].items()}, ngff_unit(unit))
    tags = page.tags
    if "XResolution" in tags and "YResolution" in tags:
        xr, yr = (tags[t].value for t in ("XResolution", "YResolution"))
        xr, yr = (r[0] / r[1] if isinstance(r, tuple) and r[1] else float(r) for r in (xr, yr))
        resunit = int(getattr(tags.get("ResolutionUnit"), "value", 1) or 1)
        factor = {2: 25400.0, 3: 10000.0, 4: 1000.0, 5: 1.0}.get(resunit)  # -> micrometer
        if xr > 0 and yr > 0:
            if factor is not None and not ij:
                px.sizes.update(x=factor / xr, y=factor / yr)
                px.unit = "micrometer"
            elif unit is not None:  # ImageJ: pixels per `unit`
                px.sizes.update(x=1.0 / xr, y=1.0 / yr)
                px.unit = ngff_unit(unit)
    z = ij.get("spacing", shaped.get("spacing"))
    if z is not None and "Z" in axes:
        px.sizes["z"] = float(z)
    return px


def _open_h5(file: str, key: str | None, name: str | None) -> ImageSource:
    try:
        import h5py
    except ImportError:
        raise UserError("reading HDF5 needs h5py: pip install 'napari-unet[bigdata]'") from None
    if not Path(file).is_file():
        raise FileNotFoundError(f"HDF5 file {file} does not exist")
    with _open_h5_file(h5py, file) as f:
        if not key:
            names: list[str] = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            if len(names) != 1:
                raise UserError(f"{file} holds {len(names)} datasets ({', '.join(names[:5])}); "
                                 f"name one as {file}:DATASET")
            key = names[0]
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise UserError(f"{file} has no dataset {key!r}")
        d = f[key]
        shape, dtype, chunks = tuple(d.shape), d.dtype, d.chunks
        px = PixelSize()
        el = d.attrs.get("element_size_um")  # ilastik / Fiji convention
        if el is not None and len(el) in (2, 3):
            px = PixelSize(dict(zip("zyx"[-len(el):], map(float, el))), "micrometer")
    return ImageSource("h5", file, key, shape, np.dtype(dtype), chunks=chunks, pixel_size=px,
                       name=name or _stem(file))


def _open_h5_file(h5py, file: str):
    """``h5py.File(file)``, or a UserError naming the file (a truncated copy, not HDF5 at all)."""
    try:
        return h5py.File(file, "r")
    except OSError as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", why)
        if m:
            raise UserError(f"{file} is truncated or damaged (the file has {m.group(1)} bytes, its header "
                            f"says {m.group(2)}); it was probably not written or copied completely") from None
        inner = re.search(r"\((.*)\)\s*$", why)
        raise UserError(f"{file} is not a readable HDF5 file ({inner.group(1) if inner else reason(e)}); "
                        "it may be damaged or of another kind") from None


def ngff_multiscale(attrs: dict) -> dict | None:
    """The first multiscales entry of NGFF 0.4 (``attrs``) or 0.5 (``attrs['ome']``) metadata."""
    ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
    return ms[0] if ms else None


def _scale_of(transforms: list | None, n: int) -> list[float]:
    for t in transforms or []:
        if t.get("type") == "scale":
            return [float(v) for v in t["scale"]]
    return [1.0] * n


def _open_zarr(path: str, key: str | None, name: str | None) -> ImageSource:
    try:
        import zarr
    except ImportError:
        raise UserError("reading zarr needs zarr: pip install 'napari-unet[bigdata]'") from None
    if not Path(path).exists():
        raise FileNotFoundError(f"zarr store {path} does not exist")
    try:
        node = zarr.open(path, mode="r")
        if key:
            node = node[key]
    except Exception as e:
        raise UserError(f"cannot open zarr {path}{':' + key if key else ''}: {reason(e)}") from None
    axes, px, drop = None, PixelSize(), ()
    if isinstance(node, zarr.Group):
        ms = ngff_multiscale(dict(node.attrs))
        if ms is None:
            arrays = [k for k, _ in node.arrays()]
            if len(arrays) != 1:
                raise UserError(f"{path} is a zarr group without OME-NGFF multiscales and holds "
                                 f"{len(arrays)} arrays; name one as {path}:ARRAY")
            key = (key + "/" if key else "") + arrays[0]
            node = node[arrays[0]]
        else:
            ds = ms["datasets"][0]
            key = (key + "/" if key else "") + ds["path"]
            names = [a["name"] if isinstance(a, dict) else a for a in ms.get("axes", [])]
            node = node[ds["path"]]
            n = node.ndim
            scale = _scale_of(ds.get("coordinateTransformations"), n)
            outer = _scale_of(ms.get("coordinateTransformations"), n)
            scale = [a * b for a, b in zip(scale, outer)]
            if len(names) == n:
                units = [a.get("unit") for a in ms["axes"] if isinstance(a, dict) and a.get("type") == "space"]
                sizes = {nm: s for nm, s in zip(names, scale) if nm in ("z", "y", "x")}
                px = PixelSize(sizes, ngff_unit(units[0]) if units else None)
                # leave out singleton time/channel axes (the common tczyx with t = c = 1)
                drop = tuple(i for i, (nm, s) in enumerate(zip(names, node.shape))
                             if nm in ("t", "c") and s == 1)
                kept = [nm for i, nm in enumerate(names) if i not in drop]
                axes = "".join(kept).upper() if set(kept) <= set("tczyx") else None
    shape = tuple(int(s) for i, s in enumerate(node.shape) if i not in drop)
    chunks = tuple(int(c) for i, c in enumerate(node.chunks) if i not in drop)
    return ImageSource("zarr", str(path), key, shape, np.dtype(node.dtype), axes=axes, pixel_size=px,
                       chunks=chunks, name=name or _stem(path), drop=drop)


def input_pixel_size(path: str | os.PathLike) -> PixelSize:
    """The pixel size recorded in an image file's metadata (empty when none or unreadable)."""
    try:
        return open_image(path).pixel_size
    except (OSError, ValueError, TypeError):
        return PixelSize()
