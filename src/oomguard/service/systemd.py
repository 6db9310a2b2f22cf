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

from ..text import printable, scrub

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


class Scrubber(logging.Filter):
    """Every log line, ours or a library's, with secrets redacted and control characters escaped."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg, record.args = printable(scrub(message, self.secrets)), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        return True


SCRUBBER = Scrubber()


def configure_logging(verbose: bool) -> None:
    """oomguard's own lines at INFO (DEBUG with -v); libraries' at WARNING whatever -v says (apprise logs
    webhook URLs at DEBUG); every line through the scrubber."""
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM"):  # stderr goes to the journal
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SCRUBBER)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("oomguard").setLevel(logging.DEBUG if verbose else logging.INFO)


def keep_secret(urls: tuple[str, ...]) -> None:
    """Register the policy's secrets (alert URLs, the Alertmanager URL) so no log line shows them."""
    SCRUBBER.secrets = tuple(u for u in urls if u)
