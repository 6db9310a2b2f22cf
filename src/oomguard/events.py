"""Typed values that cross module boundaries, and the one ctypes mirror of the BPF structs.

The C structs live in bpf/oomguard.c; each has exactly one mirror here.
tests/test_events.py checks the sizes against the types bcc generates.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, fields, replace

import numpy as np

TASK_COMM_LEN = 16
SOURCE_KMALLOC = 0
SOURCE_PAGE = 1
SOURCES = ("kmalloc", "page")
RSS_MEMBERS = ("file", "anon", "swapents", "shmem")


class CSampler(ctypes.Structure):
    _fields_ = [
        ("seen", ctypes.c_uint64),
        ("sampled", ctypes.c_uint64),
        ("countdown", ctypes.c_uint32),
        ("weight", ctypes.c_uint32),
    ]


class CAllocStats(ctypes.Structure):
    _fields_ = [
        ("bytes", ctypes.c_uint64 * len(SOURCES)),
        ("samples", ctypes.c_uint64 * len(SOURCES)),
    ]


class CRssStats(ctypes.Structure):
    _fields_ = [("bytes", ctypes.c_int64 * len(RSS_MEMBERS))]


class COomEvent(ctypes.Structure):
    _fields_ = [
        ("timestamp_ns", ctypes.c_uint64),
        ("cgroup_id", ctypes.c_uint64),
        ("total_vm_kb", ctypes.c_uint64),
        ("anon_rss_kb", ctypes.c_uint64),
        ("file_rss_kb", ctypes.c_uint64),
        ("shmem_rss_kb", ctypes.c_uint64),
        ("victim_pid", ctypes.c_uint32),
        ("victim_uid", ctypes.c_uint32),
        ("trigger_pid", ctypes.c_uint32),
        ("oom_score_adj", ctypes.c_int32),
        ("victim_comm", ctypes.c_char * TASK_COMM_LEN),
        ("trigger_comm", ctypes.c_char * TASK_COMM_LEN),
    ]


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
    def from_c(cls, raw: COomEvent) -> "OomKill":
        return cls(
            timestamp_ns=raw.timestamp_ns,
            victim_pid=raw.victim_pid,
            victim_comm=raw.victim_comm.decode("utf-8", "replace"),
            victim_uid=raw.victim_uid,
            total_vm_kb=raw.total_vm_kb,
            anon_rss_kb=raw.anon_rss_kb,
            file_rss_kb=raw.file_rss_kb,
            shmem_rss_kb=raw.shmem_rss_kb,
            oom_score_adj=raw.oom_score_adj,
            trigger_pid=raw.trigger_pid,
            trigger_comm=raw.trigger_comm.decode("utf-8", "replace"),
            cgroup_id=raw.cgroup_id,
        )


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

    def __len__(self) -> int:
        return len(self.pid)

    def select(self, keep: np.ndarray) -> "AllocSnapshot":
        """The rows where `keep` (a boolean mask) is true."""
        return replace(self, **{f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name != "monotonic_s"})
