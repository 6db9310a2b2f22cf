"""Evidence of a leak, captured while it happens: call sites by deep sampling, memory breakdowns, a report.

Each tick the daemon names its suspects: cgroups with an open alert or a
climb the detector sees (so a critical alert that opens at once already has
call sites). Their processes go into the kernel's `deep_pids` set, where
their sampled allocations also get their stacks taken (1 in M of them, M
raised to keep the stacks within STACKS_PER_S); everything else costs what
it did. Stacks are sent for naming at once, while the process is alive, to
a worker thread that owns the symbolizer: naming a JVM's symbols can take
seconds, and the tick never waits for it. A site counts once its stack is
named; until then a message says how many wait, and the saved report is
written again when they are named. The cgroup's memory.stat and its
heaviest allocator's smaps_rollup are re-read every BREAKDOWN_EVERY_S: a
kill takes the process and its /proc away.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..bpf.events import DEEP_PIDS_MAX, DeepSite
from ..files import atomic_write, read_own_file
from ..helper import Worker
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
WAITING_KEPT = 20000  # sampled sites waiting for their names: past it the oldest are counted as addresses


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
    def interrupt(self) -> None: ...  # from another thread: end a request in flight now


class Runner(Protocol):
    """Where naming runs (helper.Worker: a thread of its own)."""

    def submit(self, fn: Callable[..., object], *args: object) -> Future[object]: ...
    def stop(self) -> None: ...


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
    naming: int = 0  # sampled stacks still being named (counted once named)

    def heaviest_pid(self) -> int | None:
        return max(self.bytes_by_pid, key=self.bytes_by_pid.__getitem__) if self.bytes_by_pid else None


def breakdown_text(values: dict[str, int]) -> str:
    return ", ".join(f"{k} {format_bytes(v)}" for k, v in values.items()) or "not read"


def section(evidence: Evidence, now: float, alert_id: str, held_back: str = "") -> str:
    """The compact part of a message: the top call sites and the memory breakdown."""
    sites = evidence.sites.ranked(MESSAGE_SITES)
    head = f"Allocation call sites (sampled over {now - evidence.since:.0f}s, bytes allocated):"
    body = compact(sites) if sites else f"  not captured: {held_back}" if held_back else "  none sampled yet"
    if evidence.naming:
        body += f"\n  ({evidence.naming} more sampled stacks still being named: the full report will have them)"
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
    if evidence.naming:
        lines.append(f"  {evidence.naming} more sampled stacks were still being named when this was written")
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
                 version: int | None = None, free_bytes: Callable[[], int | None] = own_free_bytes,
                 runner: Runner | None = None):
        self.tracer, self.names, self.directory, self.clock = tracer, names, directory, clock
        self.runner: Runner = runner or Worker("naming")
        self.free_bytes = free_bytes
        self.held_back = ""  # why suspects are not deep-sampled now, "" when they are
        self.version = version or default_memory_version()
        self.by_cgroup: dict[str, Evidence] = {}
        self.every = 1
        self._pid_cgroup: dict[int, str] = {}
        self._named: dict[Request, Named] = {}
        self._addresses: dict[Request, Named] = {}  # answers the symbolizer failed: counted once, as addresses
        self._asked: set[Request] = set()  # sent for naming, no answer yet
        self._naming: list[Future[object]] = []
        self._waiting: list[DeepSite] = []  # sampled sites whose stacks are being named
        self._reports: dict[str, tuple[str, str]] = {}  # cgroup -> (alert id, title) saved before all were named
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
            self.runner.submit(self.names.close)  # every symbol table goes with the child
        elif gone:
            self.runner.submit(self.names.forget, gone)
        if not pid_cgroup or len(self._named) > NAMED_KEPT:
            self._named.clear()
        self._save_named_reports()

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
        """Fold what the kernel sampled since the last call into each suspect's evidence: sites whose stacks
        are named count now, the others are sent for naming (never waited for) and count at a later call."""
        now = self.clock()
        sites = self.tracer.deep_sites()
        elapsed, self._last = max(now - self._last, 1e-3), now
        self.every = next_every(self.every, sum(s.samples for s in sites) / elapsed)
        self._take_names()
        ask = self._fold(sites)
        if ask:  # one round trip for all new stacks, in the worker
            self._naming.append(self.runner.submit(self._name, ask))
            self._take_names()  # an answer at once (a worker that had nothing to do) counts now
            self._fold([])
        self._addresses.clear()
        if len(self._waiting) > WAITING_KEPT:
            log.warning("%d sampled stacks wait for their names: the oldest are dropped from the evidence",
                        len(self._waiting) - WAITING_KEPT)
            del self._waiting[:-WAITING_KEPT]

    def _fold(self, sites: list[DeepSite]) -> list[Request]:
        """Count the named among the waiting sites and `sites`; keep the rest waiting. The stacks to ask for."""
        waiting, self._waiting = self._waiting + sites, []
        ask: list[Request] = []
        for evidence in self.by_cgroup.values():
            evidence.naming = 0
        for site in waiting:
            cgroup = self._pid_cgroup.get(site.pid, "")
            if cgroup not in self.by_cgroup:  # no longer (or never) a suspect's
                continue
            key = stack_key(site)
            evidence = self.by_cgroup[cgroup]
            user_kernel = self._named.get(key) or self._addresses.get(key)
            if user_kernel is None:
                self._waiting.append(site)
                evidence.naming += 1
                if key not in self._asked:
                    self._asked.add(key)
                    ask.append(key)
                continue
            user, kernel = user_kernel
            evidence.sites.add(user, kernel, float(site.bytes), site.samples)
            evidence.bytes_by_pid[site.pid] = evidence.bytes_by_pid.get(site.pid, 0.0) + site.bytes
        return ask

    def _name(self, stacks: list[Request]) -> tuple[list[Request], list[Named], str]:
        """In the worker: the stacks, their names, and why they are addresses ("" when named)."""
        return stacks, self.names.name(stacks), self.names.failure

    def _take_names(self) -> None:
        """The answers the worker has, without waiting: names kept for the next ticks, addresses used once
        (the next sample of those stacks asks again)."""
        pending = []
        for future in self._naming:
            if not future.done():
                pending.append(future)
                continue
            try:
                answer: tuple[list[Request], list[Named], str] = future.result()  # type: ignore[assignment]
            except Exception as exc:  # a bug in naming must cost the names, not the evidence  # noqa: BLE001
                log.warning("stacks not named (%s: %s)", type(exc).__name__, exc)
                continue
            stacks, names, failure = answer
            self._asked.difference_update(stacks)
            (self._addresses if failure else self._named).update(zip(stacks, names, strict=True))
        self._naming = pending
        if not self._naming:
            self._asked.clear()  # a cancelled request (at a stop) leaves no stack asked forever

    def _save_named_reports(self) -> None:
        """Reports saved while stacks were being named, written again once they are."""
        for cgroup, (alert_id, title) in list(self._reports.items()):
            evidence = self.by_cgroup.get(cgroup)
            if evidence is None or not evidence.naming:
                del self._reports[cgroup]
                if evidence is not None:
                    self.save(alert_id, title, evidence)

    def stop(self) -> None:
        """At exit: end a naming in flight now, drop what waits; the child goes with the daemon."""
        self.names.interrupt()
        self.runner.stop()

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

    def of(self, cgroup: str) -> Evidence | None:
        """The cgroup's evidence, its breakdowns as last read (at most BREAKDOWN_EVERY_S ago): a message is not
        held up re-reading a large process's smaps_rollup."""
        return self.by_cgroup.get(cgroup)

    def save(self, alert_id: str, title: str, evidence: Evidence) -> Path | None:
        """The full report as <state dir>/evidence/<alert id>.txt (for `status --alert` and attachments)."""
        path = self.directory / f"{alert_id}.txt"
        if evidence.naming:
            self._reports[evidence.cgroup] = (alert_id, title)
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

