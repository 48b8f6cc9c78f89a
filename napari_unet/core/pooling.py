"""Per-axis pooling for anisotropic voxels (torch-free helpers; the U-Net lives in model.py).

nnU-Net's rule: at each level an axis is pooled by 2 only while its current spacing is less
than twice the finest current spacing. A stack with Z spacing 3x its XY spacing is pooled in
YX only at the first level (Z 3, YX 2 after it), in all three axes from the second level on
(Z 3 < 2 x 2). Isotropic voxels (or no spacing) pool every axis at every level, as before.

The metadata of a model with a pooling schedule holds ``pooling`` (one list of per-axis
factors per level), ``grid_axes`` (the product of the factors: input sizes and tile origins
must be multiples of it, per axis) and ``halo_axes`` (per-axis halo, at least the receptive
field along that axis, a multiple of that axis's grid). ``grid`` and ``halo`` stay the
largest of these, so code that uses one number for every axis stays correct (a coarser grid
and a larger halo than needed). Models saved before pooling schedules existed have neither
key and pool isotropically (:func:`axis_grid_halo` falls back to ``grid``/``halo``).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

from .errors import UserError, UserTypeError

__all__ = ["pooling_schedule", "check_spacing", "axis_grid_halo", "is_isotropic", "describe_pooling",
           "anisotropic_patch"]

# pool an axis while its spacing is below this multiple of the finest spacing (nnU-Net: 2)
POOL_RATIO = 2.0


def check_spacing(spacing: Any, dims: int, what: str = "spacing") -> tuple[float, ...] | None:
    """``spacing`` as ``dims`` positive finite floats (``None`` stays None)."""
    if spacing is None:
        return None
    if isinstance(spacing, (str, bytes)) or not hasattr(spacing, "__len__"):
        raise UserTypeError(f"{what} must be a tuple of {dims} numbers (the voxel size, e.g. "
                            f"(2.0, 0.5, 0.5) for Z, Y, X), got {spacing!r}")
    vals = []
    for v in spacing:
        if isinstance(v, bool):
            raise UserTypeError(f"{what} values must be numbers, got {spacing!r}")
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise UserTypeError(f"{what} values must be numbers, got {spacing!r}") from None
        if not (f > 0 and math.isfinite(f)):
            raise UserError(f"{what} values must be positive and finite, got {tuple(spacing)}")
        vals.append(f)
    if len(vals) != dims:
        raise UserError(f"{what} must have {dims} values for a {dims}D model "
                        f"({'Z, Y, X' if dims == 3 else 'Y, X'}), got {len(vals)}")
    return tuple(vals)


def pooling_schedule(spacing: Sequence[float] | None, depth: int, dims: int | None = None) -> list[list[int]]:
    """Per-level, per-axis pooling factors (1 or 2) for voxels of ``spacing``.

    >>> pooling_schedule((3.0, 1.0, 1.0), 3)
    [[1, 2, 2], [2, 2, 2], [2, 2, 2]]
    >>> pooling_schedule((5.0, 1.0, 1.0), 3)
    [[1, 2, 2], [1, 2, 2], [2, 2, 2]]
    """
    if spacing is None:
        return [[2] * int(dims or 2) for _ in range(depth)]
    current = [float(s) for s in spacing]
    out = []
    for _ in range(depth):
        finest = min(current)
        f = [2 if c / finest < POOL_RATIO * (1 - 1e-6) else 1 for c in current]
        out.append(f)
        current = [c * k for c, k in zip(current, f)]
    return out


def is_isotropic(pooling: Sequence[Sequence[int]] | None) -> bool:
    return pooling is None or all(f == 2 for level in pooling for f in level)


def axis_grid_halo(meta: dict, nd: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(grid, halo) per axis for the last ``nd`` spatial axes of ``meta``'s model; models
    without a pooling schedule (and 2D models on a stack's slices) use ``grid``/``halo``."""
    g, h = int(meta["grid"]), int(meta["halo"])
    ga, ha = meta.get("grid_axes"), meta.get("halo_axes")
    if ga and ha and len(ga) == nd and len(ha) == nd:
        return tuple(int(v) for v in ga), tuple(int(v) for v in ha)
    return (g,) * nd, (h,) * nd


def describe_pooling(meta: dict) -> str:
    """How much each axis is pooled, e.g. 'pooled Z x2, Y x8, X x8 (voxel 3x1x1)' (empty for
    an isotropic model)."""
    pooling = meta.get("pooling")
    if is_isotropic(pooling):
        return ""
    grid = meta.get("grid_axes") or [math.prod(col) for col in zip(*pooling)]
    names = "ZYX"[-len(grid):]
    text = ", ".join(f"{a} x{int(g)}" for a, g in zip(names, grid))
    sp = meta.get("spacing")
    if sp:
        text += " (voxel " + "x".join(f"{v:g}" for v in sp) + ")"
    return "pooled " + text


def anisotropic_patch(default: Sequence[int], spacing: Sequence[float] | None,
                      grid: Sequence[int]) -> tuple[int, ...]:
    """A training patch with the voxels of ``default`` (made for isotropic voxels) whose
    physical proportions are those of ``default`` on isotropic data: an axis ``r`` times coarser
    than the finest gets ``r**(-2/3)`` (3D) of its default length, the others ``r**(1/3)``
    more (a thinner patch in Z when Z is coarse); each on its axis's pooling ``grid``."""
    if spacing is None:
        return tuple(int(d) for d in default)
    finest = min(spacing)
    ratios = [s / finest for s in spacing]
    geo = math.prod(ratios) ** (1.0 / len(ratios))   # keeps the voxel count
    out = []
    for d, r, g in zip(default, ratios, grid):
        v = d * geo / r
        out.append(int(max(g, round(v / g) * g, 4 if g < 4 else g)))
    return tuple(out)
