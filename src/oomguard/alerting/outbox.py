"""Delivery that loses nothing and never blocks the watchdog: a disk spool per receiver, a sender thread each.

put() writes the message into every receiver's spool directory (one small
file each, atomic, 0600) and returns: the sampling loop never waits on the
network. Each receiver's sender thread sends its oldest file first and
removes it only once the receiver took it, so a receiver that is down gets
everything, in order, when it comes back, and a restart resumes the spool.

What is promised — at least once, with duplicates bounded:
- every message is sent until a receiver takes it, or until it is older than
  `max_age_s` (then dropped, logged and counted), through outages, HTTP
  errors and restarts;
- each attempt has a deadline (`attempt_s`) of its own, whatever the library
  underneath does: a send still running then is abandoned (its worker
  thread is left to finish) and counts as failed. A receiver that stored the
  message but answered after the deadline, or a crash between its answer and
  the file's removal, gets it again: at most one copy per attempt, attempts
  spaced by the backoff (1 s doubling to 60 s). Alertmanager deduplicates by
  labels, so repeats there are harmless;
- the spool is bounded (`max_files` per receiver): past it the oldest
  messages are dropped, logged and counted;
- a spool file that cannot be read or is not a message is moved to
  `quarantine/`, logged and counted, and delivery goes on behind it;
- a message that cannot be spooled (full or read-only disk) is kept in
  memory (bounded) and still sent, and the failure is logged and counted;
- a sender thread that dies is restarted by `supervise()` and counted;
- `stop()` returns within its budget whatever the receivers do: what is not
  sent stays in the spool for the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..files import UnsafePath, atomic_write, own_directory, read_own_file
from ..text import redact
from .alertmanager import send_to_alertmanager
from .chart import ChartFiles
from .lifecycle import REFRESH
from .messages import Message

log = logging.getLogger("oomguard")
Sender = Callable[[dict[str, Any]], bool]  # takes a Message as a dict; True once the receiver has it
BACKOFF_FIRST_S, BACKOFF_MAX_S = 1.0, 60.0
ATTEMPT_S = 30.0  # one send's deadline
MAX_FILES = 1000  # messages spooled per receiver
MAX_AGE_S = 24 * 3600.0  # a message older than this is dropped unsent
MEMORY_QUEUE = 100  # messages kept in memory per receiver when the spool cannot take them
REQUIRED = ("alert_id", "kind", "title", "body")


# Receivers that get plain text: data endpoints (the names as they are), Slack (apprise escapes <>& and
# turns mrkdwn off for text) and email (apprise HTML-escapes text). Every other service renders Markdown
# (Discord, Mattermost, Teams, Telegram, Matrix, ...): it gets the Markdown form, names as code spans.
PLAIN_TEXT_SERVICES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "slack", "mailto", "mailtos"})


def renders_markdown(url: str) -> bool:
    """Whether the service behind an apprise URL renders Markdown (see PLAIN_TEXT_SERVICES)."""
    import apprise

    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return False
    protocols = {p for attr in ("protocol", "secure_protocol") for p in _as_tuple(getattr(plugin, attr, None))}
    return not protocols & PLAIN_TEXT_SERVICES


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def attachments(message: dict[str, Any], charts: list[Path]) -> list[str] | None:
    """The files a message carries: its charts and its evidence report, those that exist."""
    files = [str(p) for p in (*charts, message.get("evidence")) if p and Path(p).is_file()]
    return files or None


def send_with_apprise(url: str, message: dict[str, Any], as_markdown: bool, charts: list[Path] | None = None) -> bool:
    """One notification to one apprise URL in the form it renders safely, with `charts` and the evidence
    report for the services that take attachments; True if the receiver took it."""
    import apprise  # imported on first use: the daemon without alert URLs never pays for it

    notifier = apprise.Apprise()
    if not notifier.add(url):
        log.error("alert URL not understood by apprise (check its scheme): %s", redact(url))
        return False
    attachment = attachments(message, charts or [])
    if as_markdown and message.get("markdown_body"):  # a message spooled without a Markdown form goes as text
        return bool(notifier.notify(title=message["markdown_title"], body=message["markdown_body"],
                                    body_format=apprise.NotifyFormat.MARKDOWN, attach=attachment))
    return bool(notifier.notify(title=message["title"], body=message["body"], body_format=apprise.NotifyFormat.TEXT,
                                attach=attachment))


def unusable_urls(urls: tuple[str, ...]) -> list[str]:
    """The URLs apprise does not understand (unknown scheme, missing parts), redacted."""
    import apprise

    return [redact(url) for url in urls if not apprise.Apprise().add(url)]


def receiver_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def apprise_sender(url: str, charts: ChartFiles | None = None) -> Sender:
    as_markdown = renders_markdown(url)
    return lambda message: send_with_apprise(url, message, as_markdown,
                                             charts.for_message(message) if charts else [])


ALERTMANAGER = "alertmanager "  # the name of the Alertmanager receiver starts so, its URL after


def takes(receiver: str, kind: str) -> bool:
    """Whether a receiver gets messages of this kind: re-posts of open alerts go to Alertmanager alone."""
    return kind != REFRESH or receiver.startswith(ALERTMANAGER)


def receivers_for(apprise_urls: tuple[str, ...], alertmanager_url: str = "",
                  charts: ChartFiles | None = None, alertmanager_resend: float = 100.0) -> dict[str, Sender]:
    """Receiver name -> sender: one per apprise URL (with charts drawn into `charts`, if given), and
    Alertmanager's v2 API when configured (an open alert's post ends 1.5 resends later unless re-posted)."""
    if apprise_urls:
        import apprise  # noqa: F401  # now, not at the first alert: steady state holds all an alert needs
    receivers = {url: apprise_sender(url, charts) for url in apprise_urls}
    if alertmanager_url:
        receivers[f"{ALERTMANAGER}{alertmanager_url}"] = lambda m: send_to_alertmanager(
            alertmanager_url, m, ends_after=1.5 * alertmanager_resend)
    return receivers


def send_within(sender: Sender, message: dict[str, Any], deadline_s: float) -> bool | None:
    """sender(message) in a worker thread; its answer, or None if it did not answer within the deadline."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            result.append(bool(sender(message)))
        except Exception:  # a plugin bug must not kill anything
            log.exception("sending alert %s failed inside the library", message.get("alert_id"))
            result.append(False)

    worker = threading.Thread(target=attempt, name="alert send", daemon=True)
    worker.start()
    worker.join(deadline_s)
    return result[0] if result else None


