"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM.

The first signal asks the run to stop after the step it is in, so the result
so far can be saved (`GracefulStop.requested`); a second signal raises
`Interrupted` at once. Process-wide signal handlers are the CLI's business:
library users opt in with ``with GracefulStop() as stop: stylizer.stylize(...,
should_stop=stop.requested)``.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Callable, Optional

from .errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code(signum: int) -> int:
    """The shell's exit status for a run ended by signal ``signum``: 130 for SIGINT, 143 for SIGTERM."""
    return 128 + int(signum)


class GracefulStop:
    """Context manager: while inside, SIGINT/SIGTERM request a stop instead of killing the run;
    `request` asks for the same stop from code (the studio's Stop button goes this way).

    ``signum`` is the first signal received (None if none). ``notice`` is
    called with one line when the first signal arrives. Outside the main
    thread (where Python cannot set handlers) it does nothing.
    """

    def __init__(self, notice: Optional[Callable[[str], None]] = None) -> None:
        self.signum: Optional[int] = None
        self._notice = notice
        self._saved: dict[int, Any] = {}
        self._asked = threading.Event()

    def requested(self) -> bool:
        """True once a first signal has arrived, or `request` was called."""
        return self.signum is not None or self._asked.is_set()

    def request(self) -> None:
        """Ask for a stop after the current step without a signal (a Stop button, a closed page): the run
        then ends exactly as after a first Ctrl-C. Safe to call from any thread."""
        self._asked.set()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signum is not None:  # the second signal: stop now
            raise Interrupted(self.signum)
        self.signum = signum
        if self._notice is not None:
            name = signal.Signals(signum).name
            self._notice(f"{name}: stopping after this step and saving the result so far "
                         "(press Ctrl-C again to quit at once, without saving)")

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()


def raise_on_sigterm() -> None:
    """Make SIGTERM raise `Interrupted` like Ctrl-C raises KeyboardInterrupt, so cleanup code runs
    (temp files of atomic writes are removed) and the process exits 143. Called by the console script."""
    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, handler)


__all__ = ["GracefulStop", "exit_code", "raise_on_sigterm"]
