"""Talking to systemd: sd_notify (READY, WATCHDOG, STATUS, RELOADING, STOPPING) and journald-friendly logs.

The notify protocol is one datagram on the socket in $NOTIFY_SOCKET; a dozen
lines here spare a dependency. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

# syslog priorities journald reads from a "<N>" line prefix on stderr
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def notify(message: str) -> bool:
    """Send one sd_notify message; False when not run by systemd (or the socket is gone)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError:
        return False


class WatchdogPinger:
    """Sends WATCHDOG=1 at a quarter of systemd's WatchdogSec, from the main loop only.

    A loop that is stuck stops pinging, and systemd restarts the service.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and (not pid or pid == str(os.getpid()))
        self.period_s = int(usec) / 1e6 / 4 if enabled else None
        self.clock = clock
        self._last = float("-inf")

    def ping(self) -> None:
        if self.period_s is not None and self.clock() - self._last >= self.period_s:
            notify("WATCHDOG=1")
            self._last = self.clock()


class JournalFormatter(logging.Formatter):
    """'<6>message' lines: journald takes the priority from the prefix; fields stay key=value in the text."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM"):  # stderr goes to the journal
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
