"""The kernel side's vocabulary: the constants the C source is compiled with, and the typed values read out.

The C structs are declared once, in oomguard.c; user space reads them through
the types bcc generates from that source (map keys and leaves, ring-buffer
events), never through a hand-written mirror. The constants below are the
one declaration of each: they reach the C code as -D flags (compile_flags).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from ..text import from_kernel

SOURCE_KMALLOC = 0
SOURCE_PAGE = 1
SOURCES = ("kmalloc", "page")
RSS_MEMBERS = ("file", "anon", "swapents", "shmem")  # the kernel's MM_* counters, in its order
# rss_stat reports absolute values: recording 1 change in 8 keeps each process's RSS within a few pages
# (8 x 4 KiB per CPU) of the truth, at an eighth of the hash updates (bench/kmalloc_cost.py measures it).
RSS_EVERY = 8
# Exits remembered between two ticks (command and cgroup id): ~8 per ms of churn at a 500 ms tick.
DEPARTED_MAX = 4096
CGROUP_FILTER_SLOTS = 16  # v2 cgroups the in-kernel selection filter can hold
FILTER_OFF, FILTER_INCLUDE, FILTER_EXCLUDE = 0, 1, 2  # modes of the in-kernel cgroup filter
# Deep sampling (call sites of suspect processes). A site's key carries its two stacks, DEEP_DEPTH frames
# each (innermost first: the faulting function and the kernel's path into the allocator are the first few;
# deeper frames are cut): 400 B a key, so the preallocated site map is ~1.9 MiB. The daemon empties it every
# tick and keeps the stacks taken near STACKS_PER_S, so 4,096 sites hold several seconds of distinct stacks.
DEEP_PIDS_MAX = 1024
DEEP_DEPTH = 24
DEEP_SITES_MAX = 4096

def compile_flags(max_pids: int) -> list[str]:
    """The -D flags that give oomguard.c every constant it shares with user space."""
    constants = {
        "MAX_PIDS": max_pids, "DEPARTED_MAX": DEPARTED_MAX,
        "SOURCE_KMALLOC": SOURCE_KMALLOC, "SOURCE_PAGE": SOURCE_PAGE,
        "NSOURCES": len(SOURCES), "RSS_MEMBERS": len(RSS_MEMBERS), "RSS_EVERY": RSS_EVERY,
        "MAX_CGROUP_FILTERS": CGROUP_FILTER_SLOTS,
        "FILTER_OFF": FILTER_OFF, "FILTER_INCLUDE": FILTER_INCLUDE, "FILTER_EXCLUDE": FILTER_EXCLUDE,
        "DEEP_PIDS_MAX": DEEP_PIDS_MAX, "DEEP_DEPTH": DEEP_DEPTH, "DEEP_SITES_MAX": DEEP_SITES_MAX,
    }
    return [f"-D{name}={value}" for name, value in constants.items()]


@dataclass(frozen=True)
class DeepSite:
    """Sampled allocations of one suspect process at one pair of stacks, since the last read."""

    pid: int
    user_stack: tuple[int, ...]  # return addresses, innermost first; () when the stack could not be walked
    kernel_stack: tuple[int, ...]
    source: int
    bytes: int  # weighted: an estimate of all bytes allocated there
    samples: int


@dataclass(frozen=True)
class OomKill:
    """One OOM kill reported by the kernel's oom:mark_victim tracepoint."""

    timestamp_ns: int  # CLOCK_MONOTONIC
    victim_pid: int
    victim_comm: str
    victim_uid: int
    total_vm_kb: int
    anon_rss_kb: int
    file_rss_kb: int
    shmem_rss_kb: int
    oom_score_adj: int
    trigger_pid: int
    trigger_comm: str
    cgroup_id: int

    @property
    def rss_bytes(self) -> int:
        return (self.anon_rss_kb + self.file_rss_kb + self.shmem_rss_kb) * 1024

    @classmethod
    def from_event(cls, raw: Any) -> OomKill:
        """From bcc's generated ctypes view of `struct oom_event`."""
        return cls(
            timestamp_ns=raw.timestamp_ns,
            victim_pid=raw.victim_pid,
            victim_comm=from_kernel(raw.victim_comm),
            victim_uid=raw.victim_uid,
            total_vm_kb=raw.total_vm_kb,
            anon_rss_kb=raw.anon_rss_kb,
            file_rss_kb=raw.file_rss_kb,
            shmem_rss_kb=raw.shmem_rss_kb,
            oom_score_adj=raw.oom_score_adj,
            trigger_pid=raw.trigger_pid,
            trigger_comm=from_kernel(raw.trigger_comm),
            cgroup_id=raw.cgroup_id,
        )


@dataclass(frozen=True)
class Departed:
    """A tracked process that exited, as the kernel saw it at its exit."""

    command: str
    cgroup_id: int  # v2 hierarchy id (0: unknown)


@dataclass(frozen=True)
class SourceCounters:
    """Events of one source that reached the BPF program, and those it recorded."""

    seen: int
    sampled: int


@dataclass(frozen=True)
class Counters:
    """Kernel-side counters, summed over CPUs; cumulative since load."""

    kmalloc: SourceCounters
    page: SourceCounters
    ringbuf_drops: int
    untracked: int = 0  # records lost because every per-process slot was taken (raise [sampling] max_pids)


@dataclass(frozen=True)
class AllocSnapshot:
    """Cumulative per-process sampled totals read from the BPF maps at one instant.

    Arrays are aligned and sorted by pid. Byte figures are estimates of all
    bytes allocated (samples scaled by N); sample counts give their precision.
    """

    monotonic_s: float
    pid: np.ndarray  # uint32
    kmalloc_bytes: np.ndarray  # uint64
    kmalloc_samples: np.ndarray  # uint64
    page_bytes: np.ndarray  # uint64
    page_samples: np.ndarray  # uint64
    rss_bytes: np.ndarray  # int64, latest RSS (anon+file+shmem), 0 when unknown
    exited: np.ndarray | None = None  # bool: the kernel saw the process exit (None: not known)

    def __len__(self) -> int:
        return len(self.pid)

    def select(self, keep: np.ndarray) -> AllocSnapshot:
        """The rows where `keep` (a boolean mask) is true."""
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self)
                                if f.name != "monotonic_s" and getattr(self, f.name) is not None})
