"""Per-process allocation rates from successive cumulative snapshots (numpy, vectorised)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import AllocSnapshot


def values_for(keys: np.ndarray, values: np.ndarray, wanted: np.ndarray, missing=0) -> np.ndarray:
    """values[i] for the i with keys[i] == w, for each w in `wanted`; `missing` where absent."""
    out = np.full(len(wanted), missing, dtype=values.dtype)
    if len(keys) == 0 or len(wanted) == 0:
        return out
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    pos = np.minimum(np.searchsorted(sorted_keys, wanted), len(keys) - 1)
    found = sorted_keys[pos] == wanted
    out[found] = values[order[pos[found]]]
    return out


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

    def top(self, n: int, by: str = "page_bytes_per_s") -> np.ndarray:
        """Indices of the n processes with the highest value of `by`, highest first."""
        key = getattr(self, by)
        return np.argsort(-key, kind="stable")[:n]


def interval_rates(previous: AllocSnapshot | None, current: AllocSnapshot) -> Rates | None:
    """Rates from the change between two snapshots; None on the first one.

    A pid absent from `previous` (new, or evicted and re-inserted by the LRU
    map) counts from zero. A counter that went down means the map entry was
    evicted and re-created in between: its delta is taken from zero too.
    """
    if previous is None:
        return None
    interval = current.monotonic_s - previous.monotonic_s
    if interval <= 0:
        return None

    def delta(field: str) -> np.ndarray:
        now = getattr(current, field).astype(np.int64)
        before = values_for(previous.pid, getattr(previous, field).astype(np.int64), current.pid)
        return np.where(now >= before, now - before, now)

    return Rates(
        interval_s=interval,
        pid=current.pid,
        kmalloc_bytes_per_s=delta("kmalloc_bytes") / interval,
        page_bytes_per_s=delta("page_bytes") / interval,
        kmalloc_samples=delta("kmalloc_samples"),
        page_samples=delta("page_samples"),
        rss_bytes=current.rss_bytes,
    )
