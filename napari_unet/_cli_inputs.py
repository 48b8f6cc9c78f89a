"""Inputs of ``napari-unet train`` and ``evaluate``: the formats ``predict`` reads (TIFF, PNG and
other common images, ``.zarr``/``.ome.zarr`` stores, ``file.h5:dataset``), through the same readers.

TIFFs stay memory-mapped where the file allows it; zarr/HDF5 inputs are opened lazily first (so a
missing or damaged input is refused before any is read) and then read into memory, which training
and scoring need: when they would not fit in the free memory, that is said instead.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ._cli_args import _existing_file
from .core.errors import UserError

# the share of the available memory that whole zarr/HDF5 inputs may take (training makes
# normalised float32 crops of them, scoring compares them)
INPUT_RAM_SHARE = 0.5


def input_files(specs: Sequence[str]) -> list[str]:
    """The files on disk behind input ``specs`` (``file.h5:raw`` -> ``file.h5``), for the check
    that an output is not one of the inputs."""
    from .core.readers import spec_file

    return [spec_file(s) for s in specs]


def _open(spec: str, what: str):
    """A lazy source for a zarr/HDF5 spec, or None for a file read by core.io.read_image."""
    from .core.readers import is_lazy_spec, open_image, spec_file

    if not is_lazy_spec(spec):
        _existing_file(spec, what)
        return None
    if not Path(spec_file(spec)).exists():
        raise UserError(f"{what} {spec_file(spec)} does not exist")
    try:
        return open_image(spec)
    except FileNotFoundError as e:
        raise UserError(f"{what} {spec}: {e}") from None


def read_inputs(items: Sequence[tuple[str, str]], doing: str = "training") -> list:
    """Read ``(spec, what)`` pairs (``what`` names the option in messages) into arrays, in order.

    Every input is opened before any is read; zarr/HDF5 inputs together must fit in
    ``INPUT_RAM_SHARE`` of the available memory, else a UserError says how much they need."""
    from .core.io import read_image

    sources = [_open(spec, what) for spec, what in items]
    lazy = [(s, spec) for s, (spec, _) in zip(sources, items) if s is not None]
    if lazy:
        import torch

        from .core.device import available_memory
        from .core.outputs import _size

        need = sum(s.size * s.dtype.itemsize for s, _ in lazy)
        free = available_memory(torch.device("cpu"))
        if need > INPUT_RAM_SHARE * free:
            big, spec = max(lazy, key=lambda t: t[0].size * t[0].dtype.itemsize)
            shape = "x".join(map(str, big.shape))
            raise UserError(f"{doing} reads its inputs into memory: the zarr/HDF5 inputs need {_size(need)} "
                            f"({spec} is {shape} {big.dtype}), more than half of the {_size(free)} available; "
                            "use a crop of the image")
    return [read_image(spec) if s is None else s[()] for s, (spec, _) in zip(sources, items)]
