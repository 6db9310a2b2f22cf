"""Pre-OOM forecasting per memory cgroup: the trend of what the cgroup keeps, over adaptive windows, with an ETA,
its interval, and a severity by time to OOM.

Per limiting cgroup, each tick, on its working set u (usage minus inactive
file cache, which the kernel reclaims before it kills):

- **what it keeps**: the lower envelope L[t] = min(u[t..now]), the memory
  not given back since t. A GC sawtooth's L is flat at its troughs, a spike
  leaves no trace in L once it drops, a leak's or a staircase's L is the
  climb itself — from the container's first second, with no history needed.
- **what it gives back**: E, the largest fall in the window from a level
  held 3 s or more (a sawtooth's amplitude, a batch job's cache; not a
  brief spike), remembered beyond the window with a half-life
  (`giveback_half_life`): a cache that a batch job fills and frees every
  few hours is a pattern this cgroup is known for, and a climb must outgrow
  E by 25% to count. This learnt behaviour only ever suppresses; it is
  never needed to warn.
- **adaptive windows**: the least-squares slope of L over the last 5, 10,
  20, 40 ... `window` samples (a young cgroup's windows are its whole life),
  each fitted from where L starts climbing in it (a window reaching back
  before a sudden climb fits the climb, not a hockey stick of half its
  slope), with its standard error. A window's trend is *established* when it spans
  `min_span` seconds or more, each of its thirds climbs (a spike or a
  single step is not a trend), it has climbed further than E (more than the cgroup gives back),
  and its ETA at the confident (slower) slope is at most `trust` times the
  span it was seen over: a forecast never extrapolates much further than
  the evidence behind it. A climb that starts after the cgroup's first
  minute, out of a level it had settled at, is trusted `settled_trust`
  times its span (a sudden jump is then alerted on sooner); one in the
  first minute is the container's start-up, the climb every healthy
  container makes, and keeps `trust`. Short windows catch a fresh or sudden leak within
  seconds; long ones catch a slow leak under noise or a sawtooth.
- **slowing down**: a climb whose last third rose less than its first is
  forecast to the plateau its slow-down leads to (the geometric series of
  its thirds, `_still_to_climb`); below the limit, it is not a trend. A
  warm-up levelling off is thus never alerted on, however fast it started.
  When a longer window shows the climb levelling off that way, each third
  rising less than the one before, the shorter windows inside it are not
  trends either: a JVM's GC teeth can make its last seconds look straight. A
  leak after a warm-up breaks the run of ever smaller thirds, and speaks.
- **a warning needs a long climb**: it speaks of the next `warn_horizon`, so
  the climb behind it must be warn_horizon / warn_trust old (7.5 min): a
  warning never extrapolates more than twice what it saw. A fill, a batch
  job or a sawtooth's first rise is over well before that; a climb younger
  than that, if it is a leak, gets its critical alert in time — unless its
  last stretch to the limit is one step: a younger climb also warns when
  its ETA is within a third of its age (NEAR_SHARE).
- **ETA** = headroom over the slope, from the highest point the window
  reached carried forward along the trend (a sawtooth's peaks hit the limit
  first). Interval: the slope +/- `confidence` standard errors. The verdict
  takes the established window with the earliest confident ETA.
- **severity**: `critical` when the confident ETA is inside [alerts]
  horizon (or less than headroom_floor of the limit is free), `warning`
  inside [alerts] warn_horizon.

Why not a learnt "usual growth" test (the first design): it is silent until
it has a history and then learns a leak as usual; a container that leaks
from its first second was warned 1.5-5 s before its kill. Why not river's
drift detectors to cut the window at a change point: the window ladder
already holds a window that starts near any onset (within a factor of 2),
without per-cgroup Python state each tick.

>>> d = CgroupDetector(DetectConfig(), horizon_s=60, warn_horizon_s=900, floor_fraction=0.05)
>>> for t in range(20):  # a container leaking 5 MB/s from its first second, 400 MB limit
...     v = d.update("/leak", float(t), usage=20_000_000 + 5_000_000 * t, limit=400_000_000)
>>> v.severity, round(v.seconds_to_limit), v.trend_s  # 57 s ahead is within 3x the 19 s of climb seen
('critical', 57, 19.0)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..config import Config, DetectConfig
from ..units import format_bytes

WARNING, CRITICAL = "warning", "critical"
SEVERITIES = ("", WARNING, CRITICAL)  # in order: a later one escalates an earlier one
MIN_WINDOW = 5  # samples: the shortest window the ladder starts at
GIVEBACK_MARGIN = 1.25  # a climb must exceed the largest fall remembered by this much: a batch refilling its
# cache to the same height as last time is known; 25% more is new
HELD = 3  # samples: a level held this long before it falls is what the cgroup gives back. Longer held
# levels undercount a fast sawtooth (a 6 s tooth held 5 samples counts half its fall, and each tooth's climb
# from its trough then looks new); a 1-2 s spike is still held too briefly to count.
STARTUP_S = 60.0  # a climb that starts in a cgroup's first minute is its start-up: extrapolated by `trust`,
# not `settled_trust` (a healthy sidecar's first 80 MiB in 10 s drew a critical at 3.5 on the real kernel)
NEAR_SHARE = 1 / 3  # a climb too young to warn of the whole warn_horizon still warns when its ETA is within
# this share of its age: a staircase of 10% steps a minute is 2 steps (120 s) from the limit after 5 min, and
# its pace puts the last step at the horizon's edge; this warns it 61 s ahead. A half adds false warnings on
# fills that stop short (train: 0.9 against 0.6 per 24 h).
TOOTH_FALL = 0.5  # a peak is a tooth when the series gives back at least this share of its height over the window
TOOTH_MARGIN = 0.15  # of a tooth's height: how much higher than the teeth before it a peak may be sampled
# (a tick catches a tooth rising for 3 s at 0.5 s ticks up to a sixth of its height below its top)
LONG_POINTS = 40  # a window longer than this is fitted on every k-th sample: L is smooth, the cost stays flat


@dataclass(frozen=True)
class Verdict:
    """The detector's judgement of one limiting cgroup at one tick."""

    cgroup: str
    usage: int
    limit: int
    slope_bytes_per_s: float
    seconds_to_limit: float | None  # central ETA; None: no established climb
    severity: str  # "", WARNING or CRITICAL
    eta_interval: tuple[float, float] | None = None  # (early, late) at slope +/- confidence standard errors
    trend_s: float = 0.0  # how long the climb behind the forecast has lasted
    giveback: float = 0.0  # the largest fall the cgroup is known for, bytes
    under_floor: bool = False  # less than headroom_floor of the limit free
    climbing: bool = False  # a climb is established, whatever its ETA: a suspect for deep sampling
    beyond: str = ""  # how it compares with its workload's earlier instances (detection/workloads.py), if known

    @property
    def warn(self) -> bool:
        return bool(self.severity)

    @property
    def reason(self) -> str:
        """Why, in words (built on demand: most verdicts of most ticks are never read)."""
        free = self.limit - self.usage
        beyond = f"; {self.beyond}" if self.beyond else ""
        if self.under_floor:
            return (f"headroom {free / max(self.limit, 1):.1%} of the limit ({format_bytes(free)} free), under the "
                    f"floor{beyond}")
        if self.seconds_to_limit is None or self.eta_interval is None:
            return "no established climb toward the limit"
        # the ETA itself is the message's first line: the reason says what the forecast stands on
        return (f"kept memory climbing {format_bytes(self.slope_bytes_per_s)}/s for {self.trend_s:.0f}s, more than "
                f"the {format_bytes(self.giveback)} it is known to give back{beyond}")


