"""Readings of the network's own map while it trains: what its objects look like on the
calibration crops at step ``READ_MAPS_AT``, twice that, ... (and at a continued run's first
step). Each finding must read so in that many readings in a row (one young map is not enough),
then holds for the rest of the run:

- a halo rings the objects (phase contrast; calibration.halo_overshoot over HALO_MAX,
  ``HALO_READINGS``): the appearance prior gates the object classes as it gates the background
  (``halo_seen``, which the end-of-run calibration reads too). The halo between touching cells
  looks like background, and charged at any width it was carved out of every colony.
- the objects spread over what looks like the painted background (edge_evidence.swell_overshoot
  over ``SWELL_MAX``, ``SWELL_READINGS``; not where the same reading finds a halo, which looks like
  background inside a colony, nor once a halo is seen): the edge-aware regulariser stops
  (``swell_seen``). In a flat unpainted region beside the objects it drives the class the network
  leans to all the way there (a bright glow around cells became object).

The trainer holds one :class:`MapReadings` (set-up) and reads through
``validation.ValidationMixin._read_maps``; the loop, the calibration and the model's record read
its ``halo_seen`` and ``swell_seen``."""
from __future__ import annotations

import math

import numpy as np

from .config import _pkg


class MapReadings:
    """The state of a run's readings. ``halo``: the halo can be read (an appearance prior that
    does not gate the objects yet, and the halo gate on); ``swell``: the swell can be read (the
    edge-aware regulariser trains, and the guard is on)."""

    def __init__(self, *, halo: bool, swell: bool):
        self.halo_open = bool(halo)
        self.swell_open = bool(swell)
        self.halo_seen: int | None = None    # the step from which a halo gates the objects
        self.swell_seen: int | None = None   # the step from which the edge-aware regulariser stops
        self.halo_count = 0                  # readings in a row over the limit, so far
        self.swell_count = 0
        self.crops: tuple | None = None      # the crops' image side (calibration._flux_inputs), once

    @classmethod
    def for_run(cls, appearance, potts_weight: float) -> "MapReadings":
        """The readings of a run with this appearance prior (None: off) and edge-aware weight."""
        return cls(halo=appearance is not None and not appearance.gate_objects and _pkg().HALO_GATE,
                   swell=bool(potts_weight) and _pkg().SWELL_GUARD)

    @property
    def open(self) -> bool:
        """Whether anything is left to read."""
        return self.halo_open or self.swell_open

    def read(self, step: int, odds: np.ndarray) -> None:
        """One reading of the object odds ``odds`` on the crops (set :attr:`crops` first)."""
        from .calibration import HALO_MAX, halo_overshoot
        from .edge_evidence import swell_overshoot

        _, img, valid, polarity, obj, bg = self.crops
        if polarity is None:          # the crops' paint does not change during a run
            self.halo_open = self.swell_open = False
            return
        halo = halo_overshoot(odds, img, valid, polarity, obj, bg) > HALO_MAX
        if self.halo_open:
            self.halo_count = self.halo_count + 1 if halo else 0
            if self.halo_count >= _pkg().HALO_READINGS:
                self.halo_seen = step
                self.halo_open = self.swell_open = False   # inside a colony the halo looks like background
        if self.swell_open:
            # a halo explains objects that look like background (the halo inside a colony)
            over = not halo and swell_overshoot(odds, img, valid, polarity, obj, bg) > _pkg().SWELL_MAX
            self.swell_count = self.swell_count + 1 if over else 0
            if self.swell_count >= _pkg().SWELL_READINGS:
                self.swell_seen = step
                self.swell_open = False

    def next_step(self, step: int) -> float:
        """The step of the next reading after one at ``step``: twice it (``READ_MAPS_AT`` after a
        continued run's first step); never once nothing is left to read."""
        if not self.open:
            return math.inf
        return 2 * max(step, _pkg().READ_MAPS_AT // 2)
