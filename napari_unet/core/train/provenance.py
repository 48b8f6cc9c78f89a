"""What a trained model records about its training (``meta["training"]``), checkpoints, and the
one way every run ends (:meth:`ProvenanceMixin._finalise`)."""
from __future__ import annotations

import datetime as _dt
import warnings

import torch

from ..device import describe_device
from ..events import Validation
from .config import _pkg


def painted_record(pairs) -> dict:
    """The paint of a run for the model's record: per image, its shape and the painted pixels
    per class value."""
    return {"images": [{"shape": list(p.image.shape[1:]),
                        "painted": {str(v): int(p.counts[v]) for v in range(1, len(p.counts)) if p.counts[v]}}
                       for p in pairs]}


def renamed_classes(before: list | None, after: list | None) -> str:
    """A note, or "", when continuing a model renames its classes (the painting's names win):
    a model of nuclei continued on a painting whose class 2 is 'membrane' says so."""
    if not before or not after or list(before) == list(after):
        return ""
    pairs = [f"class {i + 1} '{a}' is now '{b}'" for i, (a, b) in enumerate(zip(before, after)) if a != b]
    return "the classes take the painting's names: " + ", ".join(pairs)


class ProvenanceMixin:
    """Mixed into the trainer: needs ``p``, ``train_pixels``, ``val_pixels``, ``precision``,
    ``patch`` and ``batch``."""

    def _end_notes(self, ended: bool, kept_previous: bool) -> list[str]:
        """What the run's end message says about how it trained and where it put the boundary (a
        full mask's shares, a halo read or the regulariser stopped during training, the edge
        calibration or the halo at the end); nothing when keep-better kept the previous weights,
        which carry their own."""
        if not ended or kept_previous:
            return []
        out = []
        if not getattr(self, "balanced", True):   # said, as a threshold is
            out.append("a full mask: trained on its class shares, so the decision follows them")
        readings = getattr(self, "readings", None)   # (map_readings.py; none before set-up)
        if readings is not None and readings.halo_seen is not None:
            out.append(f"a halo read from step {readings.halo_seen}: from there the objects were not charged for "
                       "covering what looks like background (the halo between touching cells)")
        if readings is not None and readings.swell_seen is not None:
            out.append(f"edge-aware regulariser stopped at step {readings.swell_seen}: the objects spread "
                       "over unpainted pixels that look like the painted background (paint background "
                       "strokes there)")
        shifted = getattr(self, "edge_threshold", None) not in (None, 0.5)
        notes = getattr(self, "edge_notes", None)   # why the edges were not asked (a halo)
        if not (shifted or notes):
            return out
        where = ""
        if shifted:
            where = (f"objects where their odds against the background exceed {self.edge_threshold:g}"
                     if self.p.classes > 2 else f"class 2 above {self.edge_threshold:g} of the trained probability")
        if notes and self.edge_threshold != getattr(self, "edge_reference", 0.5):   # to the crest
            out.append(f"boundary moved out to the halo's crest ({where}): {notes[0]}")
        elif notes:   # kept: 0.5, or a continued model's own threshold
            kept = f" ({where}: the continued model's own)" if where else ""
            out.append(f"boundary kept where the network put it{kept}: {notes[0]}")
        elif getattr(self, "threshold_from", "") == "shares":
            out.append(f"decision matched to the dense mask's class shares ({where}; training balances the classes)")
        else:
            out.append(f"boundary moved onto the image's edges ({where})")
        return out

    def _provenance(self, step: int, elapsed: float, reason: str | None, val: Validation | None,
                    kept_previous: bool = False) -> dict:
        p = self.p
        old = p.model.meta.get("training") or None
        history = []
        if old:
            history = list(old.get("history", []))
            history.append({k: old.get(k) for k in ("date", "steps", "time_s", "device", "init", "stop_reason")})
        prev_total = (old or {}).get("total_steps", 0) if p.continued or p.init_source else 0
        readings = getattr(self, "readings", None)   # (map_readings.py; none before set-up)
        rec = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "dims": p.dims,
            "classes": p.classes,
            "data": p.painted["images"],
            "val_images": len(p.val_pairs) if p.val_pairs else 0,
            "train_pixels": self.train_pixels,
            "val_pixels": self.val_pixels,
            "unpainted_is_background": p.unpainted_is_background,
            "steps": step,
            # keep_better kept the starting weights: they have the steps they came with
            "total_steps": int(prev_total or 0) + (0 if kept_previous else step),
            "time_s": round(elapsed, 2),
            "device": describe_device(p.dev),
            "precision": self.precision,
            "lr": p.lr,
            "patch": list(self.patch),
            "spacing": None if getattr(p, "spacing", None) is None else list(p.spacing),
            "pooling": p.model.meta.get("pooling"),
            "batch_size": self.batch,
            "augment": p.augment is not None,
            "threads": getattr(getattr(self, "tuner", None), "choice", None),
            "seed": p.seed,
            "init": "continued" if p.continued else p.init_source,
            "stop_reason": reason,
            "edge_threshold": getattr(self, "edge_threshold", None),
            # the weights of the losses on the unpainted pixels (0: off; a 3D model with the stem
            # has a weaker regulariser)
            "regulariser": {"edge_aware": float(getattr(self, "potts_weight", 0.0) or 0.0),
                            "appearance": float(_pkg().APPEARANCE_WEIGHT)
                            if getattr(self, "appearance", None) is not None else 0.0,
                            # the step from which a halo gated the appearance prior's objects too
                            "halo_seen_at_step": readings and readings.halo_seen,
                            # the step from which objects spread over what looks like the painted
                            # background stopped the edge-aware one
                            "edge_aware_off_at_step": readings and readings.swell_seen},
            "kinds": getattr(self, "kinds", None),
            "validation": None if val is None else {
                "step": val.step, "loss": val.loss, "mean_iou": val.mean_iou,
                "mean_dice": val.mean_dice, "iou": {str(k): v for k, v in val.iou.items()},
                "dice": {str(k): v for k, v in val.dice.items()}},
            "history": history[-20:],
        }
        return rec

    def _save(self, step: int, elapsed: float, reason: str | None, val: Validation | None) -> None:
        """A mid-run checkpoint (atomic); the model's own record is set at the end."""
        from ..io import save_model

        model = self.p.model
        old_training = model.meta.get("training")
        model.meta["training"] = self._provenance(step, elapsed, reason, val)
        try:
            save_model(model, self.p.checkpoint)
        finally:
            model.meta["training"] = old_training

    def _finish_model(self) -> None:
        model = self.p.model
        model.eval()
        model.to("cpu")
        model.to(memory_format=torch.contiguous_format)

    def _finalise(self, step: int, elapsed: float, reason: str | None, val: Validation | None, *,
                  save: bool = True, quiet: bool = False, kept_previous: bool = False) -> bool:
        """The end of every run, however it ends: the model on the CPU in eval mode, its
        training record, and (with a checkpoint path and ``save``) the model written there;
        ``quiet``: a failed write is a warning (the run is ending on another error or a close);
        ``kept_previous``: keep_better restored the starting weights (the record's step count).
        Returns whether the checkpoint was written."""
        p = self.p
        self._finish_model()
        p.model.meta["training"] = self._provenance(step, elapsed, reason, val, kept_previous)
        if p.checkpoint is None or not save:
            return False
        from ..io import save_model

        if not quiet:
            save_model(p.model, p.checkpoint)
            return True
        try:
            save_model(p.model, p.checkpoint)
            return True
        except Exception as e:  # pragma: no cover
            warnings.warn(f"could not write the checkpoint {p.checkpoint}: {e}")
            return False
