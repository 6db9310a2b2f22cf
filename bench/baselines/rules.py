"""The alert rules operators use today, as bench/detect.py runs them beside oomguard over the same series.

Each rule sees what Prometheus would scrape (the working set and the limit,
one sample per second: finer than a real 15-60 s scrape, so the rules are
judged at their best) and says, per series and tick, whether it fires. A
firing rule is one alert through the same lifecycle as oomguard's critical
alerts (the rules have one severity).

- threshold:  working_set > 0.9 * limit (the common Kubernetes near-limit rule)
- predict_linear:  predict_linear(working_set[5m], 60) > limit, plain and with `for: 1m`
- line-30:  least-squares line through the last 30 samples reaches the limit within 60 s, or less
  than 5% of the limit free (oomguard's first rule, and the plain rule people write by hand)

>>> rule = PredictLinear(rows=1)
>>> fired = [rule.step(np.array([0]), float(t), np.array([100.0 + 10 * t]), np.array([800.0]))[0] for t in range(4)]
>>> fired
[False, False, False, False]
>>> bool(rule.step(np.array([0]), 60.0, np.array([700.0]), np.array([800.0]))[0])  # 700 + 60 * ~10 > 800
True
"""

from __future__ import annotations

import numpy as np


class History:
    """The last `width` samples of each row (a row per series), with how many are real."""

    def __init__(self, rows: int, width: int):
        self.values = np.zeros((rows, width))
        self.times = np.zeros((rows, width))
        self.count = np.zeros(rows, dtype=np.int64)

    def append(self, rows: np.ndarray, now: float, usage: np.ndarray) -> None:
        for a, x in ((self.values, usage), (self.times, now)):
            a[rows, :-1] = a[rows, 1:]
            a[rows, -1] = x
        self.count[rows] += 1

    def line(self, rows: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slope, fitted value at the last sample, real samples) of a least-squares line over the last `samples`."""
        t, v = self.times[rows, -samples:], self.values[rows, -samples:]
        n = np.minimum(self.count[rows], samples)
        m = (np.arange(samples)[None, :] >= (samples - n)[:, None]).astype(np.float64)
        k = np.maximum(n, 1)
        tm, vm = (m * t).sum(1) / k, (m * v).sum(1) / k
        dt, dv = (t - tm[:, None]) * m, (v - vm[:, None]) * m
        stt = (dt * dt).sum(1)
        slope = np.divide((dt * dv).sum(1), stt, out=np.zeros(len(rows)), where=stt > 0)
        return slope, vm + slope * (t[:, -1] - tm), n


class Threshold:
    name = "threshold 90%"

    def __init__(self, rows: int, fraction: float = 0.9):
        self.fraction = fraction

    def step(self, rows: np.ndarray, now: float, usage: np.ndarray, limit: np.ndarray) -> np.ndarray:
        return usage > self.fraction * limit


class PredictLinear:
    """predict_linear(working_set[5m], 60) > limit; with for_s > 0, only once that held for for_s seconds."""

    def __init__(self, rows: int, for_s: float = 0.0, range_s: int = 300, ahead_s: float = 60.0):
        self.name = "predict_linear" + (f" for {for_s:.0f}s" if for_s else "")
        self.history = History(rows, range_s)
        self.for_s, self.ahead_s = for_s, ahead_s
        self.since = np.full(rows, np.inf)  # when the condition became true

    def step(self, rows: np.ndarray, now: float, usage: np.ndarray, limit: np.ndarray) -> np.ndarray:
        self.history.append(rows, now, usage)
        slope, fitted, n = self.history.line(rows, self.history.values.shape[1])
        true = (n >= 2) & (fitted + slope * self.ahead_s > limit)
        self.since[rows] = np.where(true, np.minimum(self.since[rows], now), np.inf)
        return true & (now - self.since[rows] >= self.for_s)


class LineRule:
    """A least-squares line through the last 30 samples reaching the limit within 60 s, or under a 5% floor."""

    name = "line-30"

    def __init__(self, rows: int, window: int = 30, min_samples: int = 5, horizon_s: float = 60.0,
                 floor: float = 0.05):
        self.history = History(rows, window)
        self.min_samples, self.horizon_s, self.floor = min_samples, horizon_s, floor

    def step(self, rows: np.ndarray, now: float, usage: np.ndarray, limit: np.ndarray) -> np.ndarray:
        self.history.append(rows, now, usage)
        slope, _, n = self.history.line(rows, self.history.values.shape[1])
        eta = np.divide(limit - usage, slope, out=np.full(len(rows), np.inf), where=slope > 0)
        return ((n >= self.min_samples) & (eta <= self.horizon_s)) | (limit - usage < self.floor * limit)


RULES = (Threshold, PredictLinear, lambda rows: PredictLinear(rows, for_s=60.0), LineRule)
