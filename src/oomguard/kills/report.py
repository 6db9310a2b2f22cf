"""OOM kills, attributed: the ring-buffer event matched with the kernel log line and the victim's owner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..bpf.events import OomKill
from ..identity.attribution import Attribution
from ..identity.cgroup import MemoryCgroup, cgroup_limit, default_memory_version
from ..identity.owners import Owners
from ..identity.pods import PodNames
from .kmsg import KernelOomRecord

MATCH_WINDOW_S = 1.0  # how long a ring-buffer kill waits for its kernel log line


@dataclass(frozen=True)
class KillReport:
    kill: OomKill | None  # None: seen only in the kernel log (ring buffer lost it)
    record: KernelOomRecord | None  # None: no kernel log line (unreadable, or rate-limited)
    attribution: Attribution | None
    pod: PodNames | None
    limit_bytes: int | None  # the limit that was hit (of record.oom_memcg), None: none or unknown
    mismatch: str | None  # what the two sources disagree on, if anything

    def __post_init__(self) -> None:
        if self.kill is None and self.record is None:
            raise ValueError("a KillReport needs the ring-buffer event, the kernel log line, or both")

    @property
    def pid(self) -> int:
        if self.kill is not None:
            return self.kill.victim_pid
        assert self.record is not None  # __post_init__
        return self.record.pid

    @property
    def comm(self) -> str:
        if self.kill is not None:
            return self.kill.victim_comm
        assert self.record is not None
        return self.record.task

    @property
    def cgroup(self) -> str | None:
        """The victim's cgroup path, when known."""
        return self.attribution.cgroup_path if self.attribution else None


def cross_check(kill: OomKill, record: KernelOomRecord) -> str | None:
    if kill.victim_comm[:15] != record.task[:15]:
        return f"ring buffer says comm {kill.victim_comm!r}, kernel log says {record.task!r}"
    if record.uid is not None and record.uid != kill.victim_uid:
        return f"ring buffer says uid {kill.victim_uid}, kernel log says {record.uid}"
    return None


class KillCorrelator:
    """Pairs ring-buffer kills with kernel log lines by pid, waiting up to MATCH_WINDOW_S for the other half."""

    def __init__(self, window_s: float = MATCH_WINDOW_S):
        self.window_s = window_s
        self._kills: dict[int, tuple[OomKill, float]] = {}
        self._records: dict[int, tuple[KernelOomRecord, float]] = {}

    def add_kill(self, kill: OomKill, now: float) -> None:
        self._kills[kill.victim_pid] = (kill, now)

    def add_record(self, record: KernelOomRecord, now: float) -> None:
        self._records[record.pid] = (record, now)

    def ready(self, now: float) -> list[tuple[OomKill | None, KernelOomRecord | None]]:
        """Pairs complete now, and halves whose partner did not come within the window."""
        out: list[tuple[OomKill | None, KernelOomRecord | None]] = []
        for pid in list(self._kills):
            kill, seen = self._kills[pid]
            if pid in self._records:
                out.append((kill, self._records.pop(pid)[0]))
                del self._kills[pid]
            elif now - seen >= self.window_s:
                out.append((kill, None))
                del self._kills[pid]
        for pid in list(self._records):
            record, seen = self._records[pid]
            if now - seen >= self.window_s:
                out.append((None, record))
                del self._records[pid]
        return out


class KillAttributor:
    """Builds the KillReport: the victim's owner from the identity cache, pod names, the limit that was hit."""

    def __init__(self, owners: Owners, read_limit: Callable[[MemoryCgroup], int | None] = cgroup_limit):
        self.owners, self.read_limit = owners, read_limit

    def report(self, kill: OomKill | None, record: KernelOomRecord | None) -> KillReport:
        pid = kill.victim_pid if kill else record.pid if record else 0
        # Gone before we saw it: the kernel log still names its cgroup.
        owner = self.owners.known_owner(pid, record.task_memcg if record else None)
        known_cgroup = owner.cgroup if owner else None
        version = known_cgroup.version if known_cgroup else default_memory_version()
        if record and record.oom_memcg is not None:
            limit = self.read_limit(MemoryCgroup(version, record.oom_memcg))
        elif known_cgroup is not None:
            limit = self.read_limit(known_cgroup)
        else:
            limit = None
        return KillReport(kill=kill, record=record, attribution=owner.attribution if owner else None,
                          pod=owner.pod if owner else None, limit_bytes=limit,
                          mismatch=cross_check(kill, record) if kill and record else None)
