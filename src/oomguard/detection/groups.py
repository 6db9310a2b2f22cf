"""Per tick: the processes grouped under the memory cgroup whose limit binds them — the detector's subjects.

A Subject is one limiting cgroup at one tick: its usage and limit, its
processes and their rates, and who owns the busiest. It is what the detector
judges, what an alert describes, what `record` keeps and what the exporter
shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from ..arrays import match
from ..identity.attribution import Attribution, attribute
from ..identity.cgroup import Headroom, MemoryCgroup, headroom
from ..identity.owners import Owners
from ..identity.pods import PodNames
from ..identity.procfs import Held, held_open, meminfo
from ..sampling.rates import Rates
from .culprit import TOP, Culprit, Share, container_shares, name_culprits
from .descriptors import OpenedSince
from .detector import CgroupDetector, Verdict
from .screen import Screens

HOST = MemoryCgroup(0, "/")  # the whole machine, for processes no cgroup limits
ReadHeadroom = Callable[[MemoryCgroup], "Headroom | None"]
# Processes whose open files are read when no RSS growth explains a climb (once per alert message), the
# busiest allocators first: a container rarely runs more; on the host subject the rest count as holding nothing.
HELD_SCANNED = 256


@dataclass(frozen=True)
class Subject:
    """One limiting memory cgroup at one tick and the processes it binds."""

    cgroup: str  # where the limit is set ("/" for the host)
    usage: int  # working set, bytes
    limit: int
    pids: tuple[int, ...]
    command: str  # the busiest process's
    attribution: Attribution | None
    pod: PodNames | None
    kmalloc_bytes_per_s: float
    page_bytes_per_s: float
    rss_bytes: int
    sample_rates: tuple[int, int]
    notes: str = ""  # processes the per-process screen flagged
    culprits: tuple[Culprit, ...] = ()  # who explains the growth, largest share first
    containers: tuple[Share, ...] = ()  # each container's share, when the limit spans several (a pod's)


@dataclass(frozen=True)
class Group:
    """The processes one memory limit binds."""

    cgroup: MemoryCgroup  # where the limit is set
    room: Headroom
    rows: list[int]  # indices into the tick's Rates


def limiting_cgroup(cgroup: MemoryCgroup, read: ReadHeadroom = headroom) -> tuple[MemoryCgroup, Headroom] | None:
    """The cgroup that sets the effective limit over `cgroup`, with its own usage; None without a limit."""
    room = read(cgroup)
    if room is None or room.limit_bytes is None or room.limited_at is None:
        return None
    if room.limited_at != cgroup.path:
        cgroup = MemoryCgroup(cgroup.version, room.limited_at)
        room = read(cgroup)
        if room is None or room.limit_bytes is None:
            return None
    return cgroup, room


def group_by_limit(rates: Rates, owners: Owners, read: ReadHeadroom = headroom) -> list[Group]:
    """Each process with a memory limit, grouped under the cgroup that sets it; one read per cgroup per tick."""
    index, leaves = owners.directory.cgroups_of(rates.pid)  # vectorised: no Python step per process
    order = np.argsort(index, kind="stable")  # stable: each cgroup's rows stay in pid order
    starts = np.flatnonzero(np.diff(index[order], prepend=-2))
    by_leaf = {leaves[int(index[order[a]])]: order[a:b].tolist()
               for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(order)], strict=True)
               if index[order[a]] >= 0}
    groups: dict[str, Group] = {}
    for leaf, rows in by_leaf.items():
        found = limiting_cgroup(leaf, read)
        if found is None:
            continue
        cgroup, room = found
        if cgroup.path in groups:
            groups[cgroup.path].rows.extend(rows)
        else:
            groups[cgroup.path] = Group(cgroup, room, list(rows))
    return list(groups.values())


def host_group(rates: Rates, groups: list[Group], read_meminfo: Callable[[], dict[str, int]] = meminfo) -> Group | None:
    """The processes under no memory limit, against the host's memory (MemTotal, MemAvailable)."""
    free = np.ones(len(rates.pid), dtype=bool)
    for g in groups:
        free[g.rows] = False
    rows = np.flatnonzero(free).tolist()
    info = read_meminfo()
    if not rows or "MemTotal" not in info or "MemAvailable" not in info:
        return None
    total = info["MemTotal"]
    return Group(HOST, Headroom(total - info["MemAvailable"], total, "/"), rows)


