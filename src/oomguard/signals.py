"""SIGTERM/SIGINT ask a loop to stop, SIGHUP to reload; the loop acts on them between waits (never in the handler)."""

from __future__ import annotations

import signal
from types import FrameType


class Signals:
    def __init__(self) -> None:
        self.stop = self.reload = False
        self.stopped_by = ""  # the signal's name, for the loop to log once it has stopped
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        # Flags only: a handler runs between two bytecodes of the main thread, maybe inside a write to
        # stderr, and logging from here re-enters that write (RuntimeError: reentrant call), which would
        # end the daemon with exit code 1 on a plain SIGTERM.
        self.stopped_by = signal.Signals(signum).name
        self.stop = True

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload = True
