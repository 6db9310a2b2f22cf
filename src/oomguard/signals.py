"""SIGTERM/SIGINT ask a loop to stop, SIGHUP to reload; the loop acts on them between waits (never in the handler)."""

from __future__ import annotations

import logging
import signal
from types import FrameType

log = logging.getLogger("oomguard")


class Signals:
    def __init__(self) -> None:
        self.stop = self.reload = False
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stop = True

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload = True
