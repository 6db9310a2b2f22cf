"""Evidence of a leak, captured while it happens: call sites by deep sampling, memory breakdowns, a report.

Each tick the daemon names its suspects: cgroups with an open alert or a
climb the detector sees (so a critical alert that opens at once already has
call sites). Their processes go into the kernel's `deep_pids` set, where
their sampled allocations also get their stacks taken (1 in M of them, M
raised to keep the stacks within STACKS_PER_S); everything else costs what
it did. Stacks are named at once, while the process is alive, and the
cgroup's memory.stat and its heaviest allocator's smaps_rollup are re-read
every BREAKDOWN_EVERY_S: a kill takes the process and its /proc away.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..bpf.events import DEEP_PIDS_MAX, DeepSite
from ..files import atomic_write, read_own_file
from ..identity.cgroup import MemoryCgroup, default_memory_version, own_free_bytes
from ..text import printable
from ..units import format_bytes
from .breakdown import cgroup_breakdown, process_breakdown
from .sites import CallSites, Site, compact
from .symbols import Named, Request

log = logging.getLogger("oomguard")
# Stack walks the suspects may cost, all together: a sample's two stacks cost ~5 us of kernel time here
# (bench/deep_cost.py), so 1,000 a second is ~0.5% of one CPU, whatever the suspects allocate.
STACKS_PER_S = 1000
BREAKDOWN_EVERY_S = 5.0
MAX_M = 1 << 16
MESSAGE_SITES = 3  # sites in a message; the report has REPORT_SITES
REPORT_SITES = 15
# Naming stacks loads symbol tables (the kernel's alone is ~13 MiB): a luxury, like the alert charts. With
# less than this free under the daemon's own memory limit no suspect is deep-sampled, and messages say why.
EVIDENCE_ROOM = 48 << 20
REPORTS_KEPT = 200  # evidence files under the state dir: the oldest go first
NAMED_KEPT = 4096  # stacks kept named between ticks: a suspect's stacks repeat, so few are named twice


class StackSource(Protocol):
    """What capture needs of the tracer (bpf/tracer.py)."""

    def set_deep_pids(self, every: dict[int, int]) -> None: ...
    def deep_sites(self) -> list[DeepSite]: ...


class Namer(Protocol):
    """What capture needs to name stacks (symbols.Symbolizer)."""

    failure: str  # why the last stacks came back as addresses, "" when they were named

    @property
    def running(self) -> bool: ...  # symbol tables are loaded
    def name(self, stacks: list[Request]) -> list[Named]: ...
    def forget(self, pids: set[int]) -> None: ...
    def close(self) -> None: ...


@dataclass
class Evidence:
    """What is known of one suspect cgroup's allocations since it became a suspect."""

    cgroup: str
    since: float  # clock seconds
    sites: CallSites = field(default_factory=CallSites)
    bytes_by_pid: dict[int, float] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)
    memory: dict[str, int] = field(default_factory=dict)  # the cgroup's memory.stat breakdown
    process: dict[str, int] = field(default_factory=dict)  # the heaviest allocator's smaps_rollup
    process_pid: int = 0
    read_at: float = float("-inf")  # when memory/process were last read

    def heaviest_pid(self) -> int | None:
        return max(self.bytes_by_pid, key=self.bytes_by_pid.__getitem__) if self.bytes_by_pid else None


