"""Baseline for bench/detect.py: headroom under a floor, or a least-squares line through the last 30 samples
reaching the limit inside the horizon — oomguard's first rule, and the plain rule operators write by hand.

>>> f = CgroupForecaster(horizon_s=60, floor_fraction=0.05, min_samples=3)
>>> for t in range(4):
...     decision = f.update("/job", t * 1.0, usage=100 + 10 * t, limit=1000)
>>> round(decision.seconds_to_limit)
87
>>> decision.warn
False
"""

from __future__ import annotations

from collections import deque

import numpy as np

from oomguard.detection.detector import Verdict


def seconds_to_limit(times: np.ndarray, usage: np.ndarray, limit: int) -> tuple[float, float | None]:
    """(least-squares slope, seconds until the fitted line reaches `limit` from the last sample)."""
    slope = float(np.polyfit(times - times[-1], usage.astype(np.float64), 1)[0])
    if slope <= 0:
        return slope, None
    return slope, max(0.0, (limit - float(usage[-1])) / slope)


class CgroupForecaster:
    """Keeps a short usage history per cgroup and says when to warn."""

    def __init__(self, horizon_s: float, floor_fraction: float, window: int = 30, min_samples: int = 5):
        self.horizon_s, self.floor_fraction = horizon_s, floor_fraction
        self.window, self.min_samples = window, min_samples
        self._history: dict[str, deque] = {}

    def update(self, cgroup: str, now: float, usage: int, limit: int) -> Verdict:
        history = self._history.setdefault(cgroup, deque(maxlen=self.window))
        history.append((now, usage))
        free_fraction = (limit - usage) / limit
        if len(history) < self.min_samples:  # warm-up: no forecast from a handful of points
            slope, eta = 0.0, None
        else:
            times, values = np.array(history, dtype=np.float64).T
            slope, eta = seconds_to_limit(times, values, limit)
        if free_fraction < self.floor_fraction:
            return Verdict(cgroup, usage, limit, slope, eta, True,
                            f"headroom {free_fraction:.1%} of the limit, under the {self.floor_fraction:.0%} floor")
        if eta is not None and eta <= self.horizon_s:
            return Verdict(cgroup, usage, limit, slope, eta, True,
                            f"usage growing {slope / 2**20:.1f} MiB/s over the last {len(history)} samples reaches "
                            f"the limit in {eta:.0f}s (horizon {self.horizon_s:.0f}s)")
        return Verdict(cgroup, usage, limit, slope, eta, False, "no OOM in sight")

    def forget(self, cgroups) -> None:
        for cgroup in cgroups:
            self._history.pop(cgroup, None)
