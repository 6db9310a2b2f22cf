"""Who explains a cgroup's climb: the processes (and containers) named in an alert, each with its share.

The per-process signals are the screens' smoothed rates (an EWMA over
~10 s of each process's RSS growth, page and kmalloc allocation rates, from
the eBPF maps). RSS growth is what a leak leaves behind, so it ranks first:
a busy healthy process allocates far more than a leaker but frees it, and
its RSS stays flat. Memory no process maps (a memfd or tmpfs written with
write(), sockets, dentries) shows in no RSS: when the cgroup's processes
together grow their RSS by less than `min_growth`, the allocation rates
rank instead, and the alert says so.

>>> named = name_culprits(np.array([10, 11, 12]), np.array([0.0, 3e6, 1e6]), np.array([9e7, 3e6, 1e6]),
...                       np.zeros(3))
>>> [(c.pid, round(c.share, 2), c.signal) for c in named]
[(11, 0.75, 'RSS growth'), (12, 0.25, 'RSS growth')]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..units import format_bytes

RSS_GROWTH, ALLOCATION = "RSS growth", "allocation rate"
MIN_GROWTH = 256 * 1024  # bytes/s of RSS growth, all processes together, before RSS growth is the ranking signal
TOP = 5


@dataclass(frozen=True)
class Culprit:
    pid: int
    share: float  # of the signal summed over the cgroup's processes
    signal: str  # RSS_GROWTH or ALLOCATION
    bytes_per_s: float
    command: str = ""  # filled in by whoever knows the process (groups.explained)


@dataclass(frozen=True)
class Share:
    """A container's part of its limiting cgroup's growth (a limit on a pod spans several)."""

    name: str
    share: float


def name_culprits(pids: np.ndarray, rss_growth: np.ndarray, page_rate: np.ndarray, kmalloc_rate: np.ndarray,
                  top: int = TOP, min_growth: float = MIN_GROWTH) -> tuple[Culprit, ...]:
    """The processes that explain the growth, largest share first (at most `top`)."""
    growth = np.maximum(rss_growth, 0.0)
    signal, score = RSS_GROWTH, growth
    if growth.sum() < min_growth:
        signal, score = ALLOCATION, np.maximum(page_rate, 0.0) + np.maximum(kmalloc_rate, 0.0)
    total = float(score.sum())
    if total <= 0:
        return ()
    order = np.argsort(-score, kind="stable")[:top]
    return tuple(Culprit(int(pids[i]), float(score[i]) / total, signal, float(score[i]))
                 for i in order.tolist() if score[i] > 0)


def container_shares(culprits: tuple[Culprit, ...], container_of: Callable[[int], str]) -> tuple[Share, ...]:
    """Shares summed by container (pass every process's, not only the top), largest first; empty when the
    processes all share one container."""
    shares: dict[str, float] = {}
    for c in culprits:
        name = container_of(c.pid) or "no container"
        shares[name] = shares.get(name, 0.0) + c.share
    if len(shares) < 2:
        return ()
    return tuple(Share(n, s) for n, s in sorted(shares.items(), key=lambda kv: -kv[1]))


def culprit_text(culprits: tuple[Culprit, ...]) -> str:
    """'pid 42 (java) 83% of RSS growth (+2.1MiB/s), ...' for an alert."""
    return ", ".join(f"pid {c.pid} ({c.command or '?'}) {c.share:.0%} of {c.signal} "
                     f"(+{format_bytes(c.bytes_per_s)}/s)" for c in culprits)