def window_ladder(window: int) -> tuple[int, ...]:
    """5, 10, 20, ... doubling up to `window`, which is always the last rung."""
    rungs, w = [], MIN_WINDOW
    while w < window:
        rungs.append(w)
        w *= 2
    return (*rungs, window)


@dataclass(frozen=True)
class Fit:
    """Least-squares fits of one window over every row (arrays, one value per row)."""

    slope: np.ndarray
    stderr: np.ndarray
    recent: np.ndarray  # the slope over the window's last third: lower than `slope` when the climb slows
    span: np.ndarray  # seconds L has been climbing: from its last sample at the window's starting level to now
    rise: np.ndarray  # L's climb over the window
    climbs_throughout: np.ndarray  # bool: each third of the window climbs, and no gap in the samples splits it
    still_to_climb: np.ndarray  # a decelerating climb's remaining rise to its plateau; inf: not decelerating
    slowing: np.ndarray  # bool: each third rose less than the one before


def fit_window(times: np.ndarray, low: np.ndarray, count: np.ndarray, w: int,
               watched_from: np.ndarray | None = None) -> Fit:
    """The trend of the lower envelope `low` over the last `w` samples of every row (fewer for young rows),
    from where it starts climbing.

    L never falls, so the samples still at the window's starting level are a prefix: the climb starts at
    its last one (found to within one subsampling step), and is fitted from there. A window that reaches
    back before a sudden climb's onset would otherwise fit a hockey stick (half the climb's slope, its
    first third flat) and only the next shorter rung, spanning less than the climb, would speak for it.

    A window longer than LONG_POINTS is fitted on every k-th sample (L is smooth), so each rung costs
    about the same: the ladder's cost grows with log(window), not with the window."""
    width = times.shape[1]
    rows = np.arange(len(times))
    step = max(1, w // LONG_POINTS)
    start = width - 1 - step * ((w - 1) // step)  # every step-th column, ending at the last: a view, no copy
    cols = np.arange(start, width, step)
    t, v = times[:, start::step], low[:, start::step]
    in_window = cols[None, :] >= (width - np.minimum(count, w))[:, None]
    oldest = np.argmax(in_window, axis=1)  # each row's oldest column in this window (later for a young row)
    start_low = low[rows, cols[oldest]]
    flat = ((v <= start_low[:, None]) & in_window).sum(axis=1)
    at_start = np.clip(oldest + flat - 1, 0, len(cols) - 1)
    first = cols[at_start]  # column of each row's climb start: the fit and its thirds begin here
    n = width - first
    m = (cols[None, :] >= first[:, None]).astype(np.float64)  # the climb's samples: the only ones fitted
    k = np.maximum(m.sum(axis=1), 1.0)
    tm, vm = (m * t).sum(axis=1) / k, (m * v).sum(axis=1) / k
    dt, dv = (t - tm[:, None]) * m, (v - vm[:, None]) * m
    stt = (dt * dt).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(stt > 0, (dt * dv).sum(axis=1) / stt, 0.0)
        resid = dv - slope[:, None] * dt
        stderr = np.where((stt > 0) & (k > 2), np.sqrt((resid * resid).sum(axis=1) / np.maximum(k - 2, 1) / stt),
                          np.inf)
    end_low = low[:, -1]
    # Climbing throughout: each third of the climb climbs at least a quarter of its share of the fit. A spike
    # or a step climbs in one third and then holds; a leak, a staircase or a rising floor climb in all three.
    at = [np.minimum(first + (n * j) // 3, width - 1) for j in (1, 2)]
    cut1, cut2 = low[rows, at[0]], low[rows, at[1]]
    d1, d2, d3 = cut1 - start_low, cut2 - cut1, end_low - cut2  # what each third rose
    span = times[:, -1] - times[rows, first]
    third = 0.25 * np.maximum(slope, 0) * span / 3
    throughout = (d1 >= third) & (d2 >= third) & (d3 >= third)
    with np.errstate(divide="ignore", invalid="ignore"):
        recent = np.where(times[:, -1] > times[rows, at[1]], (end_low - cut2) / (times[:, -1] - times[rows, at[1]]),
                          0.0)
    watched = np.ones(len(times), dtype=bool) if watched_from is None else first >= watched_from
    return Fit(slope, stderr, recent, span, end_low - start_low, throughout & (slope > 0) & (k > 2) & watched,
               _still_to_climb(d1, d2, d3), (d1 > d2) & (d2 > d3) & (d3 > 0))


def _still_to_climb(d1: np.ndarray, d2: np.ndarray, d3: np.ndarray) -> np.ndarray:
    """What a climb whose thirds rose d1, d2, d3 (each > 0) has still to rise if it keeps slowing down as it
    has (d3 < d1).

    Each third rising r = sqrt(d3/d1) times the one before (from the outer thirds: the middle one adds
    nothing, and the last alone is at the mercy of where a sawtooth riding the climb is in its cycle), the
    rest is the geometric series d3 (r + r^2 + ...) = d3 r / (1 - r): a warm-up approaching its plateau (an
    exponential approach is exactly that) is forecast to its plateau, not extrapolated at its pace. A climb
    not slowing down: inf."""
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.sqrt(d3 / d1)
        return np.where((d1 > 0) & (d2 > 0) & (d3 > 0) & (r < 1), d3 * r / (1 - r), np.inf)


def watched_since(times: np.ndarray, count: np.ndarray, max_gap: float) -> np.ndarray:
    """Per row, the first column after the last gap of more than `max_gap` seconds between samples.

    A climb is evidence only where it was watched: when the daemon is starved for seconds, samples from
    two cycles of a fast sawtooth, one late in each, look like one long climb. A climb across such a gap
    is not a trend; one that lasts min_span after it is.

    Every row is sampled at the same instants (one tick appends to all), so the gaps are looked for in
    one row, the one with the most samples, not in all of them (~0.8 ms a tick at 500 cgroups)."""
    width = times.shape[1]
    if not len(count) or width < 2:
        return np.zeros(len(count), dtype=np.intp)
    clock = times[int(np.argmax(count))]
    gaps = np.flatnonzero(np.diff(clock) > max_gap)  # gap k lies between columns k and k+1
    gaps = gaps[gaps >= width - int(count.max())]  # only between real samples
    if not len(gaps):
        return np.zeros(len(count), dtype=np.intp)
    last = int(gaps[-1])
    return np.where(last >= width - count, last + 1, 0)


def largest_fall(values: np.ndarray, low: np.ndarray, count: np.ndarray, held: int) -> np.ndarray:
    """Per row, the largest fall to a later low (`low`, the suffix minimum), from a level held `held`
    samples or more. A spike at its top for less than that is held too briefly to count (a leak after a
    spike must not have to outgrow the spike); a sawtooth's peak is not held either, but the climb to it
    was: its fall counts in full up to half again the held fall."""
    width = values.shape[1]
    floor = values[:, held - 1:].copy()
    for k in range(1, held):  # rolling minimum: the level held over the last `held` samples
        np.minimum(floor, values[:, held - 1 - k: width - k], out=floor)
    real = np.arange(held - 1, width)[None, :] >= (width - count + held - 1)[:, None]
    held_fall = np.where(real, floor - low[:, held - 1:], 0.0).max(axis=1)
    raw_fall = np.where(real, values[:, held - 1:] - low[:, held - 1:], 0.0).max(axis=1)
    return np.maximum(held_fall, np.minimum(raw_fall, 1.5 * held_fall))


def tooth_top(values: np.ndarray, low: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per row, the height a repeating tooth reaches: the second highest of the peaks that gave back at least
    TOOTH_FALL of their height over the window's lowest point (so reached, and given back, twice or more),
    plus TOOTH_MARGIN of its height for what the ticks did not catch; -inf where fewer than two teeth were seen.

    A peak is a sample above the one before and after it: the highest the tick caught of a tooth. Giving
    back is measured from that peak to the lowest point after it, not from a level held some ticks (a
    tooth of a few ticks holds no level)."""
    width = values.shape[1]
    if width < 3:
        return np.full(len(values), -np.inf)
    mid = values[:, 1:-1]
    real = np.arange(1, width - 1)[None, :] > (width - count)[:, None]  # the sample before it is real too
    floor = low[np.arange(len(low)), np.clip(width - count, 0, width - 1)]  # L at the oldest sample: the window's low
    height = mid - floor[:, None]
    peak = (mid >= values[:, :-2]) & (mid > values[:, 2:]) & real & (height > 0)
    given_back = mid - low[:, 2:] >= TOOTH_FALL * height
    tops = np.where(peak & given_back, mid, -np.inf)
    second = np.partition(tops, -2, axis=1)[:, -2]
    return np.where(np.isfinite(second), second + TOOTH_MARGIN * (second - floor), -np.inf)


class CgroupDetector:
    """All cgroups at once: their histories are rows of one ring of columns, fitted by numpy each tick.

    update_all() gets every cgroup of the tick (a cgroup missing from a tick is forgotten: no process of it
    is left) and judges them in a few vectorised passes per window rung; per-cgroup Python work is only
    building its Verdict. The history is a buffer of twice the window: a tick writes one column, and once
    every `window` ticks the latest window is copied back to the start (no per-tick shift of the matrix).
    """

    def __init__(self, config: DetectConfig, horizon_s: float, warn_horizon_s: float, floor_fraction: float):
        self.config = config
        self.horizon_s, self.warn_horizon_s, self.floor_fraction = horizon_s, warn_horizon_s, floor_fraction
        self._row: dict[str, int] = {}
        self._values = np.zeros((0, 2 * config.window))
        self._times = np.zeros((0, 2 * config.window))
        # L[t] = min(u[t..now]) kept up to date as samples come (a min with the new sample over the window
        # per tick, instead of a reversed running minimum over it: ~0.1 ms vs ~1.1 ms at 500 cgroups)
        self._low = np.zeros((0, 2 * config.window))
        self._end = config.window  # the column after the latest sample
        self._count = np.zeros(0, dtype=np.int64)
        self._giveback = np.zeros(0)  # the largest fall remembered, bytes, decaying from _giveback_at
        self._giveback_at = np.zeros(0)
        self._teeth = np.zeros(0)  # the height the cgroup's repeating teeth reach (tooth_top), -inf: none
        self._born = np.zeros(0)  # time of each row's first sample (again after a restart)
        self._ticks = 0

    @classmethod
    def for_policy(cls, config: Config) -> CgroupDetector:
        """The detector a policy asks for: [detect] and the horizons and floor of [alerts]."""
        alerts = config.alerts
        return cls(config.detect, alerts.horizon, alerts.warn_horizon, alerts.headroom_floor)

    def apply_policy(self, config: Config) -> None:
        """A reloaded policy's settings, every cgroup's history kept."""
        alerts = config.alerts
        self.reconfigure(config.detect, alerts.horizon, alerts.warn_horizon, alerts.headroom_floor)

    def reconfigure(self, config: DetectConfig, horizon_s: float, warn_horizon_s: float,
                    floor_fraction: float) -> None:
        """New settings, keeping every cgroup's history; a new window keeps the latest samples."""
        old = self.config.window
        kept = [self._window(b)[:, -min(old, config.window):] for b in (self._values, self._times)]
        self.config = config
        self.horizon_s, self.warn_horizon_s, self.floor_fraction = horizon_s, warn_horizon_s, floor_fraction
        if config.window == old:
            return
        keep = min(old, config.window)
        self._values, self._times = (self._rewindow(k, config.window) for k in kept)
        self._end = config.window
        self._count = np.minimum(self._count, keep)
        self._low = self._values.copy()
        window = self._window(self._values)
        self._window(self._low)[:] = np.minimum.accumulate(window[:, ::-1], axis=1)[:, ::-1]

    @staticmethod
    def _rewindow(kept: np.ndarray, window: int) -> np.ndarray:
        """A new buffer whose latest window ends with `kept`, padded before it with its oldest sample."""
        buffer = np.zeros((len(kept), 2 * window))
        buffer[:, window - kept.shape[1]: window] = kept
        buffer[:, : window - kept.shape[1]] = kept[:, :1]
        return buffer

    def _window(self, buffer: np.ndarray) -> np.ndarray:
        return buffer[:, self._end - self.config.window: self._end]

    def update(self, cgroup: str, now: float, usage: int, limit: int) -> Verdict:
        """One cgroup alone (tests, replays of one series): any other cgroup is forgotten."""
        return self.update_all([cgroup], now, np.array([usage], np.float64), np.array([limit], np.float64))[0]

    def _rows(self, cgroups: list[str], usage: np.ndarray, now: float) -> np.ndarray:
        self.forget(set(self._row) - set(cgroups))
        new = [c for c in cgroups if c not in self._row]
        if new:
            for c in new:
                self._row[c] = len(self._row)
            width = 2 * self.config.window
            self._values = np.vstack([self._values, np.zeros((len(new), width))])
            self._times = np.vstack([self._times, np.zeros((len(new), width))])
            self._low = np.vstack([self._low, np.zeros((len(new), width))])
            self._count = np.concatenate([self._count, np.zeros(len(new), dtype=np.int64)])
            self._giveback = np.concatenate([self._giveback, np.zeros(len(new))])
            self._giveback_at = np.concatenate([self._giveback_at, np.zeros(len(new))])
            self._teeth = np.concatenate([self._teeth, np.full(len(new), -np.inf)])
            self._born = np.concatenate([self._born, np.zeros(len(new))])
        rows = np.array([self._row[c] for c in cgroups], dtype=np.intp)
        fresh = rows[self._count[rows] == 0]
        if len(fresh):  # a new series starts flat at its first value: the padding is never a climb
            at = np.flatnonzero(self._count[rows] == 0)
            self._values[fresh] = self._low[fresh] = usage[at, None]
            self._times[fresh] = now
            self._born[fresh] = now
        return rows

    def _append(self, rows: np.ndarray, now: float, usage: np.ndarray) -> None:
        w = self.config.window
        if self._end == 2 * w:  # the buffer is full: the latest window moves back to the start
            self._values[:, :w], self._times[:, :w] = self._values[:, w:], self._times[:, w:]
            self._low[:, :w] = self._low[:, w:]
            self._end = w
        in_row_order = np.full(len(self._low), np.inf)
        in_row_order[rows] = usage  # every row, in practice: a cgroup missing from a tick was forgotten
        staying = self._low[:, self._end - w + 1: self._end]  # what stays in the window: L falls to the new sample
        np.minimum(staying, in_row_order[:, None], out=staying)
        self._values[rows, self._end], self._times[rows, self._end] = usage, now
        self._low[rows, self._end] = usage
        self._end += 1
        self._count[rows] = np.minimum(self._count[rows] + 1, w)

    def _learnt_giveback(self, now: float, fall: np.ndarray) -> np.ndarray:
        """The larger of this window's largest fall and the one remembered (halving every giveback_half_life)."""
        remembered = self._giveback * 0.5 ** ((now - self._giveback_at) / self.config.giveback_half_life)
        larger = fall >= remembered
        self._giveback = np.where(larger, fall, self._giveback)
        self._giveback_at = np.where(larger, now, self._giveback_at)
        return np.maximum(fall, remembered)

    def update_all(self, cgroups: list[str], now: float, usage: np.ndarray, limit: np.ndarray) -> list[Verdict]:
        c = self.config
        rows = self._rows(cgroups, usage, now)
        self._append(rows, now, usage)
        values, times, count = self._window(self._values), self._window(self._times), self._count
        low = self._window(self._low)  # L[t] = min(u[t..now])
        top = values.max(axis=1)  # the highest point of the window: a sawtooth's peaks reach the limit first
        # Falls are looked for every MIN_WINDOW ticks (a quarter of the detector's work when done every tick):
        # a fall stays in the window for `window` ticks, and a climb after it needs min_span to be a trend.
        self._ticks += 1
        if self._ticks % MIN_WINDOW == 1:
            fall = largest_fall(values, low, count, HELD)
            self._teeth = tooth_top(values, low, count)
        else:
            fall = np.zeros(len(values))
        giveback = self._learnt_giveback(now, fall)
        # a tooth no higher than the teeth before it is not a trend, however fast it rises
        above_teeth = values[:, -1] > self._teeth

        watched_from = watched_since(times, count, c.min_span / 2)
        best_late = np.full(len(values), np.inf)  # the earliest confident ETA of an established window
        best = np.zeros((5, len(values)))  # slope, eta, early, late, span of that window
        climbing = np.zeros(len(values), dtype=bool)
        lim = np.empty(len(values))  # in row order, as the fits are
        lim[rows] = limit
        headroom = np.maximum(lim - top, 0.0)  # the same for every rung: from the window's highest point
        trust = np.full(len(values), c.trust)
        levelling = np.zeros(len(values), dtype=bool)
        for w in reversed(window_ladder(c.window)):  # the longest first: it dates the climb's start
            f = fit_window(times, low, count, w, watched_from)
            if w == c.window:  # a climb starting after the cgroup's first minute is not its start-up
                trust = np.where(now - f.span - self._born >= STARTUP_S, c.settled_trust, c.trust)
            # The confident slope: the slope less `confidence` standard errors, and no faster than the
            # last third's (a warm-up that is levelling off is not extrapolated at its early pace).
            confident = np.minimum(f.slope - c.confidence * f.stderr, f.recent)
            with np.errstate(divide="ignore", invalid="ignore"):
                late = np.where(confident > 0, headroom / confident, np.inf)
                eta = headroom / f.slope
                early = headroom / (f.slope + c.confidence * f.stderr)
            climbs = ((f.span >= c.min_span) & f.climbs_throughout & (f.rise > GIVEBACK_MARGIN * giveback)
                      & (f.still_to_climb > headroom) & ~levelling & above_teeth)
            # the longest first: a climb levelling off below the limit silences the windows inside it
            levelling |= ((f.span >= c.min_span) & f.climbs_throughout & f.slowing
                          & (f.still_to_climb <= headroom))
            climbing |= climbs
            # A warning speaks of the next warn_horizon; the climb behind it must be worth that much trust
            # (warn_horizon / warn_trust: 7.5 min by default). A younger climb warns only when the limit is
            # nearer than a third of its age (NEAR_SHARE), else it speaks only as critical.
            speaks = ((late <= self.horizon_s) | (f.span >= self.warn_horizon_s / c.warn_trust)
                      | (late <= NEAR_SHARE * f.span))
            established = climbs & (late <= trust * f.span) & speaks
            better = established & (late < best_late)
            best_late = np.where(better, late, best_late)
            best = np.where(better[None, :], np.stack([f.slope, eta, early, late, f.span]), best)
        picked, climbing = best[:, rows], climbing[rows].tolist()
        return [self._verdict(cgroup, int(usage[i]), int(limit[i]), picked[:, i], float(giveback[rows[i]]),
                              climbing[i])
                for i, cgroup in enumerate(cgroups)]

    def _verdict(self, cgroup: str, usage: int, limit: int, best: np.ndarray, giveback: float,
                 climbing: bool) -> Verdict:
        slope, eta, early, late, span = best.tolist()
        under_floor = limit - usage < self.floor_fraction * limit
        if slope <= 0:
            return Verdict(cgroup, usage, limit, 0.0, None, CRITICAL if under_floor else "", under_floor=under_floor,
                           climbing=climbing)
        severity = (CRITICAL if under_floor or late <= self.horizon_s else
                    WARNING if late <= self.warn_horizon_s else "")
        return Verdict(cgroup, usage, limit, slope, eta, severity, (early, late), span, giveback, under_floor,
                       climbing)

    def history(self, cgroup: str) -> tuple[np.ndarray, np.ndarray]:
        """(times, usage) of the cgroup's samples in the window, oldest first; empty if it is not watched."""
        row = self._row.get(cgroup)
        if row is None:
            return np.zeros(0), np.zeros(0)
        count = int(self._count[row])
        return self._window(self._times)[row, -count:].copy(), self._window(self._values)[row, -count:].copy()

    def young(self, since: float, now: float) -> set[str]:
        """The cgroups whose history began after `since` and less than STARTUP_S before `now`: containers
        started (or restarted by an OOM kill) while watched, in their first minute."""
        young = (self._born > since) & (now - self._born < STARTUP_S)
        if not young.any():  # most ticks: none, found in O(cgroups) numpy without a Python loop
            return set()
        return {c for c, r in self._row.items() if young[r]}

    def restart(self, cgroups: Iterable[str]) -> None:
        """Start these cgroups' histories again at their next sample (an OOM kill is a regime change: the
        climb that led to it says nothing about what comes after). What they give back stays learnt."""
        rows = [self._row[c] for c in cgroups if c in self._row]
        self._count[rows] = 0

    def forget(self, cgroups: Iterable[str]) -> None:
        """Drop these cgroups' rows (gone cgroups must not grow the matrix forever)."""
        drop = sorted(self._row.pop(c) for c in cgroups if c in self._row)
        if not drop:
            return
        self._values, self._times = np.delete(self._values, drop, 0), np.delete(self._times, drop, 0)
        self._low = np.delete(self._low, drop, 0)
        self._count = np.delete(self._count, drop)
        self._giveback, self._giveback_at = np.delete(self._giveback, drop), np.delete(self._giveback_at, drop)
        self._teeth = np.delete(self._teeth, drop)
        self._born = np.delete(self._born, drop)
        keep = [r for r in range(len(self._count) + len(drop)) if r not in set(drop)]
        renumber = {old: new for new, old in enumerate(keep)}
        self._row = {c: renumber[r] for c, r in self._row.items()}

    def __len__(self) -> int:
        return len(self._row)
