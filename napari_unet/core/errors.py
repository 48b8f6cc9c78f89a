"""Our own input-error type, and wording that fits whoever called us.

``UserError`` (a ``ValueError``) and ``UserTypeError`` (also a ``TypeError``) mark a mistake the
user can fix: the Python API raises them (so ``except ValueError`` still works), the command line
prints them as one line and exits 2, the widgets show them as a notification. Anything else that
escapes is a bug of ours and is not dressed up as a user mistake.

Messages that name an option use :func:`option` / :func:`say`, which give the Python spelling
(``unpainted_is_background=True``) to API users and the flag (``--unpainted-is-background``) to
command-line users (``napari-unet`` switches this on with :func:`cli_wording`).
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import re
from typing import Any, Iterator

__all__ = ["UserError", "UserTypeError", "UserOSError", "cli_wording", "is_cli", "say", "option",
           "describe_os_error", "reason"]


class UserError(ValueError):
    """A mistake the user can fix (bad input, a refused overwrite, not enough space ...)."""


class UserTypeError(UserError, TypeError):
    """A user mistake about the type of an argument (still a ``TypeError`` for the API)."""


class UserOSError(OSError, UserError):
    """A file the user named cannot be written (no space, no permission ...): an ``OSError`` with
    its errno, strerror and filename, and a ``ValueError`` for the API's contract; reads as one
    line naming the file and why (:func:`describe_os_error`)."""

    def __str__(self) -> str:
        return describe_os_error(self)


_CLI = contextvars.ContextVar("napari_unet_cli_wording", default=False)


@contextlib.contextmanager
def cli_wording() -> Iterator[None]:
    """Within this block messages name command-line flags instead of Python arguments."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def is_cli() -> bool:
    return _CLI.get()


def say(api: str, cli: str) -> str:
    """``cli`` for command-line users, ``api`` for everybody else."""
    return cli if _CLI.get() else api


def option(name: str, value: Any = True) -> str:
    """How to set option ``name``: ``--name-with-dashes [VALUE]`` or ``name=VALUE``."""
    if _CLI.get():
        flag = "--" + name.replace("_", "-")
        return flag if value is True else f"{flag} {value}"
    return f"{name}={value}"


_OS_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
}


def describe_os_error(e: OSError, *, path: bool = True) -> str:
    """One line for an operating-system error: the path (unless ``path=False``) and why."""
    if not e.strerror:  # raised by us (or a library) with a ready message
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    why = e.strerror
    hint = _OS_HINTS.get(e.errno if e.errno is not None else -1)
    if hint and hint.lower() not in why.lower():
        why = f"{why} ({hint})"
    return f"{e.filename}: {why}" if path and e.filename is not None else why


def reason(e: BaseException, limit: int = 200) -> str:
    """A library's error message for one of our lines, never cut mid-sentence: its first line;
    where that is longer than ``limit``, its first sentence; where that still is, the words
    that fit, marked with an ellipsis. The exception's type name where it has no message."""
    lines = str(e).strip().splitlines()
    text = lines[0].strip() if lines else ""
    if not text:
        return type(e).__name__
    if len(text) > limit:
        m = re.match(r"(.+?[.!?])\s", text)
        text = m.group(1) if m else text
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;:") + " …"
    return text
