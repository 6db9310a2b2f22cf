"""Who explains a cgroup's climb: the processes (and containers) named in an alert, each with its share.

The per-process signals are the screens' smoothed rates, from the eBPF
maps: how fast each process raises its RSS high-water mark, averaged over
~10 ticks (screen.HighWater: a sidecar's RSS sawtooth re-takes what it gave
back and raises no mark), its page and kmalloc allocation rates over ~10.
RSS growth is what a leak leaves behind, so it ranks first: a busy healthy
process allocates far more than a leaker but frees it, and its RSS stays
flat. RSS growth ranks when the processes' marks rise by RSS_SHARE of the
cgroup's climb. Otherwise the memory is one no
process maps, and what the processes hold open (read from /proc only for a
cgroup an alert is about) ranks: shared memory (a memfd or tmpfs file
written with write()) if they hold some, else the descriptors each opened
(net) since the climb was first seen (or the container started) if one
opened MIN_OPENED_PER_S or more (sockets and files never closed keep kernel
memory charged; descriptors.OpenedSince), else open descriptors if one
holds more than MIN_DESCRIPTORS, else RSS growth again if the marks rise
MIN_GROWTH at all (a leaker whose growth is a small part of a young climb
that healthy processes' sawtooths, rising together, steepened), else the
allocation rates. The alert says which signal ranked. Allocation rates
cannot name a memfd writer or a socket leaker among busy processes, whose
allocations are many times larger and freed; what a process holds open, it
keeps.

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
SHARED_HELD, DESCRIPTORS = "shared memory held (memfd/tmpfs)", "open files and sockets"
OPENED = "files and sockets opened since the climb or container began"
MIN_GROWTH = 256 * 1024  # bytes/s of RSS growth, all processes together, before RSS growth is the ranking signal
MIN_HELD = 1 << 20  # bytes of shared memory held, all processes together, before holdings rank
# Of the cgroup's climb (the verdict's slope) that the processes' RSS growth must make up to be the ranking
# signal: below it, the memory is one no process maps (memfd, kernel). Not 0.5: the slope of a young climb
# includes a sidecar's rise, which raises no mark (bench/detect.py train, 48 runs: "limit on the pod" 33
# named first at 0.5, 48 at 0.25; memfd 48 at 0.25, 34 at 0; kernel memory 47 at 0.25, 45 at 0.1).
RSS_SHARE = 0.25
# Open descriptors one process must hold before descriptors rank: the default soft RLIMIT_NOFILE, so a
# process past it has raised its limit; a busy server holding more outranks a leaker that holds fewer.
MIN_DESCRIPTORS = 1024
# Descriptors one process must have opened per second, net of those it closed, since its cgroup's climb was
# first seen (or its container started), before that growth ranks: a leak of kernel memory through them opens
# tens to thousands a second (a 1-4 KiB socket or file each); a server's connections come and go.
MIN_OPENED_PER_S = 1.0
TOP = 5


@dataclass(frozen=True)
class Culprit:
    pid: int
    share: float  # of the signal summed over the cgroup's processes
    signal: str  # RSS_GROWTH, ALLOCATION, SHARED_HELD, OPENED or DESCRIPTORS
    amount: float  # bytes/s for the two rates, bytes for SHARED_HELD, a count per second for OPENED, a count
    # for DESCRIPTORS
    command: str = ""  # filled in by whoever knows the process (groups.explained)


# What the processes hold open, by pid: (shared memory bytes, open descriptors, descriptors opened per second
# since the climb was first seen), in the pids' order.
Holdings = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Share:
    """A container's part of its limiting cgroup's growth (a limit on a pod spans several)."""

    name: str
    share: float


def name_culprits(pids: np.ndarray, rss_growth: np.ndarray, page_rate: np.ndarray, kmalloc_rate: np.ndarray,
                  top: int = TOP, min_growth: float = MIN_GROWTH, climb: float = 0.0,
                  held: Holdings | None = None) -> tuple[Culprit, ...]:
    """The processes that explain the growth, largest share first (at most `top`). RSS growth explains a
    cgroup climbing `climb` bytes/s when the processes' RSS growth is at least RSS_SHARE of it (and
    min_growth): a little RSS noise must not outrank a memfd writer. `held` is asked only when RSS explains
    nothing."""
    growth = np.maximum(rss_growth, 0.0)
    signal, score = RSS_GROWTH, growth
    if float(rss_growth.sum()) < max(min_growth, RSS_SHARE * climb):
        shared, descriptors, opened = held(pids) if held is not None else np.zeros((3, len(pids)))
        if shared.sum() >= MIN_HELD:
            signal, score = SHARED_HELD, shared.astype(float)
        elif len(opened) and opened.max() >= MIN_OPENED_PER_S:
            signal, score = OPENED, np.maximum(opened, 0.0)
        elif len(descriptors) and descriptors.max() > MIN_DESCRIPTORS:
            signal, score = DESCRIPTORS, descriptors.astype(float)
        elif float(growth.sum()) < min_growth:
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
    return ", ".join(f"pid {c.pid} ({c.command or '?'}) {c.share:.0%} of {c.signal} ({_amount(c)})"
                     for c in culprits)


def _amount(culprit: Culprit) -> str:
    if culprit.signal == SHARED_HELD:
        return format_bytes(culprit.amount)
    if culprit.signal == DESCRIPTORS:
        return f"{culprit.amount:,.0f} open"
    if culprit.signal == OPENED:
        return f"+{culprit.amount:,.0f}/s"
    return f"+{format_bytes(culprit.amount)}/s"
