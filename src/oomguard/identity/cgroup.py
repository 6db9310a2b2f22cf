"""A process's memory cgroup and that cgroup's headroom (usage against its effective limit).

Works on cgroup v1 (memory controller), v2 and hybrid hosts. Pure parsing
takes text; the functions that read /proc and /sys take their roots as
arguments so tests can point them at a temporary tree.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from ..text import read_kernel_text

CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 62  # v1 reports "no limit" as a huge page-aligned number; anything above this is none


class MemoryCgroup(NamedTuple):
    """Where a process's memory is accounted: the hierarchy version and the path inside it.

    A named tuple, not a dataclass: every tick groups every process by it, and a tuple's hash and equality
    run in C (a frozen dataclass's run in Python: a third of the grouping pass at 10,000 processes)."""

    version: int  # 1 or 2
    path: str  # as in /proc/PID/cgroup, starting with "/"


@dataclass(frozen=True)
class Headroom:
    usage_bytes: int  # the working set: usage minus inactive file cache
    limit_bytes: int | None  # the smallest limit on the way to the root; None: no limit
    limited_at: str | None  # the cgroup path that sets it

    @property
    def free_bytes(self) -> int | None:
        return None if self.limit_bytes is None else self.limit_bytes - self.usage_bytes


def parse_proc_cgroup(text: str) -> MemoryCgroup | None:
    """The memory cgroup from /proc/PID/cgroup text: the v1 memory line, else the v2 line."""
    unified = None
    for line in text.split("\n"):  # not splitlines(): a path may hold \r or \x1c, which it splits on
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue  # malformed: ignore rather than mis-attribute
        hierarchy, controllers, path = parts
        if "memory" in controllers.split(","):
            return MemoryCgroup(1, path)
        if hierarchy == "0" and controllers == "":
            unified = MemoryCgroup(2, path)
    return unified


def memory_cgroup_of(pid: int, proc: Path = Path("/proc")) -> MemoryCgroup | None:
    try:
        return parse_proc_cgroup(read_kernel_text(proc / str(pid) / "cgroup"))
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    try:
        text = read_kernel_text(path).strip()
    except OSError:
        return None
    if text == "max":
        return UNLIMITED
    try:
        return int(text)
    except ValueError:
        return None


def headroom(cgroup: MemoryCgroup, root: Path = CGROUP_ROOT) -> Headroom | None:
    """Usage of the cgroup and the smallest limit from it up to the root; None if unreadable."""
    base = root / "memory" if cgroup.version == 1 else root
    usage_file, limit_file = (("memory.usage_in_bytes", "memory.limit_in_bytes") if cgroup.version == 1
                              else ("memory.current", "memory.max"))
    directory = memory_dir(cgroup, root)
    usage = _read_int(directory / usage_file)
    if usage is None:
        return None
    limit, limited_at = None, None
    path = Path(cgroup.path)
    while True:
        value = _read_int(base / str(path).lstrip("/") / limit_file)
        if value is not None and value < UNLIMITED and (limit is None or value < limit):
            limit, limited_at = value, str(path)
        if path == path.parent:
            break
        path = path.parent
    # The working set, as the kubelet counts it: inactive file cache is reclaimed before any kill.
    inactive_file = keyed_ints(directory / "memory.stat").get(
        "total_inactive_file" if cgroup.version == 1 else "inactive_file", 0)
    return Headroom(max(0, usage - inactive_file), limit, limited_at)


def oom_kills(cgroup: MemoryCgroup, root: Path = CGROUP_ROOT) -> int | None:
    """OOM kills the kernel has counted in the cgroup and below it since it was made; None if unreadable.

    v2: memory.events' oom_kill counts the subtree. v1: memory.oom_control's oom_kill counts only the
    victim's own cgroup, so the subtree is summed (a container's subtree is a few directories)."""
    directory = memory_dir(cgroup, root)
    if cgroup.version == 2:
        return keyed_ints(directory / "memory.events").get("oom_kill")
    if not directory.is_dir():
        return None
    return sum(keyed_ints(Path(d) / "memory.oom_control").get("oom_kill", 0) for d, _, _ in os.walk(directory))


def memory_dir(cgroup: MemoryCgroup, root: Path = CGROUP_ROOT) -> Path:
    """The directory of a memory cgroup's files (v1: under the memory controller's mount)."""
    return (root / "memory" if cgroup.version == 1 else root) / cgroup.path.lstrip("/")


def keyed_ints(path: Path) -> dict[str, int]:
    """'key value' lines (memory.stat) as a dict; {} if unreadable."""
    try:
        lines = read_kernel_text(path).splitlines()
    except OSError:
        return {}
    pairs = (line.split() for line in lines)
    return {p[0]: int(p[1]) for p in pairs if len(p) == 2 and p[1].lstrip("-").isdigit()}


def cgroup_limit(cgroup: MemoryCgroup, root: Path = CGROUP_ROOT) -> int | None:
    """The effective memory limit of a cgroup (smallest up the tree); None: no limit or unreadable."""
    room = headroom(cgroup, root)
    return room.limit_bytes if room else None


def default_memory_version(root: Path = CGROUP_ROOT) -> int:
    """1 where the v1 memory controller is mounted (v1 or hybrid host), else 2."""
    return 1 if (root / "memory" / "memory.usage_in_bytes").exists() else 2


def cgroup2_mount(mounts_text: str) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted, from /proc/self/mounts text."""
    for line in mounts_text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


class CgroupPaths:
    """v2 cgroup id -> path ("/kubepods.slice/..."), for processes the kernel named after they exited.

    On cgroup2 a cgroup's id is its directory's inode number: one walk of the
    hierarchy indexes them all; a miss re-walks it, at most every `rescan_s`
    (a churning node must not walk thousands of directories each tick). On a
    host without cgroup2 the kernel's id names nothing: every lookup is None.
    """

    def __init__(self, mount: Path | None, rescan_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.mount, self.rescan_s, self.clock = mount, rescan_s, clock
        self._paths: dict[int, str] = {}
        self._walked_at = float("-inf")

    @classmethod
    def of_this_host(cls, mounts: Path = Path("/proc/self/mounts")) -> CgroupPaths:
        """Over this host's cgroup2 mount if the memory controller is there. On a hybrid host (memory on
        v1, an empty v2 tree beside it) a process's v2 path says nothing about its memory cgroup or its
        container: better no owner than a wrong one."""
        try:
            mount = cgroup2_mount(read_kernel_text(mounts))
            controllers = (mount / "cgroup.controllers").read_text().split() if mount else []
        except OSError:
            return cls(None)
        return cls(mount if "memory" in controllers else None)

    def path_of(self, cgroup_id: int) -> str | None:
        if self.mount is None or cgroup_id <= 0:
            return None
        if cgroup_id not in self._paths and self.clock() - self._walked_at >= self.rescan_s:
            self._walk()
        return self._paths.get(cgroup_id)

    def _walk(self) -> None:
        assert self.mount is not None
        self._walked_at = self.clock()
        paths = {}
        for directory, _subdirs, _files in os.walk(self.mount):
            relative = os.path.relpath(directory, self.mount)
            try:
                paths[os.stat(directory).st_ino] = "/" if relative == "." else "/" + relative
            except OSError:
                continue  # removed while walking
        self._paths = paths


def own_free_bytes() -> int | None:
    """Free memory under the daemon's own memory cgroup's limit; None when no limit binds it. Luxuries (alert
    charts, evidence) check it first: alerting must never need memory the steady daemon lacks."""
    cgroup = memory_cgroup_of(os.getpid())
    room = headroom(cgroup) if cgroup else None
    return room.free_bytes if room else None


def cpu_stat_path(proc_cgroup: str, root: Path = CGROUP_ROOT) -> Path | None:
    """The cpu.stat of the CPU cgroup named in /proc/PID/cgroup text: v1's cpu controller, else v2's."""
    unified = None
    for line in proc_cgroup.split("\n"):
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if "cpu" in controllers.split(","):
            return root / controllers / path.lstrip("/") / "cpu.stat"
        if hierarchy == "0" and controllers == "":
            unified = root / path.lstrip("/") / "cpu.stat"
    return unified


def throttled_s(stat: dict[str, int]) -> float:
    """Seconds a CPU cgroup's tasks waited on its quota so far (v1 throttled_time ns, v2 throttled_usec)."""
    return stat.get("throttled_time", 0) / 1e9 + stat.get("throttled_usec", 0) / 1e6


def own_throttled_s(root: Path = CGROUP_ROOT) -> float | None:
    """Seconds the daemon's own CPU cgroup has been throttled by a CPU quota so far; None when unreadable."""
    try:
        path = cpu_stat_path(read_kernel_text(Path("/proc/self/cgroup")), root)
    except OSError:
        return None
    stat = keyed_ints(path) if path else {}
    return throttled_s(stat) if stat else None
