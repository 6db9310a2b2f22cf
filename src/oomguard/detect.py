"""Pre-OOM detection per memory cgroup: a sawtooth-aware forecast and a streaming anomaly test (river).

For each limiting cgroup, every tick, on its usage (the working set: usage
minus inactive file cache, which the kernel reclaims before it kills):

- **envelope forecast**: the window is cut into blocks and a line is fitted
  through each block's *peak*. A garbage-collected heap that grows and drops
  has flat peaks, so its rising edges are never extrapolated; a leak, with or
  without a sawtooth on top, has rising peaks. Trusted when the peaks lie on
  the line (R^2 >= `envelope_fit`).
- **anomalous growth**: the growth rate is compared with the cgroup's own
  history through a streaming 0.99-quantile (river's P^2 estimator, O(1) and
  ~0.1 us per update). A rate more than `anomaly_factor` times anything the
  cgroup usually does, with a short-term forecast inside the horizon, warns
  at once: that is how a sudden jump is caught before the envelope sees it.
  A batch job that fills and frees the same way every run is not anomalous.
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

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from river import stats

from .forecast import Forecast
from .units import format_bytes


@dataclass(frozen=True)
class DetectConfig:
    window: int = 120  # samples kept per cgroup (at 1 s ticks: 2 minutes)
    blocks: int = 6  # peaks the envelope is fitted through
    envelope_fit: float = 0.8  # R^2 the peaks must reach for the envelope to be trusted
    short_window: int = 4  # samples of the short-term forecast
    warmup: int = 30  # samples before the anomaly test may speak
    anomaly_factor: float = 2.0  # growth this many times the usual 0.99-quantile is anomalous
    min_growth: float = 262144.0  # bytes/s: growth below this is never anomalous (noise floor)


@dataclass
class _State:
    history: deque
    growth_q99: stats.Quantile
    samples: int = 0


def _fit(times: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(slope, R^2) of a least-squares line."""
    if len(times) < 2 or np.ptp(times) == 0:
        return 0.0, 0.0
    slope, intercept = np.polyfit(times, values, 1)
    residual = values - (slope * times + intercept)
    total = np.sum((values - values.mean()) ** 2)
    return float(slope), float(1 - residual @ residual / total) if total > 0 else 0.0


def envelope(times: np.ndarray, values: np.ndarray, blocks: int) -> tuple[float, float, float]:
    """(slope, R^2, latest peak) of the line through the peaks of `blocks` equal slices."""
    if len(values) < 2 * blocks:
        return 0.0, 0.0, float(values[-1]) if len(values) else 0.0
    slices = np.array_split(np.arange(len(values)), blocks)
    peaks = np.array([s[np.argmax(values[s])] for s in slices])
    slope, r2 = _fit(times[peaks], values[peaks].astype(np.float64))
    return slope, r2, float(values[peaks[-1]])


