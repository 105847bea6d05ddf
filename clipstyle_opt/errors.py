"""Errors a user can cause. The CLI turns each into one line and an exit code.

Exit codes: 1 for a runtime failure (a file that cannot be read or written,
out of memory, a run that went wrong), 2 for a usage error (a bad setting or
argument), 128 + the signal number for an interrupted run (130 for Ctrl-C,
143 for SIGTERM).
"""
from __future__ import annotations

from typing import Any


class ClipstyleError(Exception):
    """Base class: a problem the user can fix; its message is one clear line."""

    exit_code = 1


class ConfigError(ClipstyleError, ValueError):
    """A knob has a value outside its range or of the wrong type.

    ``key`` names the setting (a `StyleConfig` field) when there is one, so the
    command line can name the flag instead.
    """

    exit_code = 2

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class ModelUnavailableError(ClipstyleError):
    """Weights are neither cached nor downloadable (e.g. no network)."""


class ImageReadError(ClipstyleError):
    """An input image (or U-Net file) is missing, unreadable, too large or too small."""


class OutputExistsError(ClipstyleError):
    """An output file exists and ``overwrite`` was not asked for."""


class OutputPathError(ClipstyleError):
    """An output cannot go where it was asked to: missing or unwritable directory, or an input's path."""


class WriteError(ClipstyleError):
    """Writing an output failed (e.g. a full disk); nothing partial was left behind."""


class OutOfMemoryError(ClipstyleError):
    """The device ran out of memory; the message names the settings to lower."""


class NonFiniteLossError(ClipstyleError):
    """A loss term became NaN or infinite: the run stopped.

    ``result`` is the `Result` of the last step whose loss was finite (None if
    the first step already failed); ``step`` and ``term`` say where it broke.
    """

    def __init__(self, message: str, *, step: int, term: str, result: Any = None) -> None:
        super().__init__(message)
        self.step, self.term, self.result = step, term, result


class Interrupted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM during a run: stop at once. ``signum`` gives the exit code 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class ClipstyleWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints ``warning: ...``)."""


def first_line(exc: BaseException, fallback: str | None = None) -> str:
    """The first line of ``exc``'s message: what a one-line error shows of another library's exception.

    An exception without a message gives ``fallback``, or its type's name when ``fallback`` is None.
    """
    lines = str(exc).strip().splitlines()
    if lines:
        return lines[0]
    return type(exc).__name__ if fallback is None else fallback