@dataclass
class OutboxCounts:
    """What delivery had to give up or work around, since start (for status and metrics)."""

    delivered: int = 0
    failed_attempts: int = 0
    timed_out: int = 0  # attempts abandoned at their deadline
    dropped_full: int = 0  # oldest messages dropped: spool over max_files
    dropped_old: int = 0  # messages older than max_age_s
    quarantined: int = 0  # unreadable spool files moved aside
    spool_failures: int = 0  # messages that could not be written to disk (sent from memory)
    sender_restarts: int = 0
    latest_s: float = 0.0  # from a message's decision to a receiver taking it: the last delivery's
    slowest_s: float = 0.0  # ... and the slowest since start (messages decided since start only)

    @property
    def dropped(self) -> int:
        """Messages dropped undelivered, whatever the reason."""
        return self.dropped_full + self.dropped_old


class Outbox:
    def __init__(self, directory: Path, receivers: dict[str, Sender], *,
                 backoff_first_s: float = BACKOFF_FIRST_S, backoff_max_s: float = BACKOFF_MAX_S,
                 attempt_s: float = ATTEMPT_S, max_files: int = MAX_FILES, max_age_s: float = MAX_AGE_S,
                 clock: Callable[[], float] = time.time):
        self.directory, self.receivers = directory, receivers
        self.names = tuple(receivers)
        self.backoff_first_s, self.backoff_max_s = backoff_first_s, backoff_max_s
        self.attempt_s, self.max_files, self.max_age_s, self.clock = attempt_s, max_files, max_age_s, clock
        self.counts = OutboxCounts()
        self.started = clock()
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in self.names}
        self._memory: dict[str, deque[dict[str, Any]]] = {name: deque(maxlen=MEMORY_QUEUE) for name in self.names}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._failing_since: float | None = None
        self._skipped: set[Path] = set()  # bad files that could not even be moved aside
        existing = []
        for name in self.names:
            try:
                own_directory(self._spool(name))
                existing += [int(p.stem) for p in self._spool(name).glob("*.json") if p.stem.isdigit()]
            except OSError as exc:
                self._spool_failed(self._spool(name), exc)
        self._sequence = max(existing, default=0)  # continues after a restart, so order holds

    def _spool(self, name: str) -> Path:
        return self.directory / receiver_key(name)

    # -- the daemon's side ---------------------------------------------------

    def start(self) -> None:
        for name in self.names:
            self._start_sender(name)

    def supervise(self) -> None:
        """Restart any sender thread that died (it should not; if it does, delivery must go on)."""
        for name, thread in list(self._threads.items()):
            if not thread.is_alive() and not self._stop.is_set():
                self.counts.sender_restarts += 1
                log.error("the sender thread for %s died; restarted it (%d restarts so far)", redact(name),
                          self.counts.sender_restarts)
                self._start_sender(name)

    def put(self, message: Message) -> None:
        """Spool `message` for every receiver; never raises (a disk that fails costs the spool, not the alert)."""
        data = asdict(message) | {"spooled_at": self.clock()}
        with self._lock:
            self._sequence += 1
            name = f"{self._sequence:016d}.json"
        text = json.dumps(data)
        for receiver in (name for name in self.names if takes(name, message.kind)):
            spool = self._spool(receiver)
            try:
                atomic_write(spool / name, text)
                self._bound(receiver)
            except OSError as exc:
                self._spool_failed(spool, exc)
                self._memory[receiver].append(data)
            self._wake[receiver].set()

    def spooled(self, alert_id: str, kind: str) -> bool:
        """Whether a message of this alert and kind waits in a spool (at start: one the daemon put there just
        before it was killed, which must not be made and sent twice)."""
        for name in self.names:
            with contextlib.suppress(OSError):
                for path in self._spool(name).glob("*.json"):
                    with contextlib.suppress(OSError, ValueError):
                        message = json.loads(read_own_file(path))
                        if isinstance(message, dict) and (message.get("alert_id"), message.get("kind")) == (
                                alert_id, kind):
                            return True
        return False

    def pending(self) -> int:
        """Messages not yet delivered, summed over receivers."""
        total = 0
        for name in self.names:
            with contextlib.suppress(OSError):
                total += sum(1 for _ in self._spool(name).glob("*.json"))
            total += len(self._memory[name])
        return total

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Ask every sender to stop; True if all did within `timeout_s` (sends in flight are abandoned)."""
        self._stop.set()
        for event in self._wake.values():
            event.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads.values())

    # -- the sender threads ----------------------------------------------------

    def _start_sender(self, name: str) -> None:
        thread = threading.Thread(target=self._run, args=(name,), name=f"alerts {redact(name)}", daemon=True)
        thread.start()
        self._threads[name] = thread

    def _run(self, name: str) -> None:
        wake, backoff = self._wake[name], self.backoff_first_s
        while not self._stop.is_set():
            path, message = self._next(name)
            if message is None:
                wake.wait(1.0)
                wake.clear()
                continue
            if self.clock() - float(message.get("spooled_at", self.clock())) > self.max_age_s:
                self.counts.dropped_old += 1
                log.error("alert %s to %s dropped unsent: older than %.0fh; fix: bring the receiver back or "
                          "remove it from [alerts]", message["alert_id"], redact(name), self.max_age_s / 3600)
                self._done(name, path)
                continue
            answer = send_within(self.receivers[name], message, self.attempt_s)
            if answer:
                self.counts.delivered += 1
                self._took(message)
                self._done(name, path)
                backoff = self.backoff_first_s
                continue
            self.counts.failed_attempts += 1
            if answer is None:
                self.counts.timed_out += 1
            why = f"no answer within {self.attempt_s:.0f}s" if answer is None else "refused"
            log.warning("alert %s to %s not delivered (%s); retrying in %.0fs (%d waiting)", message["alert_id"],
                        redact(name), why, backoff, self.pending())
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    def _took(self, message: dict[str, Any]) -> None:
        """How long after its decision a receiver took the message (a resend from before a restart is not
        the daemon's pace: not counted)."""
        decided = message.get("decided_at")
        if isinstance(decided, (int, float)) and decided >= self.started:
            took = max(0.0, self.clock() - decided)
            self.counts.latest_s, self.counts.slowest_s = took, max(self.counts.slowest_s, took)

    def _next(self, name: str) -> tuple[Path | None, dict[str, Any] | None]:
        """The oldest message for this receiver (spool first, then memory), quarantining bad files."""
        spool = self._spool(name)
        try:
            files = sorted(own_directory(spool).glob("*.json"))  # never a directory someone linked in
        except UnsafePath as exc:
            self._spool_failed(spool, exc)
            files = []
        except OSError:
            files = []
        for path in files:
            if path in self._skipped:
                continue
            try:
                message = json.loads(read_own_file(path))
                if isinstance(message, dict) and all(isinstance(message.get(k), str) for k in REQUIRED):
                    return path, message
                problem = f"not an alert message (needs {', '.join(REQUIRED)})"
            except UnsafePath as exc:  # planted, not spooled: never sent
                problem = f"not written by oomguard ({exc.problem})"
            except (OSError, ValueError) as exc:
                problem = f"unreadable ({exc})"
            self._quarantine(path, problem)
        memory = self._memory[name]
        return (None, memory[0]) if memory else (None, None)

    def _done(self, name: str, path: Path | None) -> None:
        if path is None:
            self._memory[name].popleft()
            return
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # cannot remove: move on all the same, or it would be sent forever
            self._quarantine(path, f"cannot be removed after delivery ({exc.strerror})")

    def _quarantine(self, path: Path, problem: str) -> None:
        self.counts.quarantined += 1
        target = path.parent / "quarantine" / path.name
        try:
            own_directory(target.parent)
            path.rename(target)
            where = f"moved to {target}"
        except OSError as exc:
            where = f"could not be moved aside ({exc.strerror}); skipped from now on"
            self._skipped.add(path)
        log.error("spool file %s is %s: %s; delivery goes on behind it", path, problem, where)

    def _bound(self, name: str) -> None:
        """Keep at most max_files in this receiver's spool, dropping the oldest."""
        files = sorted(self._spool(name).glob("*.json"))
        for old in files[: max(0, len(files) - self.max_files)]:
            old.unlink(missing_ok=True)
            self.counts.dropped_full += 1
            log.error("alert spool for %s over %d messages: dropped the oldest (%s); fix: bring the receiver "
                      "back or remove it from [alerts]", redact(name), self.max_files, old.name)

    def _spool_failed(self, where: Path, exc: OSError) -> None:
        self.counts.spool_failures += 1
        now = time.monotonic()
        if self._failing_since is None or now - self._failing_since > 60:
            self._failing_since = now
            fix = (f"remove {where}: the daemon makes its own" if isinstance(exc, UnsafePath) else
                   "free space or permissions on [state] dir")
            log.error("cannot use the alert spool %s (%s): alerts are sent from memory and lost if the daemon "
                      "stops; fix: %s", where, exc.problem if isinstance(exc, UnsafePath) else exc.strerror or exc,
                      fix)
