"""Facts about processes read from /proc: the edge between the rate maths and the live system."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cgroup import MemoryCgroup, memory_cgroup_of

PROC = Path("/proc")


def live_pids(proc: Path = PROC) -> np.ndarray:
    """Every process (tgid) alive now, sorted. One directory listing, not one stat per PID."""
    return np.array(sorted(int(name) for name in os.listdir(proc) if name.isdigit()), dtype=np.uint32)


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


class ProcessDirectory:
    """Identity per pid, cached: looked up once, not every tick; forgotten when the process exits."""

    def __init__(self) -> None:
        self._known: dict[int, Identity] = {}

    def identity(self, pid: int) -> Identity:
        if pid not in self._known:
            self._known[pid] = Identity(process_name(pid), memory_cgroup_of(pid))
        return self._known[pid]

    def forget(self, pids) -> None:
        for pid in pids:
            self._known.pop(int(pid), None)

    def __len__(self) -> int:
        return len(self._known)
