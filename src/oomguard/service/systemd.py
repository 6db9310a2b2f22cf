"""Talking to systemd: sd_notify (READY, WATCHDOG, STATUS, RELOADING, STOPPING) and the journal.

The notify protocol is one datagram on the socket in $NOTIFY_SOCKET; a dozen
lines here spare a dependency. Outside systemd every call is a no-op.
Under systemd, with Debian's python3-systemd, logs are native journal entries
and each alert carries OOMGUARD_* fields (`journalctl OOMGUARD_POD=cart-7d9f`);
without it, "<N>"-prefixed lines on stderr keep the priorities.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ..alerting.lifecycle import CLEARED, CONFIRMED, ESCALATED, PRE_OOM, UNFORESEEN
from ..alerting.messages import Message
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


class Journal:
    """Whether log records reach journald natively (so their OOMGUARD_* fields are kept)."""

    native = False


def journal_handler() -> logging.Handler | None:
    """python3-systemd's JournalHandler when stderr goes to the journal and the module is installed."""
    if not os.environ.get("JOURNAL_STREAM"):
        return None
    try:  # imported by name: the package ships no type information
        module: Any = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    handler: logging.Handler = module.JournalHandler(SYSLOG_IDENTIFIER="oomguard")
    return handler


def configure_logging(verbose: bool) -> None:
    """oomguard's own lines at INFO (DEBUG with -v); libraries' at WARNING whatever -v says (apprise logs
    webhook URLs at DEBUG); every line through the scrubber."""
    native = journal_handler()
    Journal.native = native is not None
    handler = native or logging.StreamHandler()
    if native is not None:
        handler.setFormatter(logging.Formatter("%(message)s"))
    elif os.environ.get("JOURNAL_STREAM"):  # stderr goes to the journal, without python3-systemd
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


# journal priority of each alert kind: a kill is an error, a forecast a warning, a false alarm's end news
ALERT_PRIORITY = {PRE_OOM: logging.WARNING, ESCALATED: logging.WARNING, CONFIRMED: logging.ERROR,
                  UNFORESEEN: logging.ERROR, CLEARED: logging.INFO}


def alert_priority(kind: str) -> int:
    return ALERT_PRIORITY.get(kind, logging.WARNING)


def journal_fields(message: Message) -> dict[str, str]:
    """The OOMGUARD_* journal fields of one alert message: its Alertmanager labels (or, for a message that
    closes an alert, those of the alert it closes), upper-cased.

    >>> from oomguard.alerting.messages import Message
    >>> journal_fields(Message("a1", "pre-OOM", "t", "b", labels={"severity": "warning", "pod": "cart"}))
    {'OOMGUARD_ALERT_ID': 'a1', 'OOMGUARD_KIND': 'pre-OOM', 'OOMGUARD_SEVERITY': 'warning', 'OOMGUARD_POD': 'cart'}
    """
    labels = message.labels or (message.resolves or {}).get("labels", {})
    fields = {"OOMGUARD_ALERT_ID": message.alert_id, "OOMGUARD_KIND": message.kind}
    for label in ("severity", "namespace", "pod", "container", "cgroup", "node"):
        if labels.get(label):
            fields[f"OOMGUARD_{label.upper()}"] = labels[label]
    return fields
