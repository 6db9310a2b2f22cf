"""Facts about processes read from /proc: the edge between the rate maths and the live system."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..arrays import match
from ..bpf.events import Departed
from ..text import read_kernel_text
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
        lines = read_kernel_text(path).splitlines()
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
        return read_kernel_text(proc / str(pid) / "comm").removesuffix("\n") or "-"
    except OSError:
        return "-"


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """When the process started (clock ticks since boot, /proc/PID/stat field 22); None once it has exited.

    A pid and its start time name one process for good: a reused pid has a later start time.
    """
    try:
        stat = read_kernel_text(proc / str(pid) / "stat")
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the command, in parentheses, may hold spaces and ")"
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else None


# fds whose files are looked at per process when asking what shared memory it holds (all are counted): a
# server with more open files is not a memfd writer's usual shape, and the scan runs only for a cgroup an
# alert is about.
FDS_SCANNED = 4096


@dataclass(frozen=True)
class Held:
    """What a process holds open that no RSS shows, yet its cgroup is charged for."""

    shared_bytes: int = 0  # memfd files and files on tmpfs (/dev/shm, emptyDir medium Memory), each once
    descriptors: int = 0  # open fds: each socket or file never closed keeps kernel memory charged


def held_open(pid: int, proc: Path = PROC) -> Held:
    """The process's open shared memory and descriptors; Held() when it is gone or its fds cannot be
    read. Written with write(), a memfd or tmpfs file shows in no process's RSS."""
    base = proc / str(pid)
    tmpfs = _tmpfs_devices(base / "mountinfo")
    shared: dict[tuple[int, int], int] = {}
    count = 0
    try:
        with os.scandir(base / "fd") as fds:
            for fd in fds:
                count += 1
                if count > FDS_SCANNED:
                    continue
                try:
                    target = os.readlink(fd.path)
                    if target.startswith(("socket:", "pipe:", "anon_inode:")):
                        continue
                    st = os.stat(fd.path)  # the open file itself, through the fd's link
                except OSError:  # closed since, or not ours to look at
                    continue
                if target.startswith("/memfd:") or (os.major(st.st_dev), os.minor(st.st_dev)) in tmpfs:
                    shared[(st.st_dev, st.st_ino)] = st.st_blocks * 512  # allocated, not the size: sparse files
    except OSError:
        return Held()
    return Held(sum(shared.values()), count)


def open_descriptors(pid: int, proc: Path = PROC) -> int | None:
    """How many fds the process has open (counted, none looked at); None when it is gone or not ours to read."""
    try:
        return len(os.listdir(proc / str(pid) / "fd"))
    except OSError:
        return None


def _tmpfs_devices(mountinfo: Path) -> set[tuple[int, int]]:
    """(major, minor) of the tmpfs mounts the process sees (its own mount namespace)."""
    try:
        lines = read_kernel_text(mountinfo).split("\n")
    except OSError:
        return set()
    devices = set()
    for line in lines:
        fields, _, tail = line.partition(" - ")
        parts = fields.split()
        if tail.split()[:1] == ["tmpfs"] and len(parts) > 2 and ":" in parts[2]:
            major, _, minor = parts[2].partition(":")
            if major.isdigit() and minor.isdigit():
                devices.add((int(major), int(minor)))
    return devices


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


