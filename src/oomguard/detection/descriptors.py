"""What each process of a climbing cgroup has opened since the climb was first seen: descriptors' growth.

A socket or file never closed keeps kernel memory charged to the cgroup,
and no RSS shows it. How many descriptors a process holds names it only
when it holds more than everyone else; a busy server holding its clients'
connections holds more than a leaker early in its leak (bench/detect.py,
held-out 5,000,000..: 2 of 12 kernel-memory runs named a server holding
11,800-16,200 connections over a leaker at 7,800-10,900). What a process
opened since its cgroup began to climb, net of what it closed, names the
leaker: the server opens no more than it closes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..identity.procfs import open_descriptors

MAX_NEW = 256  # processes counted per tick: a climbing cgroup of thousands is counted over a few ticks


class OpenedSince:
    """Per process of a climbing cgroup, its open-descriptor count and when it was taken (once per climb)."""

    def __init__(self, count: Callable[[int], int | None] = open_descriptors):
        self.count = count
        self.since: dict[int, tuple[float, int]] = {}  # pid -> (when, open descriptors then)

    def update(self, now: float, pids: Iterable[int]) -> None:
        """This tick's processes of climbing cgroups: a new one is counted, one whose cgroup no longer climbs
        (or that is gone) is forgotten. One read of /proc/PID/fd per process per climb."""
        climbing = set(pids)
        self.since = {pid: seen for pid, seen in self.since.items() if pid in climbing}
        for pid in sorted(climbing - self.since.keys())[:MAX_NEW]:
            count = self.count(pid)
            if count is not None:
                self.since[pid] = (now, count)

    def rate(self, pid: int, now: float, count: int) -> float:
        """Descriptors opened net per second since the climb was first seen, holding `count` now; 0 when it
        was not counted then, or less than a second ago."""
        seen = self.since.get(pid)
        if seen is None or now - seen[0] < 1.0:
            return 0.0
        return (count - seen[1]) / (now - seen[0])
