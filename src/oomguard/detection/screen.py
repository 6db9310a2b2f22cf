"""Per-process growth screens: every process in one numpy pass per tick, flagging growth far above its own norm."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..arrays import carried, match
from ..sampling.rates import Rates
from ..units import format_bytes

# A culprit is ranked by how fast each process raises its RSS high-water mark, averaged over ~10 ticks
# (1/MARK_ALPHA, bias-corrected: a process 5 ticks old is judged on its 5 ticks). A leaker sets a new mark
# every tick; a sidecar's RSS sawtooth sets none after its first rise, so mid-rise it does not outrank the
# pod's leaker, as it did on a ~20-tick average of RSS growth (bench/detect.py "limit on the pod", 48 train
# runs: 40 named first on that average, 48 on the mark). ~10 ticks, not 20: a process that leaks after a
# long quiet life must show in the mark's rise within seconds, when an alert on a climb out of a settled
# level comes (96 train runs, pod limit: 98% named first at 0.05, 100% at 0.1, other classes unchanged).
MARK_ALPHA = 0.1


def sigma_screen(values: np.ndarray, mean: np.ndarray, var: np.ndarray, alpha: float,
                 sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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

    def update(self, pids: np.ndarray, rss_slope: np.ndarray,
               matched: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Mask over `pids` (sorted) of the processes flagged this tick. `matched`: `match(self.pid, pids)`
        when the caller has it (screens updated with the same pids share one match: ~0.3 ms at 10k pids)."""
        matched = matched if matched is not None else match(self.pid, pids)
        mean, var = carried(self.mean, matched, rss_slope), carried(self.var, matched, 0.0)
        self.mean, self.var, flagged = sigma_screen(rss_slope.astype(np.float64), mean, var, self.alpha, self.sigma)
        self.pid = pids
        return flagged & matched[1] & (rss_slope > self.min_growth)


class HighWater:
    """Each process's RSS high-water mark and how fast it rises (bytes/s): what names a culprit.

    A leak keeps what it takes, so its high-water mark rises with it; a
    process that frees and re-takes the same memory (a GC cycle, a sidecar's
    buffers) reaches its old mark again and raises it by nothing. Three
    floats per process.
    """

    def __init__(self) -> None:
        self.pid = np.zeros(0, dtype=np.uint32)
        self.mark = np.zeros(0)  # the highest RSS seen
        self.rise = np.zeros(0)  # the mark's rise per second, EWMA with MARK_ALPHA
        self.seen = np.zeros(0)  # ticks each process's mark could rise (not its first): the bias correction

    def update(self, pids: np.ndarray, rss: np.ndarray, interval_s: float,
               matched: tuple[np.ndarray, np.ndarray]) -> None:
        """One tick: `pids` sorted, `matched` = match(self.pid, pids). A process new this tick starts its mark
        at its RSS; its rise counts from the next tick."""
        mark, rise = carried(self.mark, matched, rss), carried(self.rise, matched, 0.0)
        self.seen = carried(self.seen + 1, matched, 0.0)
        self.rise = rise + MARK_ALPHA * (np.maximum(rss - mark, 0.0) / interval_s - rise)
        self.pid, self.mark = pids, np.maximum(mark, rss)

    def growth(self) -> np.ndarray:
        """The mark's rise in bytes/s per process, aligned with the last update's pids (0 in a process's
        first tick)."""
        weight = 1 - (1 - MARK_ALPHA) ** self.seen
        return np.divide(self.rise, weight, out=np.zeros(len(self.rise)), where=weight > 0)


SIGNALS = ("RSS", "page allocations", "kmalloc")  # what each screen watches, as alerts name it


def _signal_values(rates: Rates) -> dict[str, np.ndarray]:
    return {"RSS": rates.rss_bytes_per_s, "page allocations": rates.page_bytes_per_s,
            "kmalloc": rates.kmalloc_bytes_per_s}


class Screens:
    """One PidScreen per signal (RSS growth, page and kmalloc rates), over every process each tick."""

    def __init__(self, sigma: float):
        self.screens = {name: PidScreen(sigma=sigma) for name in SIGNALS}
        self.high_water = HighWater()

    def reconfigure(self, sigma: float) -> None:
        for screen in self.screens.values():
            screen.sigma = sigma

    def update(self, rates: Rates) -> dict[str, np.ndarray]:
        """Per signal, the mask of processes flagged this tick."""
        values = _signal_values(rates)
        matched = match(self.screens["RSS"].pid, rates.pid)  # every screen saw the same pids last tick
        self.high_water.update(rates.pid, rates.rss_bytes.astype(np.float64), rates.interval_s, matched)
        return {name: screen.update(rates.pid, values[name], matched) for name, screen in self.screens.items()}

    def smoothed(self) -> dict[str, np.ndarray]:
        """Per signal, each process's smoothed value (aligned with the last update's pids): what names a
        culprit. RSS growth as the rise of each process's high-water mark, the allocation rates as the screen
        averages them."""
        return {name: self.high_water.growth() if name == "RSS" else screen.mean
                for name, screen in self.screens.items()}

    @staticmethod
    def notes(rates: Rates, rows: list[int], flagged: dict[str, np.ndarray], command_of: Callable[[int], str]) -> str:
        """The flagged processes among `rows`, for an alert's explanation."""
        values = _signal_values(rates)
        notes = []
        any_flag = np.logical_or.reduce(list(flagged.values())) if flagged else np.zeros(len(rates.pid), bool)
        for i in np.asarray(rows, dtype=np.intp)[any_flag[rows]].tolist():  # only the flagged: a few, not all
            signals = [f"{name} +{format_bytes(values[name][i])}/s" for name, mask in flagged.items() if mask[i]]
            if signals:
                pid = int(rates.pid[i])
                notes.append(f"pid {pid} ({command_of(pid)}) {', '.join(signals)}, far above its own norm")
        return "; ".join(notes[:5])
