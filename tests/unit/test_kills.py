"""Kernel log parsing, pairing kills from two sources, and attribution of victims."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from oomguard.bpf.events import OomKill
from oomguard.identity.attribution import attribute
from oomguard.identity.cgroup import CgroupPaths, MemoryCgroup
from oomguard.identity.owners import Owners
from oomguard.identity.pods import PodDirectory
from oomguard.identity.procfs import Identity, ProcessDirectory
from oomguard.kills.kmsg import parse_record
from oomguard.kills.report import KillAttributor, KillCorrelator, cross_check

LINE = ("6,2103,5789423319,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,"
        "oom_memcg=/process_api/9b/oomguard-test-fa,task_memcg=/process_api/9b/oomguard-test-fa/inner,"
        "task=ogworkload,pid=6835,uid=0\n")


def kill(pid=6835, comm="ogworkload", uid=0) -> OomKill:
    return OomKill(timestamp_ns=5789423319000, victim_pid=pid, victim_comm=comm, victim_uid=uid, total_vm_kb=68268,
                   anon_rss_kb=65280, file_rss_kb=964, shmem_rss_kb=0, oom_score_adj=0, trigger_pid=pid,
                   trigger_comm=comm, cgroup_id=1)


def test_parse_the_real_line():
    record = parse_record(LINE)
    assert record.monotonic_us == 5789423319
    assert record.constraint == "CONSTRAINT_MEMCG"
    assert record.oom_memcg == "/process_api/9b/oomguard-test-fa"
    assert record.task_memcg == "/process_api/9b/oomguard-test-fa/inner"
    assert (record.task, record.pid, record.uid) == ("ogworkload", 6835, 0)


def test_parse_global_oom_and_odd_lines():
    global_oom = parse_record("3,1,10,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,"
                              "mems_allowed=0,global_oom,task_memcg=/user.slice,task=java,pid=7,uid=1000")
    assert global_oom.constraint == "CONSTRAINT_NONE" and global_oom.oom_memcg is None and global_oom.uid == 1000
    comma = parse_record("6,1,1,-;oom-kill:constraint=CONSTRAINT_MEMCG,oom_memcg=/a,b,task_memcg=/a,b/c,"
                         "task=x,pid=9,uid=0")
    assert comma.oom_memcg == "/a,b" and comma.task_memcg == "/a,b/c"
    for junk in ("", "6,1,1,-;Memory cgroup out of memory: Killed process 1", "no semicolon",
                 "6,1,x,-;oom-kill:pid=1", "6,1,1,-;oom-kill:task=x,pid=abc", "\xff\xfe;oom-kill:"):
        assert parse_record(junk) is None


def test_pairs_by_pid_and_times_out_lonely_halves():
    correlator = KillCorrelator(window_s=1.0)
    record = parse_record(LINE)
    correlator.add_record(record, now=10.0)
    correlator.add_kill(kill(), now=10.2)
    correlator.add_kill(kill(pid=7, comm="lonely"), now=10.2)
    assert correlator.ready(10.3) == [(kill(), record)]
    assert correlator.ready(11.0) == []
    assert correlator.ready(11.3) == [(kill(pid=7, comm="lonely"), None)]
    other = parse_record(LINE.replace("pid=6835", "pid=8"))
    correlator.add_record(other, now=20.0)
    assert correlator.ready(21.0) == [(None, other)]


def test_cross_check():
    record = parse_record(LINE)
    assert cross_check(kill(), record) is None
    assert "comm" in cross_check(kill(comm="other"), record)
    assert "uid" in cross_check(kill(uid=5), record)
    long_comm = parse_record(LINE.replace("task=ogworkload", "task=averyveryverylongname"))
    assert cross_check(kill(comm="averyveryverylo"), long_comm) is None  # comm is cut at 15 characters


def test_attribution_from_the_cache_after_the_victim_is_gone(tmp_path):
    uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    cgroup = f"/kubepods/burstable/pod{uid}/" + "cd" * 32
    (tmp_path / "pods" / f"shop_cart_{uid}" / "app").mkdir(parents=True)
    directory = ProcessDirectory(
        identify=lambda pid: Identity("ogworkload", MemoryCgroup(1, cgroup), attribute(cgroup)))
    directory.learn(np.array([6835], dtype=np.uint32))  # seen while alive
    limits = {}
    attributor = KillAttributor(Owners(directory, PodDirectory(tmp_path / "pods")),
                                read_limit=lambda cg: limits.setdefault(cg.path, 64 << 20))
    in_pod = LINE.replace("task_memcg=/process_api/9b/oomguard-test-fa/inner", f"task_memcg={cgroup}")
    report = attributor.report(kill(), parse_record(in_pod))
    assert report.attribution.pod_uid == uid and report.attribution.container_id == "cd" * 32
    assert (report.pod.namespace, report.pod.pod, report.pod.container) == ("shop", "cart", "app")
    assert report.limit_bytes == 64 << 20 and list(limits) == ["/process_api/9b/oomguard-test-fa"]
    # never seen alive: the kernel log's task_memcg attributes it
    unknown = KillAttributor(Owners(ProcessDirectory(identify=lambda pid: Identity("-", None, None)),
                                    PodDirectory(Path("/nonexistent"))), read_limit=lambda cg: None)
    report = unknown.report(None, parse_record(LINE))
    assert report.attribution.cgroup_path == "/process_api/9b/oomguard-test-fa/inner"


def test_the_kernels_cgroup_wins_over_one_cached_before_the_process_moved(tmp_path):
    """Seen first in its parent's cgroup (between fork and the runtime's move into the container), killed
    in the container: the kill is the container's (seen in CI as "of host; cgroup /")."""
    uid = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    container = f"/kubepods/burstable/pod{uid}/" + "cd" * 32
    directory = ProcessDirectory(identify=lambda pid: Identity("ogworkload", MemoryCgroup(1, "/"), attribute("/")))
    directory.learn(np.array([6835], dtype=np.uint32))  # seen before the move
    attributor = KillAttributor(Owners(directory, PodDirectory(tmp_path)), read_limit=lambda cg: 64 << 20)
    report = attributor.report(kill(), parse_record(LINE.replace("task_memcg=/process_api/9b/oomguard-test-fa/inner",
                                                                 f"task_memcg={container}")))
    assert report.attribution.cgroup_path == container and report.attribution.pod_uid == uid
    reads = iter([Identity("ogworkload", MemoryCgroup(1, "/"), attribute("/")),
                  Identity("ogworkload", MemoryCgroup(1, container), attribute(container))])
    moved = ProcessDirectory(identify=lambda pid: next(reads), cgroup_paths=CgroupPaths(None))
    moved.learn(np.array([6835], dtype=np.uint32))
    assert moved.reread(6835).cgroup == MemoryCgroup(1, container)  # at the kill, whatever is cached
