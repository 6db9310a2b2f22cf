"""The adaptive sampling controller: picks N so sampled events/s stay near a target.

Pure: it sees counter deltas and the interval, returns the next N and why.
The daemon writes N into the BPF `sample_rate` array map.

The kernel's cost is flat per event seen (a countdown) plus ~110 ns per
*sampled* event (the per-process hash update); user-space work grows with
sampled events too. Holding sampled events/s near a target therefore holds
overhead flat whatever the event volume.

Behaviour
- Up fast: when sampled events/s exceed the band, N jumps straight to the
  value that meets the target, so a 100x burst is absorbed the next interval.
- Down slow: only after `patience` consecutive intervals below the band, and
  by at most `max_step_down` per interval, so a load that flickers does not
  make N (and the cost) swing.
- A dead band (±`tolerance` around the target) where N is left alone: no
  oscillation on steady load, since a steady load lands inside it.

Example
>>> c = SampleRateController(target_per_s=1000, initial_n=1)
>>> c.update(seen=100_000, interval_s=1.0).n   # 100k events/s at N=1: 100x the target
100
>>> c.update(seen=100_000, interval_s=1.0).n   # now inside the band: unchanged
100
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_N = 1
MAX_N = 1 << 20


@dataclass(frozen=True)
class Decision:
    n: int
    changed: bool
    reason: str


class SampleRateController:
    def __init__(self, target_per_s: float, initial_n: int = 1, *, tolerance: float = 0.15,
                 smoothing: float = 0.3, patience: int = 2, max_step_down: float = 4.0,
                 min_n: int = MIN_N, max_n: int = MAX_N):
        if target_per_s <= 0:
            raise ValueError("target_per_s must be positive")
        self.target_per_s = float(target_per_s)
        self.tolerance = tolerance
        self.smoothing = smoothing
        self.patience = patience
        self.max_step_down = max_step_down
        self.min_n, self.max_n = min_n, max_n
        self.n = self._clamp(initial_n)
        self._smoothed: float | None = None  # EWMA of events/s
        self.last_seen = 0  # events in the last interval, for status
        self._low_intervals = 0

    def _clamp(self, n: float) -> int:
        return int(min(self.max_n, max(self.min_n, n)))

    def _ideal(self, events_per_s: float) -> int:
        """The whole N whose sampled rate lands closest to the target."""
        exact = events_per_s / self.target_per_s
        if exact <= 1:
            return self.min_n
        low, high = math.floor(exact), math.ceil(exact)
        miss_low = abs(events_per_s / low / self.target_per_s - 1)
        best = low if miss_low <= abs(events_per_s / high / self.target_per_s - 1) else high
        return self._clamp(best)

    def update(self, seen: int, interval_s: float) -> Decision:
        """`seen` events reached the program in the last `interval_s` seconds, sampled at self.n."""
        if interval_s <= 0:
            return Decision(self.n, False, "no time elapsed")
        self.last_seen = seen
        raw = seen / interval_s
        high = self.target_per_s * (1 + self.tolerance)
        low = self.target_per_s * (1 - self.tolerance)
        # A jump of more than 2x past the band is a change of regime: act on
        # it as measured. Smaller deviations are judged on the smoothed rate,
        # so noise on a steady load never moves N.
        regime_change = raw / self.n > 2 * high or raw / self.n < low / 2
        if self._smoothed is None or regime_change:
            self._smoothed = raw
        else:
            self._smoothed += self.smoothing * (raw - self._smoothed)
        # Whether to move is judged on the smoothed rate; where to move, on
        # the latest one (the smoothed one lags a step change).
        sampled = self._smoothed / self.n  # what N gives; the kernel's count differs only by noise
        why = f"{raw / self.n:,.0f} sampled/s vs target {self.target_per_s:,.0f} at {raw:,.0f} events/s"

        if sampled > high and self._ideal(raw) > self.n:
            self._low_intervals = 0
            return self._set(self._ideal(raw), why, raw)
        if sampled < low and self.n > self._ideal(raw):
            self._low_intervals += 1
            if self._low_intervals < self.patience:
                return Decision(self.n, False, f"below target for {self._low_intervals} interval(s), waiting")
            return self._set(max(self._ideal(raw), math.ceil(self.n / self.max_step_down)), why, raw)
        self._low_intervals = 0
        return Decision(self.n, False, "within target band" if low <= sampled <= high else "at bound")

    def _set(self, n: int, reason: str, raw: float) -> Decision:
        self._smoothed = raw  # the new N starts from what was just measured
        old, self.n = self.n, self._clamp(n)
        return Decision(self.n, self.n != old, f"N {old} -> {self.n}: {reason}")
