"""Pre-OOM detection per memory cgroup: a sawtooth-aware forecast and a streaming anomaly test (river).

For each limiting cgroup, every tick, on its usage (the working set: usage
minus inactive file cache, which the kernel reclaims before it kills):

- **envelope forecast**: the window is cut into blocks and a line is fitted
  through each block's *peak*. A garbage-collected heap that grows and drops
  has flat peaks, so its rising edges are never extrapolated; a leak, with or
  without a sawtooth on top, has rising peaks. Trusted when the peaks lie on
  the line (R^2 >= `envelope_fit`).
- **anomalous growth**: the growth rate (the slope over `short_window`
  samples, which smooths noise) is compared with the cgroup's own
  history through a streaming 0.99-quantile (river's P^2 estimator, O(1) and
  ~0.1 us per update). A rate more than `anomaly_factor` times anything the
  cgroup usually does, with a short-term forecast inside the horizon, warns
  at once: that is how a sudden jump is caught before the envelope sees it.
  A batch job that fills and frees the same way every run is not anomalous,
  nor a burst like one seen in the last hours (the highest growth seen is
  remembered with a half-life of `peak_half_life`). Growth is learnt only a
  horizon after it is seen, so a leak's onset is judged against the time
  before it, not against itself.
  Why not HalfSpaceTrees (~20 us per update, features scaled to [0, 1]) or
  StandardAbsoluteDeviation (assumes one mode, while growth is mostly ~0 with
  bursts): a quantile of the cgroup's own growth is cheap, needs no scaling
  and copes with bimodal behaviour.
- **floor**: less than `headroom_floor` of the limit free warns whatever the trend.

No model speaks before `warmup` samples (the envelope needs peaks from
several cycles, the anomaly test a history): until then only the floor can
warn. The window must span several cycles of a sawtooth for its peaks to
show the trend (120 s by default: most garbage collectors cycle faster).

>>> d = CgroupDetector(DetectConfig(warmup=5, window=20, blocks=4), horizon_s=60, floor_fraction=0.05)
>>> for t in range(20):
...     f = d.update("/leak", float(t), usage=100_000_000 + 5_000_000 * t, limit=400_000_000)
>>> f.warn, round(f.seconds_to_limit)
(True, 41)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from river import stats

from ..config import DetectConfig
from ..units import format_bytes


@dataclass(frozen=True)
class Verdict:
    """The detector's judgement of one limiting cgroup at one tick."""

    cgroup: str
    usage: int
    limit: int
    slope_bytes_per_s: float
    seconds_to_limit: float | None  # None: not growing, or too few samples yet
    warn: bool
    reason: str