CGROUPS_KEPT_UNUSED = 64  # cgroups indexed that no known process is in, before renumbering


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
        # The same pids as arrays, sorted, with each one's memory cgroup as an index into _cgroups (-1: none):
        # every tick groups every process by cgroup, and arrays do it without a Python step per process.
        # Kept in step with _known as it changes (merges and masks), never rebuilt from it.
        self._pids = np.zeros(0, dtype=np.uint32)
        self._cgroup_of = np.zeros(0, dtype=np.int64)
        self._cgroups: list[MemoryCgroup] = []
        self._cgroup_index: dict[MemoryCgroup, int] = {}

    def _index_of(self, identity: Identity) -> int:
        cgroup = identity.cgroup
        if cgroup is None:
            return -1
        index = self._cgroup_index.get(cgroup)
        if index is None:
            index = self._cgroup_index[cgroup] = len(self._cgroups)
            self._cgroups.append(cgroup)
        return index

    def _put(self, pid: int, identity: Identity) -> Identity:
        """Store one identity (new, or replacing a pid's), keeping the arrays in step."""
        if pid in self._known:
            self._cgroup_of[int(np.searchsorted(self._pids, pid))] = self._index_of(identity)
            self._known[pid] = identity
        else:
            self._add([pid], [identity])
        return identity

    def learn(self, pids: np.ndarray) -> np.ndarray:
        """Identify the pids not seen before (sorted input); returns them. O(new) reads."""
        _, found = match(self._pids, pids)
        new = pids[~found]
        if len(new):
            self._add(new.tolist(), [self._read(pid) for pid in new.tolist()])
        return new

    def _add(self, pids: list[int], identities: list[Identity]) -> None:
        """Store identities of pids not known yet, merging them into the arrays at once (one sort, not one
        array copy per pid)."""
        self._known.update(zip(pids, identities, strict=True))
        merged = np.concatenate([self._pids, np.array(pids, dtype=np.uint32)])
        cgroups = np.concatenate([self._cgroup_of, np.array([self._index_of(i) for i in identities], np.int64)])
        order = np.argsort(merged, kind="stable")
        self._pids, self._cgroup_of = merged[order], cgroups[order]

    def departed(self, exits: dict[int, Departed]) -> None:
        """The processes the kernel saw exit since the last tick, as it named them. A process that lived
        less than a tick is gone from /proc before anyone asks; it is named from these instead. Replaced
        each tick, so it holds one tick's exits."""
        self._departed = exits

    def identity(self, pid: int) -> Identity:
        """The identity of a pid, read from /proc if it is not known yet (from the kernel's record of its
        exit if /proc no longer has it)."""
        known = self._known.get(pid)
        return known if known is not None else self._put(pid, self._read(pid))

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
            known = self._put(pid, self._read(pid))
        return known

    def reread(self, pid: int) -> Identity:
        """Read /proc again whatever is cached (at a kill: the process may have changed cgroup since); the
        cached identity stays if /proc no longer has it."""
        found = self._read(pid)
        if found.command != "-" or found.cgroup is not None or pid not in self._known:
            self._put(pid, found)
        return self._known[pid]

    def pids(self) -> list[int]:
        return list(self._known)

    def known(self, pid: int) -> Identity | None:
        """The identity if known without reading /proc: cached, or from the kernel's record of its exit."""
        found = self._known.get(pid)
        if found is None and pid in self._departed:
            found = self._put(pid, self._from_exit(self._departed[pid]))
        return found

    def cgroups_of(self, pids: np.ndarray) -> tuple[np.ndarray, list[MemoryCgroup]]:
        """For each pid (known without reading /proc), the index of its memory cgroup in the returned list;
        -1 when it has none or is not known. One vectorised lookup: no Python step per known process."""
        pos, found = match(self._pids, pids)
        index = np.full(len(pids), -1, dtype=np.int64)
        index[found] = self._cgroup_of[pos[found]]
        # Not in the directory: the kernel's record of an exit may name it (hundreds a tick under churn: added
        # in one merge).
        named = [(i, pid, self._departed[pid]) for i, pid in zip(np.flatnonzero(~found).tolist(),
                                                                  pids[~found].tolist(), strict=True)
                 if pid in self._departed]
        if named:
            identities = [self._from_exit(gone) for _, _, gone in named]
            self._add([pid for _, pid, _ in named], identities)
            index[[i for i, _, _ in named]] = [self._index_of(identity) for identity in identities]
        return index, self._cgroups

    def forget(self, pids: Iterable[int] | np.ndarray) -> None:
        gone = np.asarray(list(pids), dtype=np.int64)
        for pid in gone.tolist():
            self._known.pop(int(pid), None)
        keep = ~np.isin(self._pids, gone)
        self._pids, self._cgroup_of = self._pids[keep], self._cgroup_of[keep]
        self._drop_unused_cgroups()

    def _drop_unused_cgroups(self) -> None:
        """Containers come and go: once most cgroups indexed belong to no known process, renumber (bounded)."""
        if len(self._cgroups) <= CGROUPS_KEPT_UNUSED:
            return
        used = np.unique(self._cgroup_of[self._cgroup_of >= 0])
        if len(self._cgroups) <= 2 * len(used) + CGROUPS_KEPT_UNUSED:
            return
        renumber = np.full(len(self._cgroups), -1, dtype=np.int64)
        renumber[used] = np.arange(len(used))
        self._cgroups = [self._cgroups[i] for i in used.tolist()]
        self._cgroup_index = {cgroup: i for i, cgroup in enumerate(self._cgroups)}
        self._cgroup_of = np.where(self._cgroup_of >= 0, renumber[np.maximum(self._cgroup_of, 0)], -1)

    def not_in(self, live: np.ndarray) -> np.ndarray:
        """The known pids that are not in `live` (sorted): the exited. One vectorised pass."""
        return np.setdiff1d(self._pids, live, assume_unique=True)

    def __len__(self) -> int:
        return len(self._known)