def breakdown_text(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {format_bytes(v)}" for k, v in values.items()) or "not read"


def section(evidence: Evidence, now: float, alert_id: str, held_back: str = "") -> str:
    """The compact part of a message: the top call sites and the memory breakdown."""
    sites = evidence.sites.ranked(MESSAGE_SITES)
    head = f"Allocation call sites (sampled over {now - evidence.since:.0f}s, bytes allocated):"
    body = compact(sites) if sites else f"  not captured: {held_back}" if held_back else "  none sampled yet"
    return (f"{head}\n{body}\nMemory of the cgroup: {breakdown_text(evidence.memory)}\n"
            f"Full report: oomguard status --alert {alert_id}")


def report(evidence: Evidence, now: float, alert_id: str, title: str) -> str:
    """The full report kept with the alert: every top site with its heaviest stack, both breakdowns."""
    lines = [f"oomguard evidence for alert {alert_id}", printable(title), f"cgroup: {printable(evidence.cgroup)}",
             f"sampled for {now - evidence.since:.0f}s, {evidence.sites.samples} stacks taken", "",
             "Allocation call sites by bytes allocated (sampled, weighted):"]
    sites: list[Site] = evidence.sites.ranked(REPORT_SITES)
    for site in sites:
        lines.append(f"{site.share:6.1%} {format_bytes(site.bytes):>10}  {printable(site.name)}")
        lines += [f"          {printable(frame)}" for frame in site.stack]
    if not sites:
        lines.append("  none sampled")
    lines += ["", f"memory.stat of the cgroup: {breakdown_text(evidence.memory)}"]
    if evidence.process_pid:
        command = printable(evidence.commands.get(evidence.process_pid, "?"))
        lines.append(f"smaps_rollup of pid {evidence.process_pid} ({command}), the heaviest allocator: "
                     f"{breakdown_text(evidence.process)}")
    return "\n".join(lines) + "\n"


def next_every(every: int, samples_per_s: float) -> int:
    """M for the next tick: the stacks taken scaled to the budget (proportional, within 1..MAX_M)."""
    if samples_per_s <= 0:
        return max(1, every // 2)
    return int(min(MAX_M, max(1, math.ceil(every * samples_per_s / STACKS_PER_S))))


def stack_key(site: DeepSite) -> Request:
    return site.pid, site.user_stack, site.kernel_stack


class EvidenceCapture:
    """The daemon's deep sampler: suspects in, evidence per cgroup out; files under `directory`."""

    def __init__(self, tracer: StackSource, names: Namer, directory: Path, clock: Callable[[], float] = time.monotonic,
                 version: int | None = None, free_bytes: Callable[[], int | None] = own_free_bytes):
        self.tracer, self.names, self.directory, self.clock = tracer, names, directory, clock
        self.free_bytes = free_bytes
        self.held_back = ""  # why suspects are not deep-sampled now, "" when they are
        self.version = version or default_memory_version()
        self.by_cgroup: dict[str, Evidence] = {}
        self.every = 1
        self._pid_cgroup: dict[int, str] = {}
        self._named: dict[Request, Named] = {}
        self._last = clock()

    def update(self, suspects: Mapping[str, Iterable[int]], commands: dict[int, str]) -> None:
        """One tick: `suspects` maps each suspect cgroup to its processes."""
        now = self.clock()
        self.collect()
        for cgroup in self.by_cgroup.keys() - suspects.keys():
            del self.by_cgroup[cgroup]
        self._hold_back(bool(suspects))
        pid_cgroup: dict[int, str] = {}
        for cgroup, pids in suspects.items():
            evidence = self.by_cgroup.setdefault(cgroup, Evidence(cgroup, now))
            for pid in pids:
                evidence.commands.setdefault(pid, commands.get(pid, "?"))
                if not self.held_back and len(pid_cgroup) < DEEP_PIDS_MAX:
                    pid_cgroup[pid] = cgroup
            if now - evidence.read_at >= BREAKDOWN_EVERY_S:  # a few file reads: kept even when held back
                self._read_breakdowns(evidence, now)
        gone = set(self._pid_cgroup) - set(pid_cgroup)
        self._pid_cgroup = pid_cgroup
        self.tracer.set_deep_pids(dict.fromkeys(pid_cgroup, self.every))
        if not pid_cgroup:
            self.names.close()  # every symbol table goes with the child
        elif gone:
            self.names.forget(gone)
        if not pid_cgroup or len(self._named) > NAMED_KEPT:
            self._named.clear()

    def _hold_back(self, any_suspect: bool) -> None:
        """Deep sampling only with room for the symbol tables (checked before they are loaded)."""
        free = self.free_bytes() if any_suspect and not self.names.running else None
        was = self.held_back
        self.held_back = (f"the daemon's memory cgroup has {format_bytes(free)} free, less than the "
                          f"{format_bytes(EVIDENCE_ROOM)} naming stacks may need"
                          if free is not None and free < EVIDENCE_ROOM else "")
        if self.held_back and not was:
            log.warning("alert evidence not captured: %s; alerts go out without call sites (fix: raise the "
                        "unit's MemoryMax, or set [alerts] evidence = false)", self.held_back)

    def collect(self) -> None:
        """Fold what the kernel sampled since the last call into each suspect's evidence."""
        now = self.clock()
        sites = self.tracer.deep_sites()
        elapsed, self._last = max(now - self._last, 1e-3), now
        self.every = next_every(self.every, sum(s.samples for s in sites) / elapsed)
        sites = [s for s in sites if self._pid_cgroup.get(s.pid, "") in self.by_cgroup]  # still a suspect's
        new = list(dict.fromkeys(key for key in map(stack_key, sites) if key not in self._named))
        named = dict(zip(new, self.names.name(new), strict=True))  # one round trip for all new stacks
        if not self.names.failure:  # addresses are not kept: the next tick tries to name them again
            self._named.update(named)
        for site in sites:
            evidence = self.by_cgroup[self._pid_cgroup[site.pid]]
            user, kernel = self._named.get(stack_key(site)) or named[stack_key(site)]
            evidence.sites.add(user, kernel, float(site.bytes), site.samples)
            evidence.bytes_by_pid[site.pid] = evidence.bytes_by_pid.get(site.pid, 0.0) + site.bytes

    def _read_breakdowns(self, evidence: Evidence, now: float) -> None:
        evidence.read_at = now
        memory = cgroup_breakdown(MemoryCgroup(self.version, evidence.cgroup))
        if memory:  # keep the last reading once the cgroup is gone
            evidence.memory = memory
        pid = evidence.heaviest_pid()
        if pid is not None:
            process = process_breakdown(pid)
            if process:
                evidence.process, evidence.process_pid = process, pid

    def of(self, cgroup: str, fresh: bool = False) -> Evidence | None:
        """The cgroup's evidence; `fresh`: its breakdowns re-read now (for a message about a live cgroup,
        not a kill's, whose last reading is the one from before it)."""
        evidence = self.by_cgroup.get(cgroup)
        if evidence is not None and fresh:
            self._read_breakdowns(evidence, self.clock())
        return evidence

    def save(self, alert_id: str, title: str, evidence: Evidence) -> Path | None:
        """The full report as <state dir>/evidence/<alert id>.txt (for `status --alert` and attachments)."""
        path = self.directory / f"{alert_id}.txt"
        try:
            atomic_write(path, report(evidence, self.clock(), alert_id, title))
            kept = sorted(self.directory.glob("*.txt"), key=lambda p: p.stat().st_mtime)
            for old in kept[:-REPORTS_KEPT]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("alert evidence not saved: %s (%s); the message still carries its summary", path,
                        exc.strerror or exc)
            return None
        return path


def saved_report(directory: Path, alert_id: str) -> str | None:
    """The report kept for an alert id, if any (ids are hex: anything else is refused, not opened)."""
    if not alert_id or not all(c in "0123456789abcdefABCDEF" for c in alert_id):
        return None
    try:
        return read_own_file(directory / f"{alert_id}.txt")
    except OSError:
        return None

