"""Facts about processes read from /proc: the edge between the rate maths and the live system."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arrays import match
from .attribution import Attribution, attribute
from .cgroup import MemoryCgroup, memory_cgroup_of

PROC = Path("/proc")
MEMINFO = PROC / "meminfo"


def meminfo(path: Path = MEMINFO) -> dict[str, int]:
    """/proc/meminfo in bytes ({"MemTotal": ..., "MemAvailable": ...}); {} if unreadable."""
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


@dataclass(frozen=True)
class Identity:
    """What is looked up once per process, when it is first seen."""

    command: str
    cgroup: MemoryCgroup | None
    attribution: Attribution | None  # None when the process was gone before it could be read


def identify(pid: int, proc: Path = PROC) -> Identity:
    cgroup = memory_cgroup_of(pid, proc)
    return Identity(process_name(pid, proc), cgroup, attribute(cgroup.path) if cgroup else None)


class ProcessDirectory:
    """Identity per pid, taken once when the pid is first seen and kept until it exits.

    So a victim that is gone by the time its kill is reported is still
    attributed, and nothing is read from /proc per tick per process.
    """

    def __init__(self, identify: Callable[[int], Identity] = identify) -> None:
        self._identify = identify
        self._known: dict[int, Identity] = {}
        self._pids = np.zeros(0, dtype=np.uint32)  # sorted keys of _known

    def learn(self, pids: np.ndarray) -> np.ndarray:
        """Identify the pids not seen before (sorted input); returns them."""
        _, found = match(self._pids, pids)
        new = pids[~found]
        for pid in new.tolist():
            self._known[pid] = self._identify(pid)
        if len(new):
            self._pids = np.union1d(self._pids, new)
        return new

    def identity(self, pid: int) -> Identity:
        if pid not in self._known:
            self.learn(np.array([pid], dtype=np.uint32))
        return self._known[pid]

    def pids(self) -> list[int]:
        return list(self._known)

    def known(self, pid: int) -> Identity | None:
        return self._known.get(pid)

    def forget(self, pids: Iterable[int] | np.ndarray) -> None:
        for pid in pids:
            self._known.pop(int(pid), None)
        self._pids = np.setdiff1d(self._pids, np.asarray(list(pids), dtype=np.uint32))

    def __len__(self) -> int:
        return len(self._known)
