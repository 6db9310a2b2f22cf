"""Per-process allocation rates from successive cumulative snapshots (numpy, vectorised)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from ..arrays import match
from ..bpf.events import AllocSnapshot


@dataclass(frozen=True)
class Rates:
    """Per-process rates over one interval, aligned and sorted by pid."""

    interval_s: float
    pid: np.ndarray
    kmalloc_bytes_per_s: np.ndarray
    page_bytes_per_s: np.ndarray
    kmalloc_samples: np.ndarray  # samples behind each estimate in this interval
    page_samples: np.ndarray
    rss_bytes: np.ndarray
    rss_bytes_per_s: np.ndarray  # RSS slope over the interval (0 for a process new this interval)

    def select(self, keep: np.ndarray) -> Rates:
        """The rows where `keep` (a boolean mask) is true."""
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name != "interval_s"})

    def busiest(self, n: int) -> np.ndarray:
        """Indices of the (at most) n processes allocating most (kmalloc + page bytes/s), busiest first."""
        total = self.kmalloc_bytes_per_s + self.page_bytes_per_s
        order = np.argsort(-total, kind="stable")[:n]
        return order[total[order] > 0]

    @staticmethod
    def relative_error(samples: np.ndarray) -> np.ndarray:
        """One standard error of a rate estimate, relative to it, from its sample count.

        Sampling 1 in N, an estimate from k samples has relative standard
        deviation sqrt((N-1)/events) <= 1/sqrt(k); inf where nothing was sampled.
        """
        with np.errstate(divide="ignore"):
            return 1.0 / np.sqrt(samples.astype(np.float64))


def interval_rates(previous: AllocSnapshot | None, current: AllocSnapshot) -> Rates | None:
    """Rates from the change between two snapshots; None on the first one.

    The interval is the real time between the two reads, so a late tick
    gives the average rate over its longer interval, not a spike.
    A pid absent from `previous` (new, or evicted and re-inserted by the LRU
    map) counts from zero. A counter that went down means the map entry was
    evicted and re-created in between: its delta is taken from zero too.
    """
    if previous is None:
        return None
    interval = current.monotonic_s - previous.monotonic_s
    if interval <= 0:
        return None

    pos, found = match(previous.pid, current.pid)  # snapshots are sorted by pid: one join for all fields

    def before(field: str) -> np.ndarray:
        """The previous value for each current pid (anything where not found: masked by `found`)."""
        values = getattr(previous, field)
        return values[pos] if len(values) else np.zeros(len(current.pid), dtype=values.dtype)

    def delta(field: str) -> np.ndarray:
        now = getattr(current, field).astype(np.int64)
        then = np.where(found, before(field).astype(np.int64), 0)
        return np.where(now >= then, now - then, now)

    rss_before = before("rss_bytes")
    rss_slope = np.where(found, current.rss_bytes - rss_before, 0) / interval
    return Rates(
        interval_s=interval,
        pid=current.pid,
        kmalloc_bytes_per_s=delta("kmalloc_bytes") / interval,
        page_bytes_per_s=delta("page_bytes") / interval,
        kmalloc_samples=delta("kmalloc_samples"),
        page_samples=delta("page_samples"),
        rss_bytes=current.rss_bytes,
        rss_bytes_per_s=rss_slope,
    )


class RateTracker:
    """Turns successive snapshots into Rates and says which processes have exited.

    Exited processes (in the snapshot, not alive) still get their last
    interval's rates; the caller deletes them from the BPF maps so neither
    the maps nor this state grow without bound. The previous snapshot is
    the only state kept.
    """

    def __init__(self) -> None:
        self._previous: AllocSnapshot | None = None

    def update(self, snapshot: AllocSnapshot, live: np.ndarray) -> tuple[Rates | None, np.ndarray]:
        rates = interval_rates(self._previous, snapshot)
        gone = ~np.isin(snapshot.pid, live, assume_unique=True)
        # Forget the exited now: a new process that reuses the pid starts from zero.
        self._previous = snapshot.select(~gone)
        return rates, snapshot.pid[gone]
