"""Facts about processes read from /proc: the edge between the rate maths and the live system."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arrays import match
from ..bpf.events import Departed
from .attribution import Attribution, attribute
from .cgroup import CgroupPaths, MemoryCgroup, memory_cgroup_of

PROC = Path("/proc")
MEMINFO = PROC / "meminfo"


def meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """/proc/meminfo in bytes ({"MemTotal": ..., "MemAvailable": ...}); {} if unreadable."""
    return kilobyte_fields(path)


def kilobyte_fields(path: Path) -> dict[str, int]:
    """'Name: value kB' lines (meminfo, smaps_rollup) in bytes; {} if unreadable."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        number = rest.split()[:1]
        if number and number[0].isdigit():
            out[name] = int(number[0]) * (1024 if rest.strip().endswith("kB") else 1)
    return out


def process_name(pid: int, proc: Path = PROC) -> str:
    """The process's comm, or "-" once it has exited."""
    try:
        return (proc / str(pid) / "comm").read_text().strip() or "-"
    except OSError:
        return "-"


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22); None once it has exited.

    A pid and its start time name one process for good: a reused pid has a later start time.
    """
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command, in parentheses, may hold spaces and ")"
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


@dataclass(frozen=True)
class Identity:
    """What is looked up once per process, when it is first seen."""

    command: str
    cgroup: MemoryCgroup | None
    attribution: Attribution | None  # None when the process was gone before it could be read
    started: int | None = None  # start time (see start_time): tells a reused pid from its predecessor


def identify(pid: int, proc: Path = PROC) -> Identity:
    started = start_time(pid, proc)
    cgroup = memory_cgroup_of(pid, proc)
    return Identity(process_name(pid, proc), cgroup, attribute(cgroup.path) if cgroup else None, started)


class ProcessDirectory:
    """Identity per live pid, taken once when the pid is first seen, forgotten when it exits.

    So nothing is read from /proc per tick per process, and a victim that is
    gone by the time its kill is reported is still attributed (it is read at
    the kill, before it exits). Bounded: the selection forgets every pid a
    tick after it is found dead (`not_in(live)`), so churn cannot grow it, and a pid reused by a
    new process is told apart by its start time (`current`).
    """

    def __init__(self, identify: Callable[[int], Identity] = identify,
                 started: Callable[[int], int | None] = start_time, cgroup_paths: CgroupPaths | None = None) -> None:
        self._identify, self._started = identify, started
        self._cgroup_paths = cgroup_paths if cgroup_paths is not None else CgroupPaths.of_this_host()
        self._departed: dict[int, Departed] = {}
        self._known: dict[int, Identity] = {}
        self._pids = np.zeros(0, dtype=np.uint32)  # sorted keys of _known, rebuilt lazily
        self._dirty = False

    def _sorted(self) -> np.ndarray:
        if self._dirty:
            self._pids = np.array(sorted(self._known), dtype=np.uint32)
            self._dirty = False
        return self._pids

    def learn(self, pids: np.ndarray) -> np.ndarray:
        """Identify the pids not seen before (sorted input); returns them. O(new) reads."""
        _, found = match(self._sorted(), pids)
        new = pids[~found]
        for pid in new.tolist():
            self._known[pid] = self._read(pid)
        if len(new):
            self._pids = np.union1d(self._pids, new)
        return new

    def departed(self, exits: dict[int, Departed]) -> None:
        """The processes the kernel saw exit since the last tick, as it named them. A process that lived
        less than a tick is gone from /proc before anyone asks; it is named from these instead. Replaced
        each tick, so it holds one tick's exits."""
        self._departed = exits

    def identity(self, pid: int) -> Identity:
        """The identity of a pid, read from /proc if it is not known yet (from the kernel's record of its
        exit if /proc no longer has it)."""
        known = self._known.get(pid)
        if known is None:
            known = self._known[pid] = self._read(pid)
            self._dirty = True
        return known

    def _read(self, pid: int) -> Identity:
        """From /proc; from the kernel's record of the exit when /proc no longer has the process."""
        found = self._identify(pid)
        gone = self._departed.get(pid)
        if gone is None or found.command != "-" or found.cgroup is not None:
            return found
        return self._from_exit(gone)

    def _from_exit(self, gone: Departed) -> Identity:
        path = self._cgroup_paths.path_of(gone.cgroup_id)  # v2 only: on v1 the kernel's id names nothing
        return Identity(gone.command or "-", MemoryCgroup(2, path) if path else None,
                        attribute(path) if path else None)

    def current(self, pid: int) -> Identity:
        """Like identity(), but re-read if the pid now belongs to a newer process (one stat read)."""
        known = self.identity(pid)
        now = self._started(pid)
        if now is not None and known.started is not None and now != known.started:
            known = self._known[pid] = self._read(pid)
        return known

    def reread(self, pid: int) -> Identity:
        """Read /proc again whatever is cached (at a kill: the process may have changed cgroup since); the
        cached identity stays if /proc no longer has it."""
        found = self._read(pid)
        if found.command != "-" or found.cgroup is not None or pid not in self._known:
            self._known[pid] = found
            self._dirty = True
        return self._known[pid]

    def pids(self) -> list[int]:
        return list(self._known)

    def known(self, pid: int) -> Identity | None:
        """The identity if known without reading /proc: cached, or from the kernel's record of its exit."""
        found = self._known.get(pid)
        if found is None and pid in self._departed:
            found = self._known[pid] = self._from_exit(self._departed[pid])
            self._dirty = True
        return found

    def forget(self, pids: Iterable[int] | np.ndarray) -> None:
        for pid in np.asarray(list(pids), dtype=np.int64).tolist():
            self._known.pop(int(pid), None)
        self._dirty = True

    def not_in(self, live: np.ndarray) -> np.ndarray:
        """The known pids that are not in `live` (sorted): the exited. One vectorised pass."""
        return np.setdiff1d(self._sorted(), live, assume_unique=True)

    def __len__(self) -> int:
        return len(self._known)
