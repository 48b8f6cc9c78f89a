"""Reading bioimage.io model packages back (no bioimageio dependency: zipfile + YAML + torch).

``napari-unet export`` keeps the model's own metadata under ``config.napari_unet`` in the
package's ``rdf.yaml``; with it and the ``pytorch_state_dict`` weights, :func:`read_package`
restores the exact model. A package from elsewhere is refused with a message that says what
is and is not supported.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import UserError, reason

CONFIG_KEY = "napari_unet"
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")

SUPPORTED = ("napari-unet loads its own model files (.pt) and bioimage.io packages made by "
             "'napari-unet export' (they keep napari-unet's settings under config.napari_unet)")
NOT_SUPPORTED = ("other bioimage.io models (other architectures, weight formats, pre- and "
                 "post-processing) are not supported: run them with bioimageio.core, deepImageJ, "
                 "ilastik or another bioimage.io consumer")


def _rdf_name(names: list[str]) -> str | None:
    for n in RDF_NAMES:
        if n in names:
            return n
    cands = [n for n in names if n.endswith(".bioimageio.yaml") and "/" not in n]
    return cands[0] if len(cands) == 1 else None


def is_package(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a bioimage.io package: a zip (or folder) with an rdf.yaml/bioimageio.yaml,
    or that YAML file itself. A torch ``.pt`` file is a zip too, but has no such entry."""
    path = Path(path)
    if path.is_dir():
        return _rdf_name([p.name for p in path.iterdir()]) is not None
    if path.name in RDF_NAMES or path.name.endswith(".bioimageio.yaml"):
        return True
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return _rdf_name(zf.namelist()) is not None
    except (zipfile.BadZipFile, OSError):
        return False


class _Source:
    """Files of a package, whether zipped, a folder, or beside an rdf.yaml."""

    def __init__(self, path: Path):
        self.path = path
        self.zip = None
        if path.is_dir():
            self.root, self.rdf = path, _rdf_name([p.name for p in path.iterdir()])
        elif zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            self.rdf = _rdf_name(self.zip.namelist())
        else:
            self.root, self.rdf = path.parent, path.name

    def read(self, name: str) -> bytes:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or "://" in name:
            raise UserError(f"{self.path}: the package refers to {name!r}, not a file inside it")
        try:
            if self.zip is not None:
                return self.zip.read(str(rel))
            return (self.root / rel).read_bytes()
        except (KeyError, OSError):
            raise UserError(f"{self.path}: the package lacks its file {name!r}") from None

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def _source_name(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and isinstance(entry.get("source"), str):
        return entry["source"]
    return None


def read_rdf(path: str | os.PathLike) -> dict[str, Any]:
    """The package's resource description (rdf.yaml) as a dict."""
    src = _Source(Path(path))
    try:
        return _parse_rdf(src)
    finally:
        src.close()


def _parse_rdf(src: _Source) -> dict[str, Any]:
    import yaml

    try:
        rdf = yaml.safe_load(src.read(src.rdf))
    except yaml.YAMLError as e:
        raise UserError(f"{src.path}: unreadable bioimage.io description {src.rdf}: "
                         f"{reason(e)}") from None
    if not isinstance(rdf, dict):
        raise UserError(f"{src.path}: {src.rdf} is not a bioimage.io description")
    return rdf


def foreign_message(path: Path, rdf: dict[str, Any]) -> str:
    kind = rdf.get("type", "resource")
    name = rdf.get("name") or "unnamed"
    if kind != "model":
        return (f"{path} is a bioimage.io {kind} ('{name}'), not a model. {SUPPORTED}.")
    weights = sorted((rdf.get("weights") or {}).keys()) if isinstance(rdf.get("weights"), dict) else []
    return (f"{path} is a bioimage.io model ('{name}', format {rdf.get('format_version', '?')}, "
            f"weights: {', '.join(weights) or 'none'}) that napari-unet did not export. "
            f"{SUPPORTED}; {NOT_SUPPORTED}.")


def read_package(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(meta, state_dict)`` of a package written by ``napari-unet export``.

    Raises ``UserError`` (a ``ValueError``) naming what is wrong for a foreign or damaged package.
    """
    import torch

    from .model import MODEL_FORMAT, MODEL_FORMAT_VERSION

    path = Path(path)
    src = _Source(path)
    try:
        rdf = _parse_rdf(src)
        cfg = (rdf.get("config") or {}).get(CONFIG_KEY) if isinstance(rdf.get("config"), dict) else None
        if not isinstance(cfg, dict) or not isinstance(cfg.get("meta"), dict):
            raise UserError(foreign_message(path, rdf))
        meta = dict(cfg["meta"])
        if meta.get("format") != MODEL_FORMAT:
            raise UserError(f"{path}: config.{CONFIG_KEY} has no '{MODEL_FORMAT}' metadata")
        if int(meta.get("format_version", 0)) > MODEL_FORMAT_VERSION:
            raise UserError(f"{path} was written by a newer napari-unet (format "
                             f"{meta.get('format_version')}); upgrade napari-unet")
        entry = (rdf.get("weights") or {}).get("pytorch_state_dict")
        name = _source_name(entry)
        if name is None:
            raise UserError(f"{path}: the package has no pytorch_state_dict weights")
        data = src.read(name)
        want = entry.get("sha256") if isinstance(entry, dict) else None
        if want and hashlib.sha256(data).hexdigest() != want:
            raise UserError(f"{path}: the weights {name} do not match their sha256 (damaged package)")
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"{path}: unreadable weights {name}: {reason(e)}") from None
        if not isinstance(state, dict):
            raise UserError(f"{path}: the weights {name} are not a state dict")
        return meta, state
    finally:
        src.close()
