"""How late each tick starts, and why: between two ticks no cgroup is watched, so a late tick is said
(status, metrics, the log) with its cause: the daemon's CPU quota, a slow stage of its own, or a CPU
too busy to run it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

LATE_SHARE = 0.25  # a tick is late when it starts this share of an interval (and at least LATE_MIN_S) behind
LATE_MIN_S = 0.1
STALE_TICKS, STALE_MIN_S = 5, 15.0  # unhealthy (/healthz) once no tick started for this many intervals (and seconds)
THROTTLED, SLOW_STAGE, CPU_BUSY = "throttled", "slow stage", "CPU busy"


def why_late(late_s: float, throttled_s: float, stage: str, stage_s: float) -> tuple[str, str]:
    """(reason, its words) for a tick `late_s` behind, given the CPU-quota wait since the last tick and the
    slowest piece of work since then (a stage of the last tick, or a kill's handling)."""
    if throttled_s >= 0.25 * late_s:
        return THROTTLED, (f"throttled: the daemon's CPU quota held it back {throttled_s:.2f}s (fix: raise the "
                           f"unit's CPUQuota or the DaemonSet's CPU limit)")
    if stage and stage_s >= 0.5 * late_s:
        return SLOW_STAGE, f"slow stage: {stage} took {stage_s:.2f}s"
    return CPU_BUSY, "CPU busy: the daemon was not scheduled in time (not throttled; the node is saturated)"


@dataclass
class Late:
    at: float  # wall clock of the late tick
    by_s: float
    gap_s: float  # since the tick before
    reason: str
    why: str


@dataclass
class Pace:
    """The ticks' timeliness since start (for status and metrics)."""

    interval_s: float
    ticks: int = 0
    late: int = 0
    late_max_s: float = 0.0
    gap_max_s: float = 0.0  # the widest gap between two tick starts
    by_reason: dict[str, int] = field(default_factory=dict)
    last_late: Late | None = None
    _last_start: float | None = None
    _throttled: float | None = None
    _slowest: tuple[str, float] = ("", 0.0)  # the slowest work since the last tick started

    def started(self, scheduled: float, now: float, wall: float, throttled_s: float | None) -> Late | None:
        """A tick starts at `now` (monotonic), due at `scheduled`; its lateness, when it is late."""
        self.ticks += 1
        gap = now - self._last_start if self._last_start is not None else 0.0
        self._last_start = now
        self.gap_max_s = max(self.gap_max_s, gap)
        waited = (throttled_s - self._throttled) if throttled_s is not None and self._throttled is not None else 0.0
        self._throttled = throttled_s
        stage, stage_s = self._slowest
        self._slowest = ("", 0.0)
        late_s = now - scheduled
        if late_s < max(LATE_MIN_S, LATE_SHARE * self.interval_s):
            return None
        reason, why = why_late(late_s, max(0.0, waited), stage, stage_s)
        self.late += 1
        self.late_max_s = max(self.late_max_s, late_s)
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        self.last_late = Late(wall, late_s, gap, reason, why)
        return self.last_late

    def health(self, now: float) -> tuple[bool, str]:
        """(healthy, why) for /healthz: ticks still coming. Read from the exporter's thread."""
        last = self._last_start
        if last is None:
            return True, "starting: no tick yet"
        stale = max(STALE_TICKS * self.interval_s, STALE_MIN_S)
        if now - last > stale:
            return False, (f"no tick for {now - last:.0f}s (more than {stale:.0f}s): the watching loop is stuck; "
                           f"restart it (the liveness probe does)")
        return True, f"last tick {now - last:.1f}s ago, {self.late} of {self.ticks} late"

    def took(self, stage: str, seconds: float) -> None:
        """A piece of work done since the last tick started: the slowest names the cause of a late tick."""
        if seconds > self._slowest[1]:
            self._slowest = (stage, seconds)

    def status(self) -> dict[str, Any]:
        return {"count": self.ticks, "late": self.late, "late_max_s": self.late_max_s, "gap_max_s": self.gap_max_s,
                "interval_s": self.interval_s, "by_reason": dict(self.by_reason),
                "last_late": asdict(self.last_late) if self.last_late else None}


class Stopwatch:
    """Each stage of a tick timed in turn: lap("collect") is the time since the previous lap."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._at = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = self.laps.get(stage, 0.0) + now - self._at
        self._at = now

    def slowest(self) -> tuple[str, float]:
        return max(self.laps.items(), key=lambda kv: kv[1], default=("", 0.0))
