"""The alert engine: each tick's verdicts run through the lifecycle and put into words.

The detector's verdicts come in (detection stage, called by the service);
`decide` says which alerts open or escalate; the caller explains those few
subjects (culprits, holdings: the detection stage's work, done only for an
alert) and `words` makes their messages. The same engine runs live
(service/daemon.py) and over a recording (service/recording.py, `observe`),
so a replay prints what the daemon would have sent. It takes plain values
and returns messages; delivery and storage are the caller's.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..config import Config
from ..detection.detector import Verdict
from ..detection.groups import Subject
from ..identity.attribution import under_cgroup
from ..kills.report import KillReport
from . import messages
from .lifecycle import ESCALATED, Alert, AlertBook, Closed
from .messages import Message


@dataclass(frozen=True)
class Decision:
    """An alert that opens or escalates this tick, with what its message is made of."""

    what: str  # PRE_OOM or ESCALATED
    alert: Alert
    verdict: Verdict
    subject: Subject


@dataclass(frozen=True)
class KillOutcome:
    """What a kill did: the message to send, and the lead time if an alert foresaw it."""

    message: Message
    lead_s: float | None  # None: no alert foresaw it
    killed_in: tuple[str, ...] = ()  # where the kill happened: a regime change, the detector starts these again

    @property
    def foreseen(self) -> bool:
        return self.lead_s is not None


def last_seen(report: KillReport, subjects: list[Subject]) -> Subject | None:
    """The subject of the cgroup the victim lived in (or whose limit it hit), if the last tick had it."""
    paths = [p for p in (report.record.oom_memcg if report.record else None, report.cgroup) if p]
    for subject in subjects:
        if report.pid in subject.pids or (subject.cgroup != "/" and any(under_cgroup(p, subject.cgroup)
                                                                          for p in paths)):
            return subject
    return None


class AlertEngine:
    def __init__(self, config: Config, host: str | None = None, new_id: Callable[[], str] | None = None,
                 wall_clock: Callable[[], float] = time.time, boot_id: str = "",
                 count_kills: Callable[[str], int | None] = lambda cgroup: None):
        self.host = host or socket.gethostname()
        self.new_id = new_id or (lambda: uuid.uuid4().hex[:12])  # replay passes a counter: deterministic ids
        self.wall_clock = wall_clock
        self.runbook = config.alerts.runbook_url
        self.count_kills = count_kills  # the kernel's OOM kill count in a cgroup, kept with each alert it opens
        alerts = config.alerts
        self.book = AlertBook(alerts.horizon, alerts.cooldown, alerts.max_per_hour, boot_id)
        self.verdicts: dict[str, Verdict] = {}  # by cgroup, from the last tick
        self.subjects: list[Subject] = []  # the last tick's

    def reconfigure(self, config: Config) -> None:
        """New thresholds in place: open alerts, cooldowns and the hourly budget stay."""
        alerts = config.alerts
        self.runbook = alerts.runbook_url
        self.book.reconfigure(alerts.horizon, alerts.cooldown, alerts.max_per_hour)

    def decide(self, subjects: Sequence[Subject], verdicts: Sequence[Verdict], now: float) -> list[Decision]:
        """One tick's verdicts (one per subject, in order) through the lifecycle: the alerts that open or
        escalate. Kept: the verdicts and subjects, for charts, metrics and the next kill's report."""
        self.verdicts = {v.cgroup: v for v in verdicts}
        self.subjects = list(subjects)
        return [d for s, v in zip(subjects, verdicts, strict=True) if v.warn and (d := self._decide(v, s, now))]

    def observe(self, subjects: Sequence[Subject], verdicts: Sequence[Verdict], now: float) -> list[Message]:
        """decide, words and expire in one call, without explanations (a replay, tests)."""
        return [self.words(d) for d in self.decide(subjects, verdicts, now)] + self.expire(
            now, {s.cgroup for s in subjects})

    def restored(self, closed: list[Closed], now: float) -> list[Message]:
        """Messages for alerts left open by an earlier boot (see store.load): they resolve everywhere."""
        wall = self.wall_clock()
        return [messages.cleared(c, self.host, now, wall, self.runbook) for c in closed]

    def expire(self, now: float, live_cgroups: set[str]) -> list[Message]:
        """Messages for the alerts that closed without a kill, judged on the last decide's verdicts (see
        AlertBook.expire)."""
        wall = self.wall_clock()
        return [messages.cleared(c, self.host, now, wall, self.runbook)
                for c in self.book.expire(now, live_cgroups, self.verdicts)]

    def _decide(self, verdict: Verdict, subject: Subject, now: float) -> Decision | None:
        decision = self.book.warn(self.new_id(), subject.cgroup, subject.pids, now, verdict.severity)
        if decision is None:
            return None
        what, alert = decision
        if what != ESCALATED:  # so a restart can tell whether the kill came while the daemon was down
            alert.oom_kills = self.count_kills(subject.cgroup)
        alert.posted_at = now  # for Alertmanager's re-posts (refresh)
        return Decision(what, alert, verdict, subject)

    def words(self, decision: Decision, explained: Subject | None = None) -> Message:
        """The pre-OOM or escalation message of a decision; `explained`: its subject with the culprits and
        container shares (detection.groups.explained), worked out by the caller for this alert alone."""
        alert, verdict, subject = decision.alert, decision.verdict, explained or decision.subject
        if decision.what == ESCALATED:
            message = messages.escalated(alert, verdict, subject, self.host, self.wall_clock(), self.runbook)
        else:
            message = messages.pre_oom(alert, verdict, subject, self.host, self.wall_clock(), self.runbook)
        alert.title, alert.labels, alert.started_wall = message.title, message.labels, message.starts_at
        alert.body, alert.runbook = message.body, message.runbook
        alert.who = messages.who(subject)
        return message

    def warn(self, verdict: Verdict, subject: Subject, now: float) -> Message | None:
        """One warning or critical verdict: the pre-OOM message if it opens an alert or escalates one."""
        decision = self._decide(verdict, subject, now)
        return self.words(decision) if decision else None

    def refresh(self, now: float, every_s: float) -> list[Message]:
        """The open alerts not posted for `every_s`, posted again (marked posted now): Alertmanager resolves an
        alert its client does not re-post within its resolve_timeout, while the risk stands."""
        due = [alert for alert in self.book.open.values() if now - alert.posted_at >= every_s]
        for alert in due:
            alert.posted_at = now
        wall = self.wall_clock()
        return [messages.refreshed(alert, wall) for alert in due]

    def kill(self, report: KillReport, now: float) -> KillOutcome:
        seen = last_seen(report, self.subjects)
        closed = self.book.kill(report, now)
        # Where the kill happened (the limit the victim hit, the alert it closed): a regime change there.
        killed_in = [c for c in (seen.cgroup if seen else None, closed.alert.cgroup if closed else None) if c]
        self.book.settle(killed_in, now)
        if closed is None:
            return KillOutcome(messages.unforeseen(self.new_id(), report, seen, self.host, self.wall_clock(),
                                                   self.runbook), None, tuple(killed_in))
        return KillOutcome(messages.confirmed(closed, report, seen, self.host, now, self.wall_clock(), self.runbook),
                           closed.lead_s, tuple(killed_in))
