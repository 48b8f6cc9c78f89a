"""The swell guard (core/train/validation.py ``_read_maps``, edge_evidence.swell_overshoot): when
the network's objects spread over unpainted pixels that look like the painted background, the
edge-aware regulariser stops for the rest of the run, the model's record says from which step,
and the end message says so and where to paint."""
import math

import numpy as np
import torch

from napari_unet.core.train import edge_evidence
from napari_unet.core.train.edge_evidence import swell_overshoot


def _field():
    """Dark cells (0.1) on a grey background (0.5) with a bright glow (0.9) beside them; the paint:
    object strokes inside the cells, background strokes on the grey, none on the glow."""
    img = np.full((1, 64, 64), 0.5)
    cells = np.zeros((1, 64, 64), bool)
    cells[0, 10:20, 10:40] = cells[0, 40:50, 20:50] = True
    glow = np.zeros_like(cells)
    glow[0, 20:37, 5:50] = True
    img[glow], img[cells] = 0.9, 0.1
    obj = np.zeros_like(cells)
    obj[0, 14:16, 14:36] = obj[0, 44:46, 24:46] = True
    bg = np.zeros_like(cells)
    bg[0, 55:58, 5:60] = bg[0, 2:5, 45:60] = True
    return img, cells, glow, obj, bg


def test_swell_overshoot_reads_objects_over_what_looks_like_the_painted_background():
    img, cells, glow, obj, bg = _field()
    valid = np.ones_like(cells)
    # the objects as painted: their unpainted pixels look like the painted objects
    assert abs(swell_overshoot(cells.astype(float), img, valid, -1.0, obj, bg)) < 1e-9
    # one pixel wider each way (the strokes' gap filled up to the grey): part of the way
    wide = np.zeros_like(cells)
    wide[0, 9:21, 9:41] = wide[0, 39:51, 19:51] = True
    assert 0 < swell_overshoot(wide.astype(float), img, valid, -1.0, obj, bg) < 0.5
    # swollen over the glow: on average past the painted background, away from the objects
    assert swell_overshoot((cells | glow).astype(float), img, valid, -1.0, obj, bg) > 1.0
    # no unpainted object, or no background paint: nothing to read
    assert math.isnan(swell_overshoot(obj.astype(float), img, valid, -1.0, obj, bg))
    assert math.isnan(swell_overshoot(cells.astype(float), img, valid, -1.0, obj, np.zeros_like(bg)))
    # the wrong polarity (no contrast in that direction): nothing to read
    assert math.isnan(swell_overshoot(cells.astype(float), img, valid, 1.0, obj, bg))


def test_objects_over_the_background_stop_the_edge_aware_regulariser(monkeypatch):
    """Through ``iter_train``: read at READ_MAPS_AT steps, then twice as far, ...; SWELL_READINGS
    readings in a row over SWELL_MAX stop the regulariser (no potts term from the next step on),
    the record keeps the step and the message says it and where to paint. Below the limit, with
    the guard off, where the same reading finds a halo (which looks like background inside a
    colony; with the halo gate off too), or once a halo is seen, the regulariser stays."""
    import napari_unet.core.train as T
    from napari_unet.core.synthetic import make_nuclei
    from napari_unet.core.train import calibration, loop

    img, sem, _ = make_nuclei((96, 96), seed=0)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    monkeypatch.setattr(T, "READ_MAPS_AT", 2)
    steps_with_potts = []
    real_potts = loop.edge_aware_potts

    def potts_spy(probs, image, offsets):
        steps_with_potts.append(1)
        return real_potts(probs, image, offsets)

    monkeypatch.setattr(loop, "edge_aware_potts", potts_spy)
    opts = dict(steps=9, device="cpu", seed=0, base_channels=4, depth=2)
    cases = ((2.0, True, -1.0, True), (0.5, True, -1.0, True), (2.0, False, -1.0, True),
             (2.0, True, 2.0, True), (2.0, True, 2.0, False))
    for swell, guard, halo, gate in cases:
        monkeypatch.setattr(T, "SWELL_GUARD", guard)
        monkeypatch.setattr(T, "HALO_GATE", gate)
        monkeypatch.setattr(edge_evidence, "swell_overshoot", lambda *a, s=swell, **k: s)
        monkeypatch.setattr(calibration, "halo_overshoot", lambda *a, h=halo, **k: h)
        steps_with_potts.clear()
        done = list(T.iter_train(img, sparse, **opts))[-1]
        reg = done.model.meta["training"]["regulariser"]
        assert reg["edge_aware"] == T.REG_WEIGHT          # the weight it trained with
        if swell > T.SWELL_MAX and guard and halo < calibration.HALO_MAX:
            # two readings in a row (steps 2 and 4), then none of the potts term after step 4
            assert reg["edge_aware_off_at_step"] == 4
            assert len(steps_with_potts) == 4, steps_with_potts
            assert ("edge-aware regulariser stopped at step 4: the objects spread over unpainted "
                    "pixels that look like the painted background (paint background strokes "
                    "there)") in done.message, done.message
        else:
            assert reg["edge_aware_off_at_step"] is None
            assert len(steps_with_potts) == 9
            assert "regulariser stopped" not in done.message
        assert reg["halo_seen_at_step"] == (4 if halo > calibration.HALO_MAX and gate else None)


def test_the_guard_reads_nothing_without_the_regulariser(monkeypatch):
    """A run without the edge-aware term (the paint shows no polarity, or its weight is 0)
    has nothing to stop: no reading, no record, no message."""
    import napari_unet.core.train as T
    from napari_unet.core.synthetic import make_nuclei

    img, sem, _ = make_nuclei((64, 64), seed=1)
    sparse = np.zeros_like(sem)
    sparse[::8] = sem[::8]
    monkeypatch.setattr(T, "READ_MAPS_AT", 2)
    monkeypatch.setattr(T, "REG_WEIGHT", 0.0)
    calls = []
    monkeypatch.setattr(edge_evidence, "swell_overshoot", lambda *a, **k: calls.append(1) or 2.0)
    torch.manual_seed(0)
    done = list(T.iter_train(img, sparse, steps=6, device="cpu", seed=0, base_channels=4, depth=2))[-1]
    assert calls == []
    assert done.model.meta["training"]["regulariser"]["edge_aware_off_at_step"] is None
    assert "regulariser stopped" not in done.message
