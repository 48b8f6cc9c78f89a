"""benchmarks/quality_interactive.py: the simulation takes each round apart (what its
corrections painted, where the result turned right or wrong, and the round's weights at other
thresholds than the one its calibration chose), so a lost round can be told apart."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import quality_interactive as QI  # noqa: E402
from quality_methods import Image, Run, score  # noqa: E402

from napari_unet.core.synthetic import make_nuclei  # noqa: E402


def test_round_detail_reads_the_weights_back_at_other_thresholds_and_places_the_changes():
    truth = np.ones((60, 80), np.uint8)
    truth[20:40, 20:60] = 2
    yy, xx = np.mgrid[:60, :80]
    raw = np.clip((1.0 - np.abs(yy - 30) / 14.3) * (np.abs(xx - 40) < 22), 0.01, 0.99)   # a trained map
    t = 0.7                                  # the calibration moved the boundary to 0.7 of it:
    odds = (raw / (1 - raw)) / (t / (1 - t))  # what the shifted head gives, as predict returns it
    p = odds / (1 + odds)
    labels = np.where(p > 0.5, 2, 1).astype(np.uint8)
    run = Run(labels, SimpleNamespace(meta={"classes": 2, "edge_threshold": t}), 5, 1.0, probs=np.stack([1 - p, p]))
    before = labels.copy()
    before[0:5, 0:5] = 2                     # far from the new paint: turned right since
    before[26:28, 30:33] = 1                 # next to it: turned right too
    new = np.zeros(truth.shape, bool)
    new[25, 30:35] = True
    strokes = np.zeros(truth.shape, np.uint8)
    strokes[25, 30:35] = 2
    strokes[5, 5:9] = 1                      # painted in an earlier round
    d = QI.round_detail(run, truth, before, new, strokes)
    assert d["new_px"] == {2: 5}
    assert d["false_pos"] == int(((labels == 2) & (truth == 1)).sum())
    assert d["false_neg"] == int(((labels == 1) & (truth == 2)).sum())
    assert np.isclose(d["iou_at"][0.7], score(labels, truth))            # the chosen one, read back
    for th in (0.3, 0.5, 0.9):
        assert np.isclose(d["iou_at"][th], score(np.where(raw > th, 2, 1).astype(np.uint8), truth))
    assert d["near"] == (6, 0) and d["far"] == (25, 0) and d["mid"] == (0, 0)
    assert "iou_at" not in QI.round_detail(Run(labels, None, 1, 1.0), truth, None, None)


def test_the_simulation_logs_each_rounds_detail():
    img, sem, inst = make_nuclei((96, 96), seed=1)
    im = Image("tiny", "synthetic nuclei", img, sem.astype(np.uint8), inst)
    lines = []
    rows = QI.simulate(im, round_time=None, round_steps=3, rounds=1, log=lines.append)
    assert [r["round"] for r in rows] == [0, 1] and len(lines) == 2
    assert "FP " in lines[0] and "turned right/wrong" not in lines[0]
    assert "turned right/wrong near" in lines[1]
    assert sum(rows[1]["new_px"].values()) == rows[1]["painted"] - rows[0]["painted"]
    assert all(0 <= r["iou"] <= 1 and r["false_pos"] >= 0 and r["false_neg"] >= 0 for r in rows)