def subject_of(group: Group, rates: Rates, sample_rates: tuple[int, int], owners: Owners, notes: str) -> Subject:
    rows = np.array(group.rows)
    total = rates.kmalloc_bytes_per_s[rows] + rates.page_bytes_per_s[rows]
    busiest = owners.owner_of(int(rates.pid[rows[int(np.argmax(total))]]))
    assert group.room.limit_bytes is not None  # groups are made only under a limit
    return Subject(
        cgroup=group.cgroup.path, usage=group.room.usage_bytes, limit=group.room.limit_bytes,
        pids=tuple(rates.pid[rows].tolist()), command=busiest.command,  # tolist: ~5x faster than int() each
        attribution=busiest.attribution, pod=busiest.pod,
        kmalloc_bytes_per_s=float(rates.kmalloc_bytes_per_s[rows].sum()),
        page_bytes_per_s=float(rates.page_bytes_per_s[rows].sum()),
        rss_bytes=int(rates.rss_bytes[rows].sum()), sample_rates=sample_rates, notes=notes)


def judge(detector: CgroupDetector, subjects: Sequence[Subject], now: float) -> list[Verdict]:
    """Every subject's verdict this tick, in one vectorised pass of the detector (in the subjects' order)."""
    return detector.update_all([s.cgroup for s in subjects], now,
                               np.array([s.usage for s in subjects], dtype=np.float64),
                               np.array([s.limit for s in subjects], dtype=np.float64))


def explained(subject: Subject, rates: Rates, owners: Owners, smoothed: dict[str, np.ndarray], climb: float = 0.0,
              held: Callable[[int], Held] = held_open, opened: OpenedSince | None = None,
              now: float = 0.0) -> Subject:
    """The subject with its culprits and container shares: worked out only for a subject an alert is about,
    whose kept memory climbs `climb` bytes/s. `opened`: the descriptors each process held when the climb
    was first seen, for what it opened per second since (at `now`)."""
    pos, found = match(rates.pid, np.array(subject.pids, dtype=rates.pid.dtype))
    rows = pos[found]

    def holdings(pids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pids: those of `rows`, in order
        shared, descriptors, growth = np.zeros(len(pids)), np.zeros(len(pids)), np.zeros(len(pids))
        busiest = np.argsort(-(rates.page_bytes_per_s[rows] + rates.kmalloc_bytes_per_s[rows]))[:HELD_SCANNED]
        for i in busiest.tolist():  # a writer's pages are allocations too: the busiest allocators first
            pid = int(pids[i])
            found = held(pid)
            shared[i], descriptors[i] = found.shared_bytes, found.descriptors
            growth[i] = opened.rate(pid, now, found.descriptors) if opened is not None else 0.0
        return shared, descriptors, growth

    everyone = name_culprits(rates.pid[rows], smoothed["RSS"][rows], smoothed["page allocations"][rows],
                             smoothed["kmalloc"][rows], top=len(rows), climb=climb, held=holdings)

    def container_of(pid: int) -> str:
        owner = owners.owner_of(pid)
        return owner.container or owner.container_id[:12]

    containers = container_shares(everyone, container_of) if subject.cgroup != HOST.path else ()
    named = tuple(replace(c, command=owners.owner_of(c.pid).command) for c in everyone[:TOP])
    if containers:  # a limit over several containers (a pod's): the alert is the pod's, not its busiest one's
        pod = replace(subject.pod, container=None) if subject.pod else None
        subject = replace(subject, attribution=attribute(subject.cgroup), pod=pod)
    return replace(subject, culprits=named, containers=containers)


def subjects(rates: Rates, sample_rates: tuple[int, int], owners: Owners, flagged: dict[str, np.ndarray],
             read: ReadHeadroom = headroom) -> list[Subject]:
    """Every limiting cgroup this tick (and the host, for processes under no limit) as a Subject."""
    groups = group_by_limit(rates, owners, read)
    host = host_group(rates, groups)

    def command_of(pid: int) -> str:
        return owners.owner_of(pid).command

    return [subject_of(g, rates, sample_rates, owners, Screens.notes(rates, g.rows, flagged, command_of))
            for g in groups + ([host] if host else [])]
