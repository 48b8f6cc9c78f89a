"""Validation during training: loss, IoU and Dice on the held-out paint, the mirror-agreement
and uncertainty signals on all pixels of the crops, keep_better (score the starting and the
trained weights on all the paint, keep the better), and the BatchNorm re-estimation that
precedes them at the end of a run; the previews (the caller's image with the weights as they
are, during the run and once more at its end)."""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch

from ..data import ValSet
from ..events import Preview, Validation
from ..losses import confusion_counts
from .config import _pkg


class ValidationMixin:
    """Mixed into the trainer: needs ``p``, ``valset``, ``paintset``, ``start_state``,
    ``batch``, ``amp``, ``_to_dev``, ``_stopped`` and ``sampler``."""

    def _autocast_kw(self) -> dict:
        """``torch.autocast`` keywords for the passes over crops outside the training step (the
        edge calibration, keep-better's flux, the halo reading, the kinds of object)."""
        return dict(device_type=self.p.dev.type, dtype=self.amp, enabled=self.amp is not None)

    def _validate(self, step: int, vs: ValSet | None = None) -> Validation | None:
        vs = self.valset if vs is None else vs
        model = self.p.model
        k = self.p.classes
        model.eval()
        conf = torch.zeros(k, k, dtype=torch.long, device=self.p.dev)
        loss_sum = torch.zeros((), device=self.p.dev)
        agree = torch.zeros(k, k, dtype=torch.long, device=self.p.dev)
        unsure = torch.zeros((), dtype=torch.long, device=self.p.dev)
        total_px = 0
        n = vs.x.shape[0]
        bs = max(1, self.batch * 2)
        try:
            with torch.no_grad():
                for s in range(0, n, bs):
                    if self._stopped():
                        return None
                    x = self._to_dev(vs.x[s:s + bs])
                    y = vs.y[s:s + bs].to(self.p.dev, non_blocking=True)
                    with torch.autocast(self.p.dev.type, dtype=self.amp, enabled=self.amp is not None):
                        logits = model(x)
                    loss_sum += _pkg().sparse_loss(logits, y, dice_weight=self.p.dice_weight,
                                                    balanced=self.balanced) * x.shape[0]
                    conf += confusion_counts(logits.float(), y)
                    # stability over all pixels: the prediction of the mirrored crop, mirrored back
                    flip = tuple(range(2, x.ndim))
                    with torch.autocast(self.p.dev.type, dtype=self.amp, enabled=self.amp is not None):
                        logits_f = model(torch.flip(x, flip)).flip(flip)
                    a, b = logits.float().argmax(1), logits_f.float().argmax(1)
                    agree += torch.bincount((a * k + b).reshape(-1), minlength=k * k).reshape(k, k)
                    top = torch.softmax(logits.float(), 1).amax(1)
                    unsure += (top < _pkg().UNCERTAIN_BELOW).sum()
                    total_px += top.numel()
        finally:
            model.train()
        c = conf.cpu().numpy()
        loss = float(loss_sum) / n
        iou, dice = {}, {}
        for i in range(k):
            tp = int(c[i, i])
            fn = int(c[i].sum() - tp)
            fp = int(c[:, i].sum() - tp)
            if tp + fn == 0:
                continue  # class not in the validation paint
            iou[i + 1] = tp / (tp + fp + fn)
            dice[i + 1] = 2 * tp / (2 * tp + fp + fn)
        mi = float(np.mean(list(iou.values()))) if iou else float("nan")
        md = float(np.mean(list(dice.values()))) if dice else float("nan")
        ag = agree.cpu().numpy()
        inter = np.diag(ag).astype(np.float64)
        union = ag.sum(0) + ag.sum(1) - inter
        agreement = float(np.mean(inter[union > 0] / union[union > 0])) if (union > 0).any() else float("nan")
        uncertain = float(unsure) / max(1, total_px)
        return Validation(step, loss, iou, dice, mi, md, agreement, uncertain)

    def _preview(self, step: int, final: bool = False) -> Preview | None:
        """The caller's preview image (``p.preview()``) predicted with the weights as they are;
        None when there is none, it fails, or a stop comes first (``final``: the run's end,
        predicted whatever the stop, so that the preview shows the weights handed back)."""
        from ..predict import PredictDone, iter_predict

        try:
            res = self.p.preview()
        except Exception as e:  # the caller's callable: never kill training for it
            warnings.warn(f"preview callable failed: {e}", RuntimeWarning)
            return None
        if res is None:
            return None
        key, image = res
        tile = "auto" if self.p.dev.type == "cuda" else 256
        # a multi-channel model's preview image comes channels first (the caller's contract)
        ca = 0 if self.p.model.meta.get("in_channels", 1) > 1 else None
        gen = None
        try:
            gen = iter_predict(self.p.model, image, tile=tile, device=self.p.dev, channel_axis=ca)
            for ev in gen:
                if self._stopped() and not final:
                    return None
                if isinstance(ev, PredictDone):
                    return Preview(step, ev.probabilities, key)
        except (ValueError, TypeError, MemoryError, RuntimeError) as e:  # (RuntimeError: torch's)
            # a preview never costs the run, least of all the final one, after the training
            warnings.warn(f"preview image cannot be predicted: {e}", RuntimeWarning)
        finally:
            if gen is not None:
                gen.close()
        return None

    def _keep_better(self, step: int) -> tuple[bool, str, tuple[float, float] | None]:
        """Score the trained and the starting weights on all the paint; restore the starting
        ones if they fit it better. Returns (kept the previous weights, a message, the mean IoU
        on the paint of (the starting weights, the trained ones) or None)."""
        model = self.p.model
        new = self._validate(step, self.paintset)
        if new is None:
            return False, "", None
        trained = {k: t.detach().clone() for k, t in model.state_dict().items()}
        # what :meth:`_discarded_model` gives back if the previous weights are kept
        self.discarded = (trained, getattr(self, "edge_threshold", None))
        model.load_state_dict(self.start_state)
        old = self._validate(step, self.paintset)
        scores = None if old is None else (float(old.mean_iou), float(new.mean_iou))
        same_paint = getattr(self, "same_paint", False)   # nothing painted since the starting model
        steadier = self._steadier(old, new) if same_paint else ""
        if steadier:
            model.load_state_dict(trained)
            return False, (f"nothing new was painted and the new weights' prediction is clearly "
                           f"steadier ({steadier})"), scores
        if old is not None and old.mean_iou > new.mean_iou + 1e-3:
            return True, (f"kept the previous model: it fits the painted strokes better "
                          f"(IoU {old.mean_iou:.3f} against {new.mean_iou:.3f} for the new weights)"), scores
        # nothing new painted and no better fit: the pixels nobody painted would move at random
        if old is not None and same_paint and new.mean_iou <= old.mean_iou + 1e-3:
            return True, (f"kept the previous model: nothing new was painted and the new weights fit "
                          f"the painted strokes no better (IoU {new.mean_iou:.3f} against "
                          f"{old.mean_iou:.3f})"), scores
        edges = ""
        if old is not None and same_paint and _pkg().KEEP_BETTER_EDGES:
            # nothing new painted, a better fit: fitting the same strokes better can still move the
            # boundaries nobody painted (every such round measured lost 0.003-0.012 IoU); the new
            # weights must also put them clearly closer to the image's edges (a relative gain in
            # flux above MIN_GAIN, the flux's resolution between two models)
            evidence = self._flux_evidence()          # the image's side, once for both weights
            flux_old = self._region_flux(evidence)
            model.load_state_dict(trained)
            flux_new = self._region_flux(evidence)
            if flux_old is not None and flux_new is not None:
                from .calibration import MIN_GAIN   # the flux's resolution

                if flux_new <= flux_old + MIN_GAIN * abs(flux_old):
                    model.load_state_dict(self.start_state)
                    steady = (f" and their prediction is no steadier (mirror agreement {new.agreement:.3f} "
                              f"against {old.agreement:.3f})") if _pkg().STEADY_GAIN > 0 else ""
                    return True, (f"kept the previous model: nothing new was painted and, although the "
                                  f"new weights fit the painted strokes better (IoU {new.mean_iou:.3f} "
                                  f"against {old.mean_iou:.3f}), their boundaries follow the image's "
                                  f"edges no better (edge flux {flux_new:.4g} against "
                                  f"{flux_old:.4g}){steady}"), scores
                edges = f", edge flux {flux_new:.4g} against {flux_old:.4g}"
        model.load_state_dict(trained)
        if old is None:
            return False, "", None
        return False, (f"the new weights fit the painted strokes at least as well as the previous "
                       f"model (IoU {new.mean_iou:.3f} against {old.mean_iou:.3f}{edges})"), scores

    @staticmethod
    def _steadier(old: Validation | None, new: Validation) -> str:
        """Nothing new painted: whether the new weights' prediction agrees with that of the
        mirrored crops clearly better than the previous model's (by ``STEADY_GAIN``, mean IoU over
        all pixels of the crops) while fitting the paint nearly as well (``STEADY_SLACK``): a
        model still settling. Returns the comparison for the message, or "" if not."""
        gain, slack = _pkg().STEADY_GAIN, _pkg().STEADY_SLACK
        if old is None or gain <= 0:
            return ""
        if not np.all(np.isfinite((old.agreement, new.agreement, old.mean_iou, new.mean_iou))):
            return ""
        if new.agreement < old.agreement + gain or new.mean_iou < old.mean_iou - slack:
            return ""
        return (f"mirror agreement {new.agreement:.3f} against {old.agreement:.3f}; IoU on the "
                f"painted strokes {new.mean_iou:.3f} against {old.mean_iou:.3f}")

    def _read_maps(self, step: int) -> float:
        """Read the network's map on the calibration crops (map_readings.py: a halo, objects
        spread over what looks like the background) and act on what is found: a halo gates the
        appearance prior's objects too. Returns the step of the next reading."""
        r = self.readings
        if getattr(self, "calset", None) is None or not r.open:
            return math.inf
        from .calibration import _flux_inputs, _object_odds_of

        p = _object_odds_of(self.p.model, self.calset.x, to_dev=self._to_dev, autocast=self._autocast_kw(),
                            batch=max(1, self.batch * 2))
        if r.crops is None:           # the crops and their paint do not change during a run
            r.crops = _flux_inputs(self.calset.x, self.calset.y, p.shape)
        r.read(step, p)
        if r.halo_seen == step:
            self.appearance.gate_objects = True
        return r.next_step(step)

    def _discarded_model(self) -> torch.nn.Module:
        """The run's own weights that keep_better set aside, as a finished model (on the CPU,
        in eval mode) with this run's record and edge threshold."""
        import copy

        state, threshold = self.discarded
        other = copy.deepcopy(self.p.model)      # (its ``meta`` too)
        other.load_state_dict(state)
        other.meta["edge_threshold"] = threshold
        other.meta["training"]["edge_threshold"] = threshold
        other.meta["training"]["kept_by_keep_better"] = False
        other.meta["training"]["total_steps"] += other.meta["training"]["steps"]
        return other

    def _flux_evidence(self) -> tuple | None:
        """calibration.flux_evidence on the calibration crops; None without those crops, with the
        gradient criterion or without a polarity in the paint (calibration.paint_polarity)."""
        from .calibration import CRITERION, flux_evidence

        if getattr(self, "calset", None) is None or CRITERION != "flux":
            return None
        return flux_evidence(self.calset.x, self.calset.y)

    def _region_flux(self, evidence: tuple | None) -> float | None:
        """How well the current weights' boundaries follow the image's edges on the calibration
        crops (calibration.region_flux against ``evidence``); None without evidence or once
        stopped."""
        if evidence is None or self._stopped():
            return None
        from .calibration import region_flux

        amp = self._autocast_kw()
        return region_flux(self.p.model, self.calset.x, evidence, to_dev=self._to_dev,
                           autocast=amp, batch=max(1, self.batch * 2))

    def _calibrate_edges(self) -> None:
        """Sparse paint: move the background/object boundary onto the image's edges (calibration.py);
        a dense mask: nothing (it trains on its class shares), or with ``DENSE_TRAINING`` "shift"
        match the balanced head to them (:meth:`_dense_share`). The threshold
        chosen is kept in ``edge_threshold`` (recorded in the model's metadata)."""
        self.edge_threshold, self.threshold_from, self.edge_notes = None, "", []
        share = self._dense_share()
        if share is not None:   # a dense mask: objects where their odds beat the background's share
            from .calibration import shift_head

            self.edge_threshold, self.threshold_chosen, self.threshold_from = share, True, "shares"
            shift_head(self.p.model, share)
            self.p.model.meta["edge_threshold"] = share  # what the head carries (setup undoes it)
            return
        if getattr(self, "calset", None) is None:
            return
        if self._stopped():  # no time to choose: the threshold the model came with
            self._reapply_prior_threshold()
            return
        from .calibration import CONTINUE_KEEPS_THRESHOLD, THRESHOLDS, edge_threshold, shift_head

        amp = self._autocast_kw()
        prior = getattr(self, "prior_threshold", None)
        ref = self.edge_reference = prior if CONTINUE_KEEPS_THRESHOLD and prior in THRESHOLDS else 0.5
        found = edge_threshold(self.p.model, self.calset.x, self.calset.y, to_dev=self._to_dev,
                               autocast=amp, batch=max(1, self.batch * 2), reference=ref,
                               notes=self.edge_notes, halo=self.readings.halo_seen is not None)
        if found is None:
            return
        self.edge_threshold = found[0]
        self.threshold_chosen = True  # 0.5 included: the prior threshold is not put back after this
        if found[0] != 0.5:
            shift_head(self.p.model, found[0])
            self.p.model.meta["edge_threshold"] = found[0]  # what the head carries (setup undoes it)

    def _dense_share(self) -> float | None:
        """With :data:`DENSE_TRAINING` "shift", a run on a dense mask (``self.dense``, set up with the
        sampler, which it changes: at most ``MIN_UNPAINTED`` of its pixels unpainted): the
        background's share of the painted pixels (within 0.01-0.99), the threshold on
        :func:`calibration.object_odds` at which the class-balanced head's decision follows the
        mask's shares (objects against the background; object classes keep their order); else
        None (strokes, whose proportions say nothing of the image's)."""
        if _pkg().DENSE_TRAINING != "shift" or not getattr(self, "dense", False):
            return None
        background = sum(int(pr.counts[1]) for pr in self.p.pairs if len(pr.counts) > 1)
        return round(min(max(background / self.painted_px, 0.01), 0.99), 4)

    def _decide_kinds(self) -> str | None:
        """More than two classes: whether the paint shows them as kinds of object (each painted
        object of one class; calibration.painted_kinds on crops around the paint, judged by
        postprocess.classes_are_kinds). Recorded in the model's metadata
        (``one_class_per_object``, which predictions follow) and in ``self.kinds`` (the training
        record); returns a note for the run's message when they are. One forward pass over the
        crops: done after a Stop too."""
        self.kinds = None
        if getattr(self, "kindset", None) is None or not _pkg().KINDS_FROM_PAINT:
            return None
        from ..postprocess import classes_are_kinds
        from .calibration import painted_kinds

        amp = self._autocast_kw()
        ev = painted_kinds(self.p.model, self.kindset.x, self.kindset.y, to_dev=self._to_dev,
                           autocast=amp, batch=max(1, self.batch * 2))
        kinds = classes_are_kinds(ev)
        self.p.model.meta["one_class_per_object"] = kinds
        self.kinds = {"one_class_per_object": kinds, **ev, "pure": {str(c): n for c, n in sorted(ev["pure"].items())}}
        if not kinds:
            return None
        return (f"each painted object holds one class ({sum(ev['pure'].values())} objects, {ev['mixed']} with "
                "two): predictions give every object one class")

    def _reapply_prior_threshold(self) -> None:
        """A run that ends without choosing (a Stop, an error, no step): the head gets back the
        threshold it came with (setup undid it for training); never after a choice, nor twice."""
        from .calibration import shift_head

        t, model = getattr(self, "prior_threshold", None), self.p.model
        if t is not None and not getattr(self, "threshold_chosen", False):
            shift_head(model, t)
            model.meta["edge_threshold"] = self.edge_threshold = t
            self.threshold_chosen = True

    def _recalibrate_bn(self, reason: str, step: int, elapsed: float) -> int:
        """Re-estimate BatchNorm running statistics with the final weights on unaugmented
        patches from uniformly random places (a cumulative average, not the last few noisy
        class-balanced batches that momentum 0.1 remembers). Returns the batches used. A run of
        a fixed number of steps uses steps / 10 batches (3 to 50), so that the same seed gives
        the same weights on a busy machine; others a time budget (2% of the run; 0.3 s after a
        Stop)."""
        fixed = reason == "steps" and self.p.time_limit is None
        max_batches = min(50, max(3, step // 10)) if fixed else 50
        budget_s = math.inf if fixed else (0.3 if reason == "stopped" else max(0.5, 0.02 * elapsed))
        model = self.p.model
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not bns or not _pkg().BN_RECALIBRATE:
            return 0
        saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(),
                  m.num_batches_tracked.clone()) for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        t0 = time.perf_counter()
        n = 0
        try:
            with torch.no_grad():
                while n < max_batches and (n < 3 or time.perf_counter() - t0 < budget_s):
                    if self._stopped() and n >= 1:
                        break
                    x = self._to_dev(self.sampler.uniform_batch(max(2, self.batch)))
                    with torch.autocast(self.p.dev.type, dtype=self.amp, enabled=self.amp is not None):
                        model(x)
                    n += 1
        finally:
            for m, (mom, rm, rv, nb) in zip(bns, saved):
                m.momentum = mom
                if n == 0:
                    m.running_mean.copy_(rm)
                    m.running_var.copy_(rv)
                    m.num_batches_tracked.copy_(nb)
        return n