def _slopes(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise least-squares (slope, R^2) of `values` against `times`; rows are series."""
    t = times - times.mean(axis=1, keepdims=True)
    v = values - values.mean(axis=1, keepdims=True)
    tt = (t * t).sum(axis=1)
    vv = (v * v).sum(axis=1)
    tv = (t * v).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(tt > 0, tv / tt, 0.0)
        r2 = np.where((tt > 0) & (vv > 0), tv * tv / (tt * vv), 0.0)
    return slope, r2


def _envelopes(times: np.ndarray, values: np.ndarray, blocks: int,
               min_growth: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-wise envelope: cut each row into `blocks` slices, fit a line through the slices' peaks.

    R^2 is reported as 0 unless every block's peak is above the one before by
    more than `min_growth` (bytes/s) over the time between them: a fill that
    started mid-window (a hockey stick) or peaks wandering in noise are not a trend.
    """
    width = values.shape[1] // blocks
    cut = values[:, -width * blocks:].reshape(len(values), blocks, width)
    at = cut.argmax(axis=2)
    peaks = np.take_along_axis(cut, at[:, :, None], axis=2)[:, :, 0]
    peak_times = np.take_along_axis(times[:, -width * blocks:].reshape(len(values), blocks, width),
                                    at[:, :, None], axis=2)[:, :, 0]
    slope, r2 = _slopes(peak_times, peaks)
    rising = (np.diff(peaks, axis=1) > min_growth * np.diff(peak_times, axis=1)).all(axis=1)
    return slope, np.where(rising, r2, 0.0), peaks[:, -1]


class CgroupDetector:
    """All cgroups at once: their histories are rows of one matrix, screened by numpy each tick.

    update_all() runs the verdicts for every cgroup in a few vectorised
    passes; per-cgroup Python work is only the river quantile (O(1)) and the
    Verdict of each cgroup. update() is the same for one cgroup.
    """

    def __init__(self, config: DetectConfig, horizon_s: float, floor_fraction: float):
        self.config, self.horizon_s, self.floor_fraction = config, horizon_s, floor_fraction
        self._row: dict[str, int] = {}
        self._values = np.zeros((0, config.window))
        self._times = np.zeros((0, config.window))
        self._count = np.zeros(0, dtype=np.int64)
        self._quantiles: list[stats.Quantile] = []
        # Growths not yet learnt: judged against the older past only.
        self._pending: list[deque[tuple[float, float]]] = []
        self._peak_growth = np.zeros(0)  # highest growth seen, decaying by half an hour
        self._peak_at = np.zeros(0)

    def reconfigure(self, config: DetectConfig, horizon_s: float, floor_fraction: float) -> None:
        """New settings, keeping every cgroup's history; a new window keeps the latest samples."""
        old = self.config.window
        self.config, self.horizon_s, self.floor_fraction = config, horizon_s, floor_fraction
        if config.window == old:
            return
        keep = min(old, config.window)
        pad = config.window - keep  # a longer window starts flat at each series' oldest kept sample
        self._values = np.hstack([np.repeat(self._values[:, -keep:][:, :1], pad, axis=1), self._values[:, -keep:]])
        self._times = np.hstack([np.repeat(self._times[:, -keep:][:, :1], pad, axis=1), self._times[:, -keep:]])
        self._count = np.minimum(self._count, keep)

    def update(self, cgroup: str, now: float, usage: int, limit: int) -> Verdict:
        return self.update_all([cgroup], now, np.array([usage], np.float64), np.array([limit], np.float64))[0]

    def _rows(self, cgroups: list[str]) -> np.ndarray:
        new = [c for c in cgroups if c not in self._row]
        if new:
            for c in new:
                self._row[c] = len(self._quantiles)
                self._quantiles.append(stats.Quantile(0.99))
                self._pending.append(deque())
            grow = np.zeros((len(new), self.config.window))
            self._values = np.vstack([self._values, grow])
            self._times = np.vstack([self._times, grow])
            self._count = np.concatenate([self._count, np.zeros(len(new), dtype=np.int64)])
            self._peak_growth = np.concatenate([self._peak_growth, np.zeros(len(new))])
            self._peak_at = np.concatenate([self._peak_at, np.zeros(len(new))])
        return np.array([self._row[c] for c in cgroups], dtype=np.intp)

    def update_all(self, cgroups: list[str], now: float, usage: np.ndarray, limit: np.ndarray) -> list[Verdict]:
        c = self.config
        rows = self._rows(cgroups)
        values, times = self._values[rows], self._times[rows]
        first = self._count[rows] == 0
        values[:, :-1], times[:, :-1] = values[:, 1:].copy(), times[:, 1:].copy()  # shift left...
        values[:, -1], times[:, -1] = usage, now  # ...and append this tick
        values[first], times[first] = usage[first, None], now  # a new series starts flat at its first value
        self._values[rows], self._times[rows] = values, times
        self._count[rows] += 1
        count = self._count[rows]

        k = c.short_window
        short, _ = _slopes(times[:, -k:], values[:, -k:])
        short = np.where(count >= k, short, 0.0)
        env_slope, env_r2, peak = _envelopes(times, values, c.blocks, c.min_growth)
        warm = count > c.warmup
        full = count >= c.window  # the envelope needs a whole window of real samples
        free = limit - usage
        with np.errstate(divide="ignore", invalid="ignore"):
            env_eta = np.where(warm & full & (env_slope > 0) & (env_r2 >= c.envelope_fit),
                               (limit - peak) / env_slope, np.inf)
            short_eta = np.where(short > 0, free / short, np.inf)

        # The usual growth: the 0.99-quantile, or the highest growth seen lately (a burst
        # pattern that repeats within hours is usual even when it is rare).
        decayed = self._peak_growth[rows] * 0.5 ** ((now - self._peak_at[rows]) / c.peak_half_life)
        verdicts = []
        for i, cgroup in enumerate(cgroups):
            quantile = self._quantiles[rows[i]]
            learnt = quantile.get()  # None until some growth is `learn_after` old: no history, no verdict
            usual = max(learnt, float(decayed[i])) if learnt is not None else None
            growth = float(short[i])
            anomalous = bool(warm[i] and usual is not None and growth > c.min_growth
                             and growth > c.anomaly_factor * max(usual, c.min_growth))
            if count[i] >= k:
                # Learn a growth only once it is `learn_after` old: the start of a new episode
                # (a leak's onset) is judged against what was usual before it, not against itself.
                pending = self._pending[rows[i]]
                pending.append((now, growth))
                while pending and now - pending[0][0] >= c.learn_after:
                    _, old = pending.popleft()
                    quantile.update(old)
                    if old >= self._peak_growth[rows[i]] * 0.5 ** ((now - self._peak_at[rows[i]]) / c.peak_half_life):
                        self._peak_growth[rows[i]], self._peak_at[rows[i]] = old, now
            verdicts.append(self._decide(cgroup, int(usage[i]), int(limit[i]), growth, usual, anomalous,
                                          float(env_slope[i]), float(env_r2[i]), float(env_eta[i]),
                                          float(short_eta[i]), bool(warm[i]), float(times[i, -1] - times[i, 0])))
        return verdicts

    def _decide(self, cgroup: str, usage: int, limit: int, growth: float, usual: float | None, anomalous: bool,
                env_slope: float, env_r2: float, env_eta: float, short_eta: float, warm: bool, span: float) -> Verdict:
        c = self.config
        free = limit - usage
        if free < self.floor_fraction * limit:
            return Verdict(cgroup, usage, limit, growth, short_eta if np.isfinite(short_eta) else None, True,
                            f"headroom {free / limit:.1%} of the limit ({format_bytes(free)} free), "
                            f"under the {self.floor_fraction:.0%} floor")
        if env_eta <= self.horizon_s:
            return Verdict(cgroup, usage, limit, env_slope, env_eta, True,
                            f"peaks rising {format_bytes(env_slope)}/s over {span:.0f}s "
                            f"(fit R^2 {env_r2:.2f}) reach the limit in {env_eta:.0f}s")
        if anomalous and short_eta <= self.horizon_s:
            return Verdict(cgroup, usage, limit, growth, short_eta, True,
                            f"growth {format_bytes(growth)}/s is {growth / max(usual or 0.0, c.min_growth):.0f}x "
                            f"this cgroup's usual 0.99-quantile ({format_bytes(usual or 0.0)}/s); at this pace the "
                            f"limit is {short_eta:.0f}s away")
        eta = min(env_eta, short_eta)
        return Verdict(cgroup, usage, limit, env_slope if np.isfinite(env_eta) else growth,
                        eta if np.isfinite(eta) else None, False, "no OOM in sight" if warm else "warming up")

    def forget(self, cgroups: Iterable[str]) -> None:
        """Drop these cgroups' rows (gone cgroups must not grow the matrix forever)."""
        drop = sorted(self._row.pop(c) for c in cgroups if c in self._row)
        if not drop:
            return
        self._values, self._times = np.delete(self._values, drop, 0), np.delete(self._times, drop, 0)
        self._count = np.delete(self._count, drop)
        self._peak_growth, self._peak_at = np.delete(self._peak_growth, drop), np.delete(self._peak_at, drop)
        keep = [i for i in range(len(self._quantiles)) if i not in set(drop)]
        self._quantiles = [self._quantiles[i] for i in keep]
        self._pending = [self._pending[i] for i in keep]
        renumber = {old: new for new, old in enumerate(keep)}
        self._row = {c: renumber[r] for c, r in self._row.items()}

    def __len__(self) -> int:
        return len(self._row)
