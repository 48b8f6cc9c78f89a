"""What the Train widget does with each engine event (main thread): dispatched by type, a dict
event class -> handler built on the first event, so importing the widget (napari start-up)
imports no engine; core.events itself needs only numpy. Mixed into TrainWidget."""
from __future__ import annotations

import functools
import html
from typing import Any

from ._common import show_error, show_info, show_warning
from ._preview import show_preview


class TrainEvents:
    def _on_event(self, ev: Any) -> None:
        """Dispatch an engine event by its type (core.events; see :func:`event_handlers`)."""
        handler = event_handlers().get(type(ev))
        if handler is not None:
            handler(self, ev)

    def _on_step(self, ev: Any) -> None:
        self.progress.setValue(int(1000 * min(max(ev.fraction, 0.0), 1.0)))
        self.plot.add_train(self._step_offset + ev.step, ev.loss)
        self.status.setText(f"step {ev.step} · loss {ev.loss:.4f} · {ev.steps_per_s:.1f} steps/s · "
                            f"{ev.elapsed:.0f} s")

    def _on_validation(self, ev: Any) -> None:
        from napari_unet.core.events import quality_summary

        self.plot.add_val(self._step_offset + ev.step, ev.loss, ev.agreement)
        self.val_label.setText(f"validation at step {ev.step}: {quality_summary(ev)}")

    def _on_preview(self, ev: Any) -> None:
        show_preview(self.viewer, ev.key, ev.probabilities)

    def _on_started(self, ev: Any) -> None:
        limit = (f"{ev.total_steps} steps" if ev.total_steps else f"{ev.time_limit:.0f} s")
        self.device_label.setText(
            f"device: <b>{ev.device}</b> · {ev.precision} · {ev.dims}D · patch "
            f"{'×'.join(map(str, ev.patch))} · batch {ev.batch_size} · {limit} · "
            f"{ev.train_pixels:,} painted px ({ev.val_pixels:,} held out)"
            + (f"<br><span style='color:#e8a33d'>note: {html.escape(ev.advice)}</span>" if ev.advice else ""))

    def _on_checkpoint(self, ev: Any) -> None:
        self.model_label.setText(f"checkpoint at step {ev.step}: {ev.path}")

    def _on_train_finished(self, ev: Any) -> None:
        self.finished_reason = ev.reason
        if ev.model is not None and ev.step == 0:   # not one step: the current model stays
            return self._finished_before_first_step(ev)
        if ev.model is not None:
            what = f"trained {ev.step} more steps" if self._continued else f"trained {ev.step} steps"
            previous = self._previous
            if ev.kept_previous:
                what = f"kept the previous model after {ev.step} more steps"
                if ev.discarded is not None:  # Revert takes the run's own weights after all
                    previous = (ev.discarded, f"the new weights of {ev.step} more steps, not kept")
            self.state.set(ev.model, what, previous=previous)
        self.progress.setValue(1000)
        text = {"steps": "finished: step limit reached", "time": "finished: time limit reached",
                "stopped": "stopped: the model so far is kept",
                "nan": "stopped: the loss became NaN", "error": "failed"}.get(ev.reason, ev.reason)
        # the notification stays one short sentence; the details go to the status line
        # keep-better kept the previous model: Revert takes the run's own weights (set aside)
        aside = " (Revert takes the new weights after all)" if ev.kept_previous and ev.discarded is not None else ""
        self.status.setText(f"{text} (step {ev.step})" + (f": {ev.detail}{aside}" if ev.detail else ""))
        self.status.setToolTip(ev.message)
        if ev.reason == "error":
            show_error(f"Training failed: {ev.message}")
        elif ev.reason == "nan":
            show_warning(f"Training stopped: {ev.message or 'the loss became NaN'}")
        else:
            show_info(f"Training {text} after {ev.step} steps.")

    def _finished_before_first_step(self, ev: Any) -> None:
        """A run that ended before its first step (a Stop at once, an accidental click) hands
        back untrained weights: they replace nothing, the current model (or none) stays."""
        self.progress.setValue(1000)
        kept = "the model is unchanged" if self.state.model is not None else "no model was made"
        head = "stopped" if ev.reason == "stopped" else {"steps": "finished", "time": "time limit reached",
                                                         "nan": "stopped: the loss became NaN"}.get(ev.reason, ev.reason)
        self.status.setText(f"{head} before the first step: {kept}")
        self.status.setToolTip(ev.message)
        note = show_warning if ev.reason == "nan" else show_info
        note(f"Training {head} before the first step: {kept}.")


@functools.lru_cache(maxsize=None)
def event_handlers() -> dict[type, Any]:
    """Event class -> handler (a TrainEvents method)."""
    from napari_unet.core import events as e

    return {e.TrainStep: TrainEvents._on_step, e.Validation: TrainEvents._on_validation,
            e.Preview: TrainEvents._on_preview, e.TrainStarted: TrainEvents._on_started,
            e.Checkpoint: TrainEvents._on_checkpoint, e.TrainFinished: TrainEvents._on_train_finished}
