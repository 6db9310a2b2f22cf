"""OOM kills, attributed: the ring-buffer event matched with the kernel log line and the victim's owner."""

from __future__ import annotations

from dataclasses import dataclass

from .attribution import Attribution, PodDirectory, PodNames, attribute, owner_text
from .cgroup import MemoryCgroup, cgroup_limit, default_memory_version
from .events import OomKill
from .kmsg import KernelOomRecord
from .metrics import Owner
from .procfs import ProcessDirectory

MATCH_WINDOW_S = 1.0  # how long a ring-buffer kill waits for its kernel log line


@dataclass(frozen=True)
class KillReport:
    kill: OomKill | None  # None: seen only in the kernel log (ring buffer lost it)
    record: KernelOomRecord | None  # None: no kernel log line (unreadable, or rate-limited)
    attribution: Attribution | None
    pod: PodNames | None
    limit_bytes: int | None  # the limit that was hit (of record.oom_memcg), None: none or unknown
    mismatch: str | None  # what the two sources disagree on, if anything

    @property
    def pid(self) -> int:
        return self.kill.victim_pid if self.kill else self.record.pid

    @property
    def comm(self) -> str:
        return self.kill.victim_comm if self.kill else self.record.task


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
        out = []
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

    def __init__(self, directory: ProcessDirectory, pods: PodDirectory, read_limit=cgroup_limit):
        self.directory, self.pods, self.read_limit = directory, pods, read_limit

    def describe(self, pid: int) -> tuple[str, str]:
        """(command, owner) of a live or remembered process, for rate tables."""
        identity = self.directory.identity(pid)
        attribution = identity.attribution
        pod = self.pods.lookup(attribution.pod_uid, attribution.container_id) if attribution else None
        return identity.command, owner_text(attribution, pod)

    def owner(self, pid: int) -> Owner:
        """Metric labels of a live or remembered process."""
        identity = self.directory.identity(pid)
        attribution = identity.attribution
        pod = self.pods.lookup(attribution.pod_uid, attribution.container_id) if attribution else None
        return Owner(identity.command, pod.namespace if pod else "", pod.pod if pod else "",
                     (pod.container or "") if pod else "", (attribution.container_id or "") if attribution else "")

    def report(self, kill: OomKill | None, record: KernelOomRecord | None) -> KillReport:
        pid = kill.victim_pid if kill else record.pid
        identity = self.directory.known(pid)
        attribution = identity.attribution if identity else None
        if attribution is None and record and record.task_memcg is not None:
            attribution = attribute(record.task_memcg)  # gone before we saw it: the kernel log still names it
        version = identity.cgroup.version if identity and identity.cgroup else default_memory_version()
        if record and record.oom_memcg is not None:
            limit = self.read_limit(MemoryCgroup(version, record.oom_memcg))
        elif identity and identity.cgroup:
            limit = self.read_limit(identity.cgroup)
        else:
            limit = None
        pod = self.pods.lookup(attribution.pod_uid, attribution.container_id) if attribution else None
        return KillReport(kill=kill, record=record, attribution=attribution, pod=pod, limit_bytes=limit,
                          mismatch=cross_check(kill, record) if kill and record else None)
