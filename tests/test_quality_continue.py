"""benchmarks/quality_continue.py: the signals it records are the ones keep-better scores both
weights by, and its summary counts the wrong decisions."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from quality_continue import _record_signals, table  # noqa: E402

from napari_unet.core.synthetic import make_nuclei, make_strokes  # noqa: E402
from napari_unet.core.train import iter_train, train  # noqa: E402
from napari_unet.core.train.validation import ValidationMixin  # noqa: E402

TINY = dict(base_channels=8, depth=2, patch=64, batch_size=4, device="cpu")


def test_the_recorder_sees_both_weights_and_leaves_the_decision_alone(monkeypatch):
    img, sem, inst = make_nuclei((128, 128), seed=5)
    strokes = make_strokes(sem, inst, seed=5)
    base = train(img, strokes, steps=2, **TINY)
    opts = {k: v for k, v in TINY.items() if k not in ("base_channels", "depth")}
    fin0 = list(iter_train(img, strokes, model=base, steps=6, keep_better=True, seed=3, **opts))[-1]
    monkeypatch.setattr(ValidationMixin, "_keep_better", ValidationMixin._keep_better)  # restored after
    seen = {}
    _record_signals(seen)
    base = train(img, strokes, steps=2, **TINY)
    fin = list(iter_train(img, strokes, model=base, steps=6, keep_better=True, seed=3, **opts))[-1]
    assert set(seen) == {"new", "old"}
    for side in seen.values():
        assert 0.0 <= side["fit"] <= 1.0 and 0.0 <= side["agreement"] <= 1.0 and "flux" in side
    assert fin.paint_iou == (seen["old"]["fit"], seen["new"]["fit"])
    assert fin.kept_previous == fin0.kept_previous and fin.message.split("; ", 1)[1:] == fin0.message.split("; ", 1)[1:]


def test_the_summary_counts_worse_weights_taken_and_better_ones_set_aside():
    row = dict(image="x", fit=0.01, flux=0.02, agreement=0.001, message="")
    rows = [dict(row, seed=0, previous=0.90, new=0.88, kept_previous=False),   # took worse
            dict(row, seed=1, previous=0.90, new=0.95, kept_previous=True),    # set better aside
            dict(row, seed=2, previous=0.90, new=0.85, kept_previous=True),    # right
            dict(row, seed=3, previous=0.90, new=0.93, kept_previous=False)]   # right
    text = "\n".join(table(rows))
    assert "| x | 0 | 0.900 | 0.880 | -0.020 | +0.010 | +2.0% | +0.0010 | new |" in text
    assert "4 continuations; the new weights were better in 2" in text
    assert "took worse weights: 1 (worst -0.020)" in text
    assert "set better weights aside: 1 (up to +0.050)" in text
