"""The alert engine: each tick's subjects judged by the detector, run through the lifecycle, put into words.

The same engine runs live (service/daemon.py) and over a recording
(service/recording.py), so a replay prints what the daemon would have sent.
It takes plain values (subjects, kill reports, a clock reading) and returns
messages; delivery and storage are the caller's.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..config import Config
from ..detection.detector import CgroupDetector, Verdict
from ..detection.groups import Subject
from ..identity.attribution import under_cgroup
from ..kills.report import KillReport
from . import messages
from .lifecycle import ESCALATED, AlertBook, Closed
from .messages import Message

Explain = Callable[[Subject, float], Subject]  # (subject, its climb in bytes/s) -> with its culprits


@dataclass(frozen=True)
class KillOutcome:
    """What a kill did: the message to send, and the lead time if an alert foresaw it."""

    message: Message
    lead_s: float | None  # None: no alert foresaw it

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
        self.detector = CgroupDetector(config.detect, alerts.horizon, alerts.warn_horizon, alerts.headroom_floor)
        self.book = AlertBook(alerts.horizon, alerts.cooldown, alerts.max_per_hour, boot_id)
        self.verdicts: dict[str, Verdict] = {}  # by cgroup, from the last tick
        self.subjects: list[Subject] = []  # the last tick's

    def reconfigure(self, config: Config) -> None:
        """New thresholds in place: learnt history, open alerts, cooldowns and the hourly budget stay."""
        alerts = config.alerts
        self.detector.reconfigure(config.detect, alerts.horizon, alerts.warn_horizon, alerts.headroom_floor)
        self.runbook = alerts.runbook_url
        self.book.reconfigure(alerts.horizon, alerts.cooldown, alerts.max_per_hour)

    def observe(self, subjects: list[Subject], now: float,
                explain: Explain | None = None) -> list[Message]:
        """One tick: every cgroup judged in one vectorised pass; messages for alerts opened, escalated or cleared."""
        verdicts = self.detector.update_all(
            [s.cgroup for s in subjects], now,
            np.array([s.usage for s in subjects], dtype=np.float64),
            np.array([s.limit for s in subjects], dtype=np.float64))
        self.verdicts = {v.cgroup: v for v in verdicts}
        self.subjects = subjects
        out = [m for s, v in zip(subjects, verdicts, strict=True)
               if v.warn and (m := self.warn(v, s, now, explain)) is not None]
        return out + self.expire(now, {s.cgroup for s in subjects})

    def restored(self, closed: list[Closed], now: float) -> list[Message]:
        """Messages for alerts left open by an earlier boot (see store.load): they resolve everywhere."""
        wall = self.wall_clock()
        return [messages.cleared(c, self.host, now, wall, self.runbook) for c in closed]

    def expire(self, now: float, live_cgroups: set[str]) -> list[Message]:
        """Messages for the alerts that closed as false alarms (see AlertBook.expire)."""
        wall = self.wall_clock()
        return [messages.cleared(c, self.host, now, wall, self.runbook) for c in self.book.expire(now, live_cgroups)]

    def warn(self, verdict: Verdict, subject: Subject, now: float,
             explain: Explain | None = None) -> Message | None:
        """A warning or critical verdict: the pre-OOM message if it opens an alert or escalates one.

        `explain` adds the culprits (per-process shares, given the cgroup's climb in bytes/s): worked out
        only here, for the few subjects a message is about, not for every cgroup every tick."""
        decision = self.book.warn(self.new_id(), subject.cgroup, subject.pids, now, verdict.severity)
        if decision is None:
            return None
        what, alert = decision
        if what != ESCALATED:  # so a restart can tell whether the kill came while the daemon was down
            alert.oom_kills = self.count_kills(subject.cgroup)
        if explain is not None:
            subject = explain(subject, verdict.slope_bytes_per_s)
        if what == ESCALATED:
            message = messages.escalated(alert, verdict, subject, self.host, self.wall_clock(), self.runbook)
        else:
            message = messages.pre_oom(alert, verdict, subject, self.host, self.wall_clock(), self.runbook)
        alert.title, alert.labels, alert.started_wall = message.title, message.labels, message.starts_at
        alert.body, alert.posted_at, alert.runbook = message.body, now, message.runbook
        alert.who = messages.who(subject)
        return message

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
        self.detector.restart(killed_in)
        if closed is None:
            return KillOutcome(messages.unforeseen(self.new_id(), report, seen, self.host, self.wall_clock(),
                                                   self.runbook), None)
        return KillOutcome(messages.confirmed(closed, report, seen, self.host, now, self.wall_clock(), self.runbook),
                           closed.lead_s)
