"""What each process of a climbing cgroup has opened since its climb was first seen, or its container started:
descriptors' growth.

A socket or file never closed keeps kernel memory charged to the cgroup,
and no RSS shows it. How many descriptors a process holds names it only
when it holds more than everyone else; a busy server holding its clients'
connections holds more than a leaker early in its leak (bench/detect.py's
kernel-memory class: a server holding 11,800-16,200 connections beside a
leaker at 7,800-10,900). What a process
opened since its cgroup began to climb, net of what it closed, names the
leaker: the server opens no more than it closes.

A container started while the daemon watches is counted in its first
minute too, before any climb: a leak from its first second can be alerted
on the very tick its climb is first seen, with no earlier count to compare.
Its processes are then counted at the container's start, and kept
while it climbs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..identity.procfs import open_descriptors

# Time spent counting per tick: a climbing cgroup of many processes is counted over a few ticks. One count
# takes ~20 us at 40 fds, ~0.4 ms at 1,000 and 3.7-7.0 ms at 9,000 (bench/descriptor_cost.py, two runs):
# 256 processes of 1,000 fds at once would be ~0.1 s, of 9,000 ~1-2 s.
BUDGET_S = 0.02
# A count outlives its cgroup's climb this long: a climb seen on one tick and not the next (a sawtooth's
# trough, a tick's noise) is still one climb, and a count taken again would make "opened since" start over.
KEEP_S = 15.0


class OpenedSince:
    """Per process of a climbing cgroup, its open-descriptor count and when it was taken (once per climb)."""

    def __init__(self, count: Callable[[int], int | None] = open_descriptors,
                 clock: Callable[[], float] = time.perf_counter):
        self.count, self.clock = count, clock
        self.since: dict[int, tuple[float, int]] = {}  # pid -> (when, open descriptors then)
        self._watched_at: dict[int, float] = {}  # pid -> when it was last among the climbing cgroups'

    def update(self, now: float, pids: Iterable[int]) -> None:
        """This tick's processes of climbing (or young) cgroups, most urgent first: a new one is
        counted, one whose cgroup has not climbed for KEEP_S (or that is gone) is forgotten. One read of
        /proc/PID/fd per process per climb, for at most BUDGET_S a tick (at least one process); the rest are
        counted on the next ticks."""
        watched = dict.fromkeys(pids)  # in order, once each
        self._watched_at.update(dict.fromkeys(watched, now))
        self._watched_at = {pid: at for pid, at in self._watched_at.items() if now - at < KEEP_S}
        self.since = {pid: seen for pid, seen in self.since.items() if pid in self._watched_at}
        started = self.clock()
        for pid in [p for p in watched if p not in self.since]:
            count = self.count(pid)
            if count is not None:
                self.since[pid] = (now, count)
            if self.clock() - started >= BUDGET_S:
                break

    def rate(self, pid: int, now: float, count: int) -> float:
        """Descriptors opened net per second since the climb was first seen (or the container started),
        holding `count` now; 0 when it was not counted then, or less than a second ago."""
        seen = self.since.get(pid)
        if seen is None or now - seen[0] < 1.0:
            return 0.0
        return (count - seen[1]) / (now - seen[0])
