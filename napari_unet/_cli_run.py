"""How ``napari-unet`` runs a command: what reaches the terminal and with which exit code.

- A user's mistake (:class:`~napari_unet.core.errors.UserError`), an operating-system error
  (read-only folder, full disk, permission) and running out of memory: one line
  ``napari-unet: error: ...`` and exit 2. Anything else is a bug of ours and keeps its traceback.
- Ctrl-C exits 130, SIGTERM (and SIGHUP) 143, all as ``KeyboardInterrupt`` so that temporary files are
  removed and training saves its model (``train`` says what was saved where).
- Messages name command-line flags, not Python arguments; warnings of napari-unet are one line,
  those of libraries stay off the terminal unless ``NAPARI_UNET_DEBUG`` is set (which also
  shows tracebacks).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

EXIT_USAGE = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: temporary files are removed and training saves its model."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Our warnings as one line; those of libraries only with NAPARI_UNET_DEBUG."""
    if "napari_unet" in str(filename) or os.environ.get("NAPARI_UNET_DEBUG"):
        print(f"napari-unet: warning: {str(message).splitlines()[0]}", file=sys.stderr)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run_command(func: Callable[[Any], int | None], args: Any) -> int:
    import signal
    import warnings

    from .core.errors import UserError, cli_wording, describe_os_error

    sigs = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])  # kill, closed terminal
    old = {sig: signal.signal(sig, _on_sigterm) for sig in sigs} if _main_thread() else {}
    old_show = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        with cli_wording():
            return int(func(args) or 0)
    except KeyboardInterrupt as e:
        print(f"napari-unet: {'terminated' if isinstance(e, Terminated) else 'interrupted'}", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except (UserError, OSError, MemoryError) as e:
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        msg = describe_os_error(e) if isinstance(e, OSError) else (str(e).splitlines() or [type(e).__name__])[0]
        print(f"napari-unet: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        warnings.showwarning = old_show
        for sig, handler in old.items():
            signal.signal(sig, handler)
