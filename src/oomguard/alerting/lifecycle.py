"""The alert lifecycle: pre-OOM opened, then confirmed by the kill, cleared (its climb stopped, or a false alarm),
or a kill unforeseen.

Pure and clock-injected: decisions only — which alert opens, which kill
confirms which alert, which alert has expired. The words of each message are
in messages.py, the labels for Alertmanager in alertmanager.py, storage in
store.py. One open alert per limiting cgroup (a hundred forks growing in one
container give one alert) that opens as a warning or critical and escalates
from warning to critical under the same id; a cooldown per cgroup after an
alert closes (it holds back a new warning, never a critical), and a global
hourly budget of new pre-OOM alerts. Kills are always reported.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..detection.detector import CRITICAL, Verdict  # severities are the detector's; critical is never held back
from ..identity.attribution import under_cgroup
from ..kills.kmsg import KernelOomRecord
from ..kills.report import KillReport
from ..units import format_bytes

PRE_OOM, ESCALATED, CONFIRMED, CLEARED, UNFORESEEN = "pre-OOM", "escalated", "confirmed", "cleared", "unforeseen"
REFRESH = "refresh"  # an open alert posted again, for Alertmanager alone (it resolves alerts not re-posted)
OPENED = "opened"  # what warn() did: OPENED or ESCALATED an alert
MAX_PIDS_KEPT = 100  # pids remembered per alert, to match the kill by pid
LEAD_TIMES_KEPT = 1000
# After an OOM kill in a cgroup, its usage is still the victim's until the exit and the OOM reaper free it
# (the kill event comes first): alerts on that cgroup are held back this long, at any severity.
KILL_SETTLE_S = 5.0
# An alert whose cgroup no window sees climbing any more, this long, clears at once with where the climb
# stopped: a warm-up that levels off at 80% is over when it levels off, not a horizon after its last warning.
# Only for a climb this process saw (an alert resumed after a restart waits until the detector has history).
STOPPED_S = 10.0


@dataclass
class Alert:
    id: str
    cgroup: str
    pids: list[int]
    opened_at: float  # clock seconds
    last_warned_at: float
    title: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    started_wall: float = 0.0  # wall clock, for receivers and people
    boot_id: str = ""  # the boot whose monotonic clock opened_at is on
    severity: str = CRITICAL  # alerts stored before severities existed were all critical (60 s horizon)
    critical_at: float | None = None  # clock seconds when it became critical (opened so, or escalated)
    oom_kills: int | None = None  # the kernel's OOM kill count in its cgroup when it opened; None: unknown
    body: str = ""  # its last message's text, posted again to Alertmanager while it is open
    who: str = ""  # whose memory it is about (a container, a pod, a cgroup), for the message that closes it
    runbook: str = ""  # its runbook link, posted with it
    posted_at: float = 0.0  # clock seconds of its last post (opened, escalated or refreshed)


@dataclass
class Tallies:
    foreseen: int = 0
    unforeseen: int = 0
    false_alarms: int = 0  # cleared with nothing to explain them: the horizon passed, or the processes exited
    lead_times_s: list[float] = field(default_factory=list)  # the last LEAD_TIMES_KEPT
    stopped: int = 0  # cleared because the climb stopped short of the limit (said where)

    def lead_time_summary(self) -> str:
        if not self.lead_times_s:
            return "no lead times yet"
        ordered = sorted(self.lead_times_s)
        return f"lead time median {ordered[len(ordered) // 2]:.0f}s, min {ordered[0]:.0f}s"


@dataclass(frozen=True)
class Closed:
    """An alert that closed, and why: a kill it foresaw (lead_s) or a false alarm (why)."""

    alert: Alert
    lead_s: float | None = None
    critical_lead_s: float | None = None  # from when it became critical; None if it never did
    why: str = ""
    outcome_unknown: bool = False  # closed because the machine restarted, not judged
    stopped: bool = False  # its climb stopped short of the limit: explained, not a false alarm


@dataclass(frozen=True)
class Missed:
    """A kill the kernel made while the daemon was not running, which confirms an alert resumed on restart."""

    alert: Alert
    record: KernelOomRecord | None  # its kernel log line; None: only the cgroup's kill counter says so
    at: float  # when, in clock seconds: the log line's time; else the restart's (the kill was before)


def missed_kills(alerts: list[Alert], kills_now: dict[str, int | None], records: list[KernelOomRecord],
                 now: float) -> list[Missed]:
    """Which open alerts (resumed after a restart on the same boot) the kernel's evidence confirms: an oom-kill
    line in its log since the alert opened, in the alert's cgroup or by one of its processes; else its cgroup's
    kill counter above the count when it opened. An alert neither shows stays open, to be judged live."""
    missed = []
    for alert in alerts:
        line = next((r for r in records if alert.opened_at <= r.monotonic_us / 1e6 <= now and _names(r, alert)), None)
        count, before = kills_now.get(alert.cgroup), alert.oom_kills
        if line is not None:
            missed.append(Missed(alert, line, line.monotonic_us / 1e6))
        elif count is not None and before is not None and count > before:
            missed.append(Missed(alert, None, now))
    return missed


def _stopped(verdict: Verdict, quiet_s: float) -> bool:
    """No window has seen the cgroup climbing for STOPPED_S, and it is not under the headroom floor."""
    return not (verdict.warn or verdict.climbing) and quiet_s >= STOPPED_S


def stopped_at(verdict: Verdict) -> str:
    """Where a climb stopped, in words: "stopped climbing at 80% of its limit (204.8MiB of 256.0MiB)"."""
    return (f"stopped climbing at {verdict.usage / max(verdict.limit, 1):.0%} of its limit "
            f"({format_bytes(verdict.usage)} of {format_bytes(verdict.limit)})")


def _names(record: KernelOomRecord, alert: Alert) -> bool:
    """The kernel log line is about the alert's cgroup (its limit, or the victim's cgroup) or one of its pids."""
    return record.pid in alert.pids or any(
        path is not None and under_cgroup(path, alert.cgroup) for path in (record.oom_memcg, record.task_memcg))


class AlertBook:
    """Open alerts by cgroup, cooldowns, the hourly budget and the tallies; every decision of the lifecycle."""

    def __init__(self, horizon_s: float, cooldown_s: float, max_per_hour: int, boot_id: str = ""):
        self.horizon_s, self.cooldown_s, self.max_per_hour = horizon_s, cooldown_s, max_per_hour
        self.boot_id = boot_id  # monotonic times mean nothing across a reboot: alerts carry the boot they are on
        self.open: dict[str, Alert] = {}  # by cgroup
        self.tallies = Tallies()
        self.closed_at: dict[str, float] = {}  # cgroup -> when its last alert closed (cooldown)
        self.recent: deque[float] = deque()  # when pre-OOM alerts were opened (hourly budget)
        self.killed_at: dict[str, float] = {}  # cgroup -> its last OOM kill (KILL_SETTLE_S)
        # cgroup -> the last tick its open alert's climb was seen (in memory: a restart has no history yet)
        self.climbed_at: dict[str, float] = {}

    def reconfigure(self, horizon_s: float, cooldown_s: float, max_per_hour: int) -> None:
        """New thresholds; what is open, cooling down and spent this hour stays."""
        self.horizon_s, self.cooldown_s, self.max_per_hour = horizon_s, cooldown_s, max_per_hour

    def warn(self, alert_id: str, cgroup: str, pids: tuple[int, ...], now: float,
             severity: str = CRITICAL) -> tuple[str, Alert] | None:
        """A pre-OOM decision: (OPENED, new alert), (ESCALATED, the open alert now critical), or None when
        nothing changes (an alert is open at this severity or above, the cgroup is cooling down, or the
        hour's budget is spent)."""
        alert = self.open.get(cgroup)
        if alert is not None:
            alert.last_warned_at = now  # still warning: keeps it open
            alert.pids = sorted(set(alert.pids) | set(pids))[:MAX_PIDS_KEPT]
            if severity == CRITICAL and alert.severity != CRITICAL:
                alert.severity, alert.critical_at = CRITICAL, now
                return ESCALATED, alert
            return None
        if severity != CRITICAL and now - self.closed_at.get(cgroup, float("-inf")) < self.cooldown_s:
            return None
        if now - self.killed_at.get(cgroup, float("-inf")) < KILL_SETTLE_S:
            return None
        while self.recent and now - self.recent[0] > 3600:
            self.recent.popleft()
        if len(self.recent) >= self.max_per_hour:
            return None
        self.recent.append(now)
        alert = Alert(alert_id, cgroup, sorted(pids)[:MAX_PIDS_KEPT], now, now, boot_id=self.boot_id,
                      severity=severity, critical_at=now if severity == CRITICAL else None)
        self.open[cgroup] = alert
        return OPENED, alert

    def kill(self, report: KillReport, now: float) -> Closed | None:
        """An OOM kill: closes and returns the open alert it confirms, else counts it unforeseen (None)."""
        alert = self._match(report)
        if alert is None:
            self.tallies.unforeseen += 1
            return None
        self._close(alert, now)
        lead = now - alert.opened_at
        self.tallies.foreseen += 1
        self.tallies.lead_times_s = ([*self.tallies.lead_times_s, lead])[-LEAD_TIMES_KEPT:]
        return Closed(alert, lead_s=lead,
                      critical_lead_s=None if alert.critical_at is None else now - alert.critical_at)

    def settle(self, cgroups: list[str], now: float) -> None:
        """A kill happened in these cgroups: no alert on them for KILL_SETTLE_S."""
        self.killed_at.update(dict.fromkeys(cgroups, now))

    def expire(self, now: float, live_cgroups: set[str],
               verdicts: Mapping[str, Verdict] | None = None) -> list[Closed]:
        """Close the alerts whose cgroup has no process left or whose horizon passed without a kill (false
        alarms), and, given this tick's verdicts by cgroup, those whose climb stopped STOPPED_S ago."""
        self._forget_settled(now)
        closed = []
        for cgroup, alert in list(self.open.items()):
            verdict = verdicts.get(cgroup) if verdicts is not None else None
            if verdict is not None and (verdict.warn or verdict.climbing):
                self.climbed_at[cgroup] = now
            if cgroup not in live_cgroups:
                why = "its processes exited without an OOM kill"
            elif verdict is not None and _stopped(verdict, now - self.climbed_at.get(cgroup, now)):
                self._close(alert, now)
                self.tallies.stopped += 1
                closed.append(Closed(alert, why=stopped_at(verdict), stopped=True))
                continue
            elif now - alert.last_warned_at > self.horizon_s:
                why = f"no OOM kill within the {self.horizon_s:.0f}s horizon after the last warning"
            else:
                continue
            self._close(alert, now)
            self.tallies.false_alarms += 1
            closed.append(Closed(alert, why=why))
        return closed

    def _forget_settled(self, now: float) -> None:
        """Cooldowns and kill settling that have passed (a node with container churn would pile them up)."""
        self.closed_at = {c: t for c, t in self.closed_at.items() if now - t < self.cooldown_s}
        self.killed_at = {c: t for c, t in self.killed_at.items() if now - t < KILL_SETTLE_S}

    def _close(self, alert: Alert, now: float) -> None:
        del self.open[alert.cgroup]
        self.climbed_at.pop(alert.cgroup, None)
        self.closed_at[alert.cgroup] = now

    def _match(self, report: KillReport) -> Alert | None:
        limit_cgroup = report.record.oom_memcg if report.record else None
        global_kill = report.record is not None and report.record.constraint == "CONSTRAINT_NONE"
        for alert in self.open.values():
            if report.pid in alert.pids:
                return alert
            if alert.cgroup == "/":  # the host: confirmed by a machine-wide kill, never by a cgroup's
                if global_kill:
                    return alert
                continue
            for path in (report.cgroup, limit_cgroup):
                if path is not None and (under_cgroup(path, alert.cgroup) or under_cgroup(alert.cgroup, path)):
                    return alert
        return None

    # -- state, for store.py ---------------------------------------------

    def state(self) -> dict[str, Any]:
        return {"tallies": asdict(self.tallies), "open": [asdict(a) for a in self.open.values()]}

    def restore(self, state: dict[str, Any]) -> list[Closed]:
        """Resume tallies and open alerts; alerts from an earlier boot are closed (returned), not resumed."""
        tallies = Tallies(**state["tallies"])
        alerts = [Alert(**a) for a in state["open"]]
        self.tallies = tallies
        self.open = {a.cgroup: a for a in alerts if a.boot_id == self.boot_id}
        return [Closed(a, why="the machine restarted since it opened, so its outcome is unknown "
                          "(closed as daemon restarted)", outcome_unknown=True)
                for a in alerts if a.boot_id != self.boot_id]