class CgroupDetector:
    """Same interface as forecast.CgroupForecaster: update() per cgroup per tick, returns a Forecast."""

    def __init__(self, config: DetectConfig, horizon_s: float, floor_fraction: float):
        self.config, self.horizon_s, self.floor_fraction = config, horizon_s, floor_fraction
        self._state: dict[str, _State] = {}

    def update(self, cgroup: str, now: float, usage: int, limit: int) -> Forecast:
        c = self.config
        state = self._state.get(cgroup)
        if state is None:
            state = self._state[cgroup] = _State(deque(maxlen=c.window), stats.Quantile(0.99))
        previous = state.history[-1] if state.history else None
        state.history.append((now, usage))
        state.samples += 1
        growth = (usage - previous[1]) / (now - previous[0]) if previous and now > previous[0] else 0.0
        usual = state.growth_q99.get() if state.samples > 2 else None
        anomalous = (state.samples > c.warmup and growth > c.min_growth
                     and growth > c.anomaly_factor * max(usual or 0.0, c.min_growth))
        state.growth_q99.update(growth)  # learn after scoring: a value is judged against the past only

        times, values = np.array(state.history, dtype=np.float64).T
        free = limit - usage
        env_slope, env_r2, peak = envelope(times, values, c.blocks)
        warm = state.samples > c.warmup
        env_eta = (limit - peak) / env_slope if warm and env_slope > 0 and env_r2 >= c.envelope_fit else None
        short_slope, _ = _fit(times[-c.short_window:], values[-c.short_window:])
        short_eta = free / short_slope if short_slope > 0 else None

        if free < self.floor_fraction * limit:
            return Forecast(cgroup, usage, limit, short_slope, short_eta, True,
                            f"headroom {free / limit:.1%} of the limit ({format_bytes(free)} free), "
                            f"under the {self.floor_fraction:.0%} floor")
        if env_eta is not None and env_eta <= self.horizon_s:
            return Forecast(cgroup, usage, limit, env_slope, env_eta, True,
                            f"peaks rising {format_bytes(env_slope)}/s over {times[-1] - times[0]:.0f}s "
                            f"(fit R^2 {env_r2:.2f}) reach the limit in {env_eta:.0f}s")
        if anomalous and short_eta is not None and short_eta <= self.horizon_s:
            return Forecast(cgroup, usage, limit, short_slope, short_eta, True,
                            f"growth {format_bytes(growth)}/s is {growth / max(usual or 0.0, c.min_growth):.0f}x "
                            f"this cgroup's usual 0.99-quantile ({format_bytes(usual or 0.0)}/s); at this pace the "
                            f"limit is {short_eta:.0f}s away")
        eta = min((e for e in (env_eta, short_eta) if e is not None), default=None)
        return Forecast(cgroup, usage, limit, env_slope if env_eta is not None else short_slope,
                        eta, False, "no OOM in sight" if state.samples > c.warmup else "warming up")

    def forget(self, cgroups) -> None:
        for cgroup in cgroups:
            self._state.pop(cgroup, None)


def working_set(usage: int, inactive_file: int) -> int:
    """What the kernel cannot reclaim without swapping or killing (kubelet's definition)."""
    return max(0, usage - inactive_file)


def sigma_screen(values: np.ndarray, mean: np.ndarray, var: np.ndarray, alpha: float, sigma: float):
    """One vectorised EWMA step over all processes: (new mean, new var, flagged mask).

    Flags the processes whose value is `sigma` standard deviations above
    their own running mean (never on the first sample: var 0, mean = value).
    """
    deviation = values - mean
    flagged = deviation > sigma * np.sqrt(np.maximum(var, 1.0))
    mean = mean + alpha * deviation
    var = (1 - alpha) * (var + alpha * deviation ** 2)
    return mean, var, flagged & (var > 0)


class PidScreen:
    """Per-process RSS growth screen: all processes in one vectorised pass per tick (numpy only).

    Keeps an EWMA mean and variance of each process's RSS slope, aligned by
    pid; a process growing `sigma` deviations above its own norm, and by at
    least `min_growth`, is flagged. Flags name the processes in an alert's
    explanation; the per-cgroup models above decide.
    """

    def __init__(self, alpha: float = 0.1, sigma: float = 4.0, min_growth: float = 1 << 20):
        self.alpha, self.sigma, self.min_growth = alpha, sigma, min_growth
        self.pid = np.zeros(0, dtype=np.uint32)
        self.mean = np.zeros(0)
        self.var = np.zeros(0)

    def update(self, pids: np.ndarray, rss_slope: np.ndarray) -> np.ndarray:
        """Mask over `pids` (sorted) of the processes flagged this tick."""
        from .rates import match

        pos, found = match(self.pid, pids)
        mean = np.where(found, self.mean[pos] if len(self.pid) else 0.0, rss_slope)
        var = np.where(found, self.var[pos] if len(self.pid) else 0.0, 0.0)
        self.mean, self.var, flagged = sigma_screen(rss_slope.astype(np.float64), mean, var, self.alpha, self.sigma)
        self.pid = pids
        return flagged & found & (rss_slope > self.min_growth)
