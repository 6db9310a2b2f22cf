"""The foreground daemon's text: rate table and OOM kill line."""

from __future__ import annotations

import numpy as np
import pytest

from oomguard.bpf.events import Counters, OomKill, SourceCounters
from oomguard.identity.attribution import attribute
from oomguard.identity.owners import Owner
from oomguard.identity.pods import PodNames
from oomguard.kills.kmsg import KernelOomRecord
from oomguard.kills.report import KillReport
from oomguard.sampling.rates import Rates
from oomguard.views.console import oom_line, sampling_line
from oomguard.views.table import busiest_rows, format_rows


def test_rate_table_lists_the_busiest_first_and_skips_idle():
    rates = Rates(interval_s=1.0, pid=np.array([7, 8, 9], dtype=np.uint32),
                  kmalloc_bytes_per_s=np.array([0.0, 2048.0, 0.0]), page_bytes_per_s=np.array([1 << 20, 0.0, 0.0]),
                  kmalloc_samples=np.array([0, 2, 0]), page_samples=np.array([256, 0, 0]),
                  rss_bytes_per_s=np.zeros(3),
                  rss_bytes=np.array([64 << 20, 1 << 20, 0]))
    lines = format_rows(busiest_rows(rates, 10, lambda pid: Owner(f"proc{pid}", None, None, None)))
    assert len(lines) == 3
    assert lines[1].split() == ["7", "proc7", "0B", "1.0MiB", "64.0MiB", "owner", "unknown"]
    assert lines[2].split() == ["8", "proc8", "2.0KiB", "0B", "1.0MiB", "owner", "unknown"]
    assert busiest_rows(rates, 1, lambda pid: Owner(f"proc{pid}", None, None, None))[0].pid == 7


KILL = OomKill(timestamp_ns=1, victim_pid=42, victim_comm="leaky", victim_uid=1000, total_vm_kb=200_000,
               anon_rss_kb=65_536, file_rss_kb=0, shmem_rss_kb=0, oom_score_adj=0, trigger_pid=43,
               trigger_comm="other", cgroup_id=9)
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CGROUP = f"/kubepods/burstable/pod{UID}/" + "ab" * 32
RECORD = KernelOomRecord(monotonic_us=5, constraint="CONSTRAINT_MEMCG", oom_memcg=f"/kubepods/burstable/pod{UID}",
                         task_memcg=CGROUP, task="leaky", pid=42, uid=1000)


def test_oom_line_names_victim_owner_limit_and_trigger():
    report = KillReport(kill=KILL, record=RECORD, attribution=attribute(CGROUP),
                        pod=PodNames("shop", "cart", "app"), limit_bytes=64 << 20, mismatch=None)
    line = oom_line(report)
    for part in ("pid 42 (leaky)", "pod shop/cart container app (container abababababab, pod " + UID + ")",
                 f"cgroup {CGROUP}", f"CONSTRAINT_MEMCG, limit 64.0MiB of /kubepods/burstable/pod{UID}",
                 "rss 64.0MiB", "triggered by pid 43 (other)"):
        assert part in line, (part, line)
    assert "DISAGREE" not in line


def test_oom_line_for_half_reports():
    only_ring = oom_line(KillReport(KILL, None, None, None, None, None))
    with pytest.raises(ValueError, match="needs the ring-buffer event"):
        KillReport(None, None, None, None, None, None)
    assert "owner unknown" in only_ring and "no kernel log line" in only_ring
    only_log = oom_line(KillReport(None, RECORD, attribute(CGROUP), None, None, None))
    assert "pid 42 (leaky)" in only_log and "kernel log only" in only_log and "limit unknown" in only_log
    disagree = oom_line(KillReport(KILL, RECORD, None, None, None, "ring buffer says comm 'a'"))
    assert "SOURCES DISAGREE: ring buffer says comm 'a'" in disagree


def test_sampling_line_gives_per_second_figures():
    before = Counters(SourceCounters(1000, 10), SourceCounters(100, 1), 0)
    after = Counters(SourceCounters(3000, 30), SourceCounters(300, 3), 2)
    line = sampling_line(after, before, 2.0, (100, 100))
    assert "kmalloc 1-in-100: 1.0k events/s, 10 sampled/s" in line
    assert "page 1-in-100: 100 events/s, 1 sampled/s" in line
    assert "ring-buffer drops 2" in line
