"""The job panel of Predict, Batch and Evaluate: a Run button (and Cancel), a progress bar and a
status line, and a worker running a generator with the one cancel mechanism of core.jobs: a
``threading.Event`` that the generator checks. Mixed into a QWidget; the widget lays the parts
out (``buttons``, ``progress``, ``status``) and handles ``_on_event`` / ``_on_finished``."""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterator


class JobPanel:
    busy_message = "A job is already running."
    cancel_message = "cancelling after the current tiles…"

    def _init_job_panel(self, run_text: str, *, cancellable: bool = True) -> None:
        from qtpy.QtWidgets import QHBoxLayout, QProgressBar, QPushButton

        from ._common import hint

        self.worker: Any = None
        self._cancel = threading.Event()
        self.run_btn = QPushButton(run_text)
        self.run_btn.setStyleSheet("font-weight: bold;")
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn.clicked.connect(self.cancel)
        self.buttons = QHBoxLayout()
        self.buttons.addWidget(self.run_btn, 2)
        if cancellable:
            self.buttons.addWidget(self.cancel_btn, 1)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.status = hint("")

    def run(self, *_: Any) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def _check_idle(self) -> None:
        from ._common import UserError

        if self.worker is not None:
            raise UserError(self.busy_message)

    def _start_job(self, job: Callable[[threading.Event], Iterator], message: str) -> None:
        """Run ``job(cancel)`` (a generator) in napari's worker thread; its yields go to
        ``_on_event`` on the main thread, and ``_on_finished(aborted)`` runs at the end."""
        from ._common import start_worker

        self._cancel = cancel = threading.Event()
        self.progress.setValue(0)
        self.status.setText(message)
        self.status.setToolTip("")
        self._set_running(True)
        self.worker = start_worker(lambda: job(cancel), yielded=self._on_event, finished=self._finished)

    def cancel(self, *_: Any) -> None:
        if self.worker is not None:
            self._cancel.set()
            self.status.setText(self.cancel_message)

    def set_progress(self, fraction: float) -> None:
        self.progress.setValue(int(1000 * min(max(fraction, 0.0), 1.0)))

    def _set_running(self, running: bool) -> None:
        self.run_btn.setEnabled(not running)
        self.cancel_btn.setEnabled(running)

    def _finished(self) -> None:
        aborted = self._cancel.is_set()
        self.worker = None
        self._set_running(False)
        self._on_finished(aborted)

    def _on_event(self, ev: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_finished(self, aborted: bool) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class ResultJobPanel(JobPanel):
    """A job panel whose job yields ``core.jobs.Progress`` events and one result at the end
    (Evaluate, its object scores): the result goes to ``_show`` on the main thread, which also
    sets ``self.result``; a cancelled job leaves none and says so."""

    result: Any = None

    def _show(self, result: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _on_event(self, ev: Any) -> None:
        from napari_unet.core.jobs import Progress

        if isinstance(ev, Progress):
            self.set_progress(ev.done / max(ev.total, 1))
        else:
            self._show(ev)

    def _on_finished(self, aborted: bool) -> None:
        if aborted:
            self.status.setText("cancelled")
        elif self.result is not None:
            self.progress.setValue(1000)
