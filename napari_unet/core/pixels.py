"""The physical pixel size carried from inputs to outputs (no dependencies: shared by the
readers and the writers)."""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PixelSize"]


@dataclass
class PixelSize:
    """Physical size of one pixel along the spatial axes of an image ('z', 'y', 'x')."""

    sizes: dict[str, float] = field(default_factory=dict)
    unit: str | None = None

    def for_axes(self, axes: str) -> list[float]:
        """Scale list for ``axes`` such as 'CZYX' (1.0 for non-spatial or unknown axes)."""
        return [float(self.sizes.get(a.lower(), 1.0)) if a in "ZYX" else 1.0 for a in axes]

    def __bool__(self) -> bool:
        return bool(self.sizes)
