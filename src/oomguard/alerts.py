"""The alert lifecycle: pre-OOM, then confirmed by the kill, cleared as a false alarm, or an unforeseen kill.

Pure and clock-injected: it takes decisions and kill reports, and returns
the messages to deliver; delivery.py sends them. One open alert per memory
cgroup (a hundred forks growing in one container give one alert), a
cooldown per cgroup after an alert closes, and a global hourly limit on new
pre-OOM alerts. Kills always get their message.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .attribution import Attribution, PodNames, owner_text, under_cgroup
from .forecast import Forecast
from .kills import KillReport
from .text import inert
from .units import format_bytes

PRE_OOM, CONFIRMED, CLEARED, UNFORESEEN = "pre-OOM", "confirmed", "cleared", "unforeseen"


@dataclass(frozen=True)
class Subject:
    """Who a pre-OOM alert is about: a memory cgroup and its busiest processes."""

    cgroup: str
    pids: tuple[int, ...]
    command: str  # the busiest process's
    attribution: Attribution | None
    pod: PodNames | None
    kmalloc_bytes_per_s: float
    page_bytes_per_s: float
    rss_bytes: int
    sample_rates: tuple[int, int]
    notes: str = ""  # processes the per-process screen flagged


@dataclass
class Alert:
    id: str
    cgroup: str
    pids: list[int]
    opened_at: float  # clock seconds
    last_warned_at: float
    title: str
    labels: dict = field(default_factory=dict)
    started_wall: float = 0.0


@dataclass(frozen=True)
class Message:
    alert_id: str
    kind: str
    title: str
    body: str
    namespace: str | None = None
    # For label-based receivers (Alertmanager): this message's labels and start (wall clock), and,
    # for confirmed/cleared, the labels and start of the pre-OOM alert it resolves.
    labels: dict = field(default_factory=dict)
    starts_at: float = 0.0
    resolves: dict | None = None  # {"labels": {...}, "starts_at": float}


@dataclass
class Tallies:
    foreseen: int = 0
    unforeseen: int = 0
    false_alarms: int = 0
    lead_times_s: list[float] = field(default_factory=list)  # the last 1000

    def lead_time_summary(self) -> str:
        if not self.lead_times_s:
            return "no lead times yet"
        ordered = sorted(self.lead_times_s)
        return f"lead time median {ordered[len(ordered) // 2]:.0f}s, min {ordered[0]:.0f}s"


class AlertBook:
    def __init__(self, horizon_s: float, cooldown_s: float, max_per_hour: int, host: str | None = None,
                 new_id=None, wall_clock=time.time):
        self.horizon_s, self.cooldown_s, self.max_per_hour = horizon_s, cooldown_s, max_per_hour
        self.host = host or socket.gethostname()
        self.new_id = new_id or (lambda: uuid.uuid4().hex[:12])  # replay passes a counter: deterministic ids
        self.wall_clock = wall_clock
        self.open: dict[str, Alert] = {}  # by cgroup
        self.tallies = Tallies()
        self._closed_at: dict[str, float] = {}  # cgroup -> when its last alert closed (cooldown)
        self._recent: deque[float] = deque()  # when pre-OOM alerts were opened (rate limit)
        self.suppressed = 0  # pre-OOM decisions dropped by the rate limit

    # -- events -----------------------------------------------------------

    def warn(self, forecast: Forecast, subject: Subject, now: float) -> Message | None:
        """A pre-OOM decision: a message if it opens an alert; None if one is open, cooling down or rate-limited."""
        alert = self.open.get(subject.cgroup)
        if alert is not None:
            alert.last_warned_at = now  # still warning: keeps it open
            alert.pids = sorted(set(alert.pids) | set(subject.pids))[:100]
            return None
        if now - self._closed_at.get(subject.cgroup, float("-inf")) < self.cooldown_s:
            return None
        while self._recent and now - self._recent[0] > 3600:
            self._recent.popleft()
        if len(self._recent) >= self.max_per_hour:
            self.suppressed += 1
            return None
        self._recent.append(now)
        alert_id = self.new_id()
        title = f"[oomguard] pre-OOM on {self.host}: {inert(owner_text(subject.attribution, subject.pod))}"
        labels = self._labels("OomguardPreOOM", "warning", subject.cgroup, subject.pod)
        wall = self.wall_clock()
        self.open[subject.cgroup] = Alert(alert_id, subject.cgroup, sorted(subject.pids)[:100], now, now, title,
                                          labels, wall)
        return Message(alert_id, PRE_OOM, title, self._pre_oom_body(alert_id, forecast, subject),
                       subject.pod.namespace if subject.pod else None, labels, wall)

    def kill(self, report: KillReport, now: float, last_seen: tuple[Subject, int, int] | None = None) -> Message:
        """An OOM kill: confirms the open alert it matches, else is unforeseen.

        `last_seen`: the victim's cgroup as the last tick saw it (subject, usage, limit), for the body.
        """
        alert = self._match(report)
        owner = inert(owner_text(report.attribution, report.pod))
        namespace = report.pod.namespace if report.pod else None
        if alert is not None:
            del self.open[alert.cgroup]
            self._closed_at[alert.cgroup] = now
            lead = now - alert.opened_at
            self.tallies.foreseen += 1
            self.tallies.lead_times_s = (self.tallies.lead_times_s + [lead])[-1000:]
            title = f"[oomguard] confirmed on {self.host}: OOM kill of {inert(report.comm)} foreseen {lead:.0f}s ahead"
            body = (f"Confirms pre-OOM alert {alert.id} ({alert.title}).\n"
                    f"Lead time: {lead:.0f}s (alert at {alert.opened_at:.0f}, kill at {now:.0f}, monotonic).\n\n"
                    + self._kill_details(report, last_seen))
            labels = self._labels("OomguardOOMKill", "critical", alert.cgroup, report.pod)
            return Message(alert.id, CONFIRMED, title, body, namespace, labels, self.wall_clock(),
                           {"labels": alert.labels, "starts_at": alert.started_wall})
        self.tallies.unforeseen += 1
        alert_id = self.new_id()
        title = f"[oomguard] unforeseen OOM kill on {self.host}: {inert(report.comm)} ({owner})"
        body = "No pre-OOM alert foresaw this kill.\n\n" + self._kill_details(report, last_seen)
        cgroup = report.attribution.cgroup_path if report.attribution else ""
        labels = self._labels("OomguardUnforeseenOOMKill", "critical", cgroup, report.pod)
        return Message(alert_id, UNFORESEEN, title, body, namespace, labels, self.wall_clock())

    def expire(self, now: float, live_cgroups: set[str]) -> list[Message]:
        """Close alerts whose horizon passed without a kill, or whose cgroup has no process left: false alarms."""
        messages = []
        for cgroup, alert in list(self.open.items()):
            overdue = now - alert.last_warned_at > self.horizon_s
            gone = cgroup not in live_cgroups
            if not (overdue or gone):
                continue
            del self.open[cgroup]
            self._closed_at[cgroup] = now
            self.tallies.false_alarms += 1
            why = ("its processes exited without an OOM kill" if gone else
                   f"no OOM kill within the {self.horizon_s:.0f}s horizon after the last warning")
            messages.append(Message(alert.id, CLEARED, f"[oomguard] cleared on {self.host}: {alert.title[11:]}",
                                    f"Pre-OOM alert {alert.id} was a false alarm: {why}.\n"
                                    f"Open for {now - alert.opened_at:.0f}s.\n",
                                    alert.labels.get("namespace"), {}, self.wall_clock(),
                                    {"labels": alert.labels, "starts_at": alert.started_wall}))
        return messages

    # -- helpers ----------------------------------------------------------

    def _labels(self, alertname: str, severity: str, cgroup: str, pod: PodNames | None) -> dict:
        """Labels Alertmanager can group and silence by, spelled as kube-state-metrics spells them."""
        labels = {"alertname": alertname, "severity": severity, "node": self.host, "cgroup": cgroup}
        if pod is not None:
            labels.update(namespace=pod.namespace, pod=pod.pod, container=pod.container or "")
        return labels

    def _match(self, report: KillReport) -> Alert | None:
        victim_cgroup = report.attribution.cgroup_path if report.attribution else None
        limit_cgroup = report.record.oom_memcg if report.record else None
        for alert in self.open.values():
            if report.pid in alert.pids:
                return alert
            for path in (victim_cgroup, limit_cgroup):
                if path is not None and (under_cgroup(path, alert.cgroup) or under_cgroup(alert.cgroup, path)):
                    return alert
        return None

    def _pre_oom_body(self, alert_id: str, forecast: Forecast, subject: Subject) -> str:
        attribution, pod = subject.attribution, subject.pod
        eta = f"{forecast.seconds_to_limit:.0f}s" if forecast.seconds_to_limit is not None else "n/a (floor rule)"
        lines = [
            f"Alert {alert_id}: an OOM kill looks likely within {self.horizon_s:.0f}s.",
            f"Why: {inert(forecast.reason)}" + (f"\nProcesses growing abnormally: {inert(subject.notes)}"
                                                 if subject.notes else ""),
            "",
            f"host: {self.host}",
            f"pid: {', '.join(map(str, subject.pids[:10]))}{' ...' if len(subject.pids) > 10 else ''}",
            f"command: {inert(subject.command)}",
            f"container: {attribution.container_id if attribution and attribution.container_id else 'none'}"
            f" ({attribution.runtime if attribution and attribution.runtime else 'runtime unknown'})",
            f"pod uid: {attribution.pod_uid if attribution and attribution.pod_uid else 'none'}",
            f"namespace/pod: {inert(pod.namespace) + '/' + inert(pod.pod) if pod else 'unknown'}",
            f"cgroup: {inert(subject.cgroup)}",
            f"allocation rate: kmalloc {format_bytes(subject.kmalloc_bytes_per_s)}/s, "
            f"pages {format_bytes(subject.page_bytes_per_s)}/s",
            f"RSS: {format_bytes(subject.rss_bytes)}",
            f"cgroup usage: {format_bytes(forecast.usage)} of limit {format_bytes(forecast.limit)} "
            f"(growing {format_bytes(forecast.slope_bytes_per_s)}/s)",
            f"forecast time to OOM: {eta}",
            f"sample rate in force: kmalloc 1-in-{subject.sample_rates[0]}, page 1-in-{subject.sample_rates[1]}",
        ]
        return "\n".join(lines) + "\n"

    def _kill_details(self, report: KillReport, last_seen: tuple[Subject, int, int] | None = None) -> str:
        attribution, pod, kill = report.attribution, report.pod, report.kill
        lines = [
            f"host: {self.host}",
            f"pid: {report.pid}",
            f"command: {inert(report.comm)}",
            f"container: {attribution.container_id if attribution and attribution.container_id else 'none'}",
            f"pod uid: {attribution.pod_uid if attribution and attribution.pod_uid else 'none'}",
            f"namespace/pod: {inert(pod.namespace) + '/' + inert(pod.pod) if pod else 'unknown'}",
            f"cgroup: {inert(attribution.cgroup_path) if attribution else 'unknown'}",
            f"limit hit: {format_bytes(report.limit_bytes) if report.limit_bytes else 'unknown'}"
            + (f" ({inert(report.record.oom_memcg)})" if report.record and report.record.oom_memcg else ""),
        ]
        if last_seen is not None:
            seen, usage, limit = last_seen
            lines.append(f"allocation rate (last tick): kmalloc {format_bytes(seen.kmalloc_bytes_per_s)}/s, "
                         f"pages {format_bytes(seen.page_bytes_per_s)}/s")
            lines.append(f"cgroup usage (last tick): {format_bytes(usage)} of limit {format_bytes(limit)}")
        else:
            lines.append("allocation rate and cgroup usage: not observed before the kill")
        if kill is not None:
            lines.append(f"RSS at the kill: {format_bytes(kill.rss_bytes)} (anon {format_bytes(kill.anon_rss_kb * 1024)})")
            lines.append(f"triggered by: pid {kill.trigger_pid} ({inert(kill.trigger_comm)})")
        return "\n".join(lines) + "\n"

    # -- persistence --------------------------------------------------------

    def save(self, path: Path) -> None:
        state = {"tallies": asdict(self.tallies), "open": [asdict(a) for a in self.open.values()]}
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(path)

    def load(self, path: Path) -> None:
        """Resume tallies and open alerts after a restart (a missing file is a first start)."""
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            return
        self.tallies = Tallies(**state["tallies"])
        self.open = {a["cgroup"]: Alert(**a) for a in state["open"]}
