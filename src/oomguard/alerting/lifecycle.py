"""The alert lifecycle: pre-OOM opened, then confirmed by the kill, cleared as a false alarm, or a kill unforeseen.

Pure and clock-injected: decisions only — which alert opens, which kill
confirms which alert, which alert has expired. The words of each message are
in messages.py, the labels for Alertmanager in alertmanager.py, storage in
store.py. One open alert per limiting cgroup (a hundred forks growing in one
container give one alert), a cooldown per cgroup after an alert closes, and a
global hourly budget of new pre-OOM alerts. Kills are always reported.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from ..identity.attribution import under_cgroup
from ..kills.report import KillReport

PRE_OOM, CONFIRMED, CLEARED, UNFORESEEN = "pre-OOM", "confirmed", "cleared", "unforeseen"
MAX_PIDS_KEPT = 100  # pids remembered per alert, to match the kill by pid
LEAD_TIMES_KEPT = 1000


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


@dataclass
class Tallies:
    foreseen: int = 0
    unforeseen: int = 0
    false_alarms: int = 0
    lead_times_s: list[float] = field(default_factory=list)  # the last LEAD_TIMES_KEPT

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
    why: str = ""
    outcome_unknown: bool = False  # closed because the machine restarted, not judged


class AlertBook:
    """Open alerts by cgroup, cooldowns, the hourly budget and the tallies; every decision of the lifecycle."""

    def __init__(self, horizon_s: float, cooldown_s: float, max_per_hour: int, boot_id: str = ""):
        self.horizon_s, self.cooldown_s, self.max_per_hour = horizon_s, cooldown_s, max_per_hour
        self.boot_id = boot_id  # monotonic times mean nothing across a reboot: alerts carry the boot they are on
        self.open: dict[str, Alert] = {}  # by cgroup
        self.tallies = Tallies()
        self.closed_at: dict[str, float] = {}  # cgroup -> when its last alert closed (cooldown)
        self.recent: deque[float] = deque()  # when pre-OOM alerts were opened (hourly budget)

    def reconfigure(self, horizon_s: float, cooldown_s: float, max_per_hour: int) -> None:
        """New thresholds; what is open, cooling down and spent this hour stays."""
        self.horizon_s, self.cooldown_s, self.max_per_hour = horizon_s, cooldown_s, max_per_hour

    def warn(self, alert_id: str, cgroup: str, pids: tuple[int, ...], now: float) -> Alert | None:
        """A pre-OOM decision: the new Alert if it opens one; None if one is open, cooling down or over budget."""
        alert = self.open.get(cgroup)
        if alert is not None:
            alert.last_warned_at = now  # still warning: keeps it open
            alert.pids = sorted(set(alert.pids) | set(pids))[:MAX_PIDS_KEPT]
            return None
        if now - self.closed_at.get(cgroup, float("-inf")) < self.cooldown_s:
            return None
        while self.recent and now - self.recent[0] > 3600:
            self.recent.popleft()
        if len(self.recent) >= self.max_per_hour:
            return None
        self.recent.append(now)
        alert = Alert(alert_id, cgroup, sorted(pids)[:MAX_PIDS_KEPT], now, now, boot_id=self.boot_id)
        self.open[cgroup] = alert
        return alert

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
        return Closed(alert, lead_s=lead)

    def expire(self, now: float, live_cgroups: set[str]) -> list[Closed]:
        """Close alerts whose horizon passed without a kill, or whose cgroup has no process left: false alarms."""
        closed = []
        for cgroup, alert in list(self.open.items()):
            overdue = now - alert.last_warned_at > self.horizon_s
            gone = cgroup not in live_cgroups
            if not (overdue or gone):
                continue
            self._close(alert, now)
            self.tallies.false_alarms += 1
            closed.append(Closed(alert, why="its processes exited without an OOM kill" if gone else
                                 f"no OOM kill within the {self.horizon_s:.0f}s horizon after the last warning"))
        return closed

    def _close(self, alert: Alert, now: float) -> None:
        del self.open[alert.cgroup]
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
