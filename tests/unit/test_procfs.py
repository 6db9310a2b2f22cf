"""What is read from /proc: process names, the live pid list, meminfo."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from oomguard.bpf.events import Departed
from oomguard.detection.descriptors import BUDGET_S, KEEP_S, OpenedSince
from oomguard.identity.cgroup import CgroupPaths, MemoryCgroup
from oomguard.identity.procfs import Held, Identity, ProcessDirectory, held_open, open_descriptors, process_name
from oomguard.sampling.collector import live_pids


def test_process_name_of_self_and_of_gone_pid(tmp_path):
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "comm").write_text("bash\n")
    assert process_name(12, proc=tmp_path) == "bash"
    assert process_name(13, proc=tmp_path) == "-"


def test_held_open_counts_memfd_and_tmpfs_files_once_each_and_every_descriptor(tmp_path):
    mib = 1 << 20
    before = held_open(os.getpid())
    memfd = os.memfd_create("og-test")
    shm_path = Path("/dev/shm") / f"og-test-{os.getpid()}"
    opened = [memfd]
    try:
        os.write(memfd, b"x" * 3 * mib)
        opened.append(os.dup(memfd))  # the same file twice: counted once
        if shm_path.parent.is_dir():
            shm = os.open(shm_path, os.O_CREAT | os.O_RDWR, 0o600)
            opened.append(shm)
            os.write(shm, b"y" * 2 * mib)
        disk = os.open(tmp_path / "disk", os.O_CREAT | os.O_RDWR)  # not shared memory, wherever tmp_path is
        opened.append(disk)
        os.write(disk, b"z" * mib)
        expected = 3 * mib + (2 * mib if shm_path.exists() else 0) + (mib if _on_tmpfs(tmp_path) else 0)
        now = held_open(os.getpid())
        assert now.shared_bytes - before.shared_bytes == expected
        assert now.descriptors - before.descriptors == len(opened)
    finally:
        for fd in opened:
            os.close(fd)
        shm_path.unlink(missing_ok=True)
    assert held_open(os.getpid()) == before
    assert held_open(2**22 + 1) == Held()  # no such process


def _on_tmpfs(path: Path) -> bool:
    mounts = [line.split() for line in Path("/proc/self/mounts").read_text().splitlines()]
    best = max((m for m in mounts if str(path).startswith(m[1].rstrip("/") + "/")), key=lambda m: len(m[1]))
    return best[2] == "tmpfs"


def test_open_descriptors_counts_this_process_and_says_none_for_a_gone_one(tmp_path):
    before = open_descriptors(os.getpid())
    read, write = os.pipe()
    try:
        assert before is not None and open_descriptors(os.getpid()) == before + 2
    finally:
        os.close(read)
        os.close(write)
    assert open_descriptors(os.getpid()) == before
    assert open_descriptors(12, proc=tmp_path) is None


def test_descriptors_are_counted_once_per_climb_and_their_growth_is_net_per_second():
    counts = {1: 14_000, 2: 8_000}
    reads: list[int] = []

    def count(pid):
        reads.append(pid)
        return counts.get(pid)  # pid 3 is gone

    opened = OpenedSince(count)
    opened.update(100.0, [1, 2, 3])
    counts.update({1: 13_990, 2: 14_500})
    opened.update(101.0, [1, 2, 3])  # still climbing: not counted again
    assert reads == [1, 2, 3, 3]  # the gone one is tried again next tick
    assert opened.rate(2, 110.0, 14_500) == 650.0 and opened.rate(1, 110.0, 13_990) == -1.0
    assert opened.rate(3, 110.0, 50) == 0.0  # never counted
    assert opened.rate(2, 100.5, 9_000) == 0.0  # counted under a second ago
    opened.update(102.0, [1])  # pid 2's cgroup not seen climbing for a tick: its count stands (KEEP_S)
    opened.update(103.0, [1, 2])
    assert opened.rate(2, 104.0, 14_600) == (14_600 - 8_000) / 4.0
    opened.update(103.0 + KEEP_S, [1])  # not climbing for KEEP_S: forgotten, taken again next climb
    counts[2] = 14_600
    opened.update(104.0 + KEEP_S, [1, 2])
    assert opened.rate(2, 105.0 + KEEP_S, 14_700) == 100.0
    # a climbing cgroup of many processes with many descriptors is counted over a few ticks, BUDGET_S a tick
    clock = [0.0]

    def slow_count(pid):
        clock[0] += BUDGET_S / 4  # each count takes a quarter of the budget
        return 9_000

    busy = OpenedSince(slow_count, clock=lambda: clock[0])
    busy.update(0.0, range(10))
    assert sorted(busy.since) == [0, 1, 2, 3]
    busy.update(1.0, range(10))
    busy.update(2.0, range(10))
    assert len(busy.since) == 10 and busy.since[3] == (0.0, 9_000) and busy.since[9] == (2.0, 9_000)


def test_live_pids_lists_numeric_entries_sorted(tmp_path):
    for name in ("12", "3", "self", "sys", "100"):
        (tmp_path / name).mkdir()
    assert live_pids(tmp_path).tolist() == [3, 12, 100]
    assert os.getpid() in live_pids().tolist()


def test_directory_looks_up_once_and_forgets():
    directory = ProcessDirectory()
    me = directory.identity(os.getpid())
    assert me.cgroup is not None and me.attribution is not None
    assert me.attribution.cgroup_path == me.cgroup.path
    assert directory.identity(os.getpid()) is me
    new = directory.learn(np.array([1, os.getpid()], dtype=np.uint32))
    assert new.tolist() == [1]  # only pid 1 was new
    assert directory.known(1).command != "-"
    directory.forget(np.array([os.getpid(), 1]))
    assert len(directory) == 0 and directory.known(1) is None
    assert directory.learn(np.array([1], dtype=np.uint32)).tolist() == [1]  # forgotten: learnt anew


GONE = Identity("-", None, None)  # what /proc gives for a process that has exited


def test_a_process_gone_before_it_was_read_is_named_from_its_exit(tmp_path):
    pod = tmp_path / "kubepods.slice" / "kubepods-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0.slice" / \
        ("cri-containerd-" + "ab" * 32 + ".scope")
    pod.mkdir(parents=True)
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    paths = CgroupPaths(tmp_path)
    directory = ProcessDirectory(identify=lambda pid: GONE, started=lambda pid: None, cgroup_paths=paths)
    directory.departed({7: Departed("cron-job", os.stat(pod).st_ino), 8: Departed("sh", 999_999_999)})
    who = directory.identity(7)
    assert who.command == "cron-job" and who.cgroup == MemoryCgroup(2, "/" + str(pod.relative_to(tmp_path)))
    assert who.attribution is not None and who.attribution.container_id == "ab" * 32
    assert who.attribution.pod_uid == "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert directory.identity(8) == Identity("sh", None, None)  # a cgroup that is gone: named, owner unknown
    assert directory.identity(9) == GONE  # no record: as before


def test_a_live_process_is_read_from_proc_even_with_an_exit_record_for_its_pid():
    alive = Identity("nginx", MemoryCgroup(1, "/docker/x"), None, 42)
    directory = ProcessDirectory(identify=lambda pid: alive, started=lambda pid: 42, cgroup_paths=CgroupPaths(None))
    directory.departed({7: Departed("old", 5)})
    assert directory.identity(7) == alive


def test_passes_that_never_read_proc_see_the_exit_records_too():
    read = []
    directory = ProcessDirectory(identify=lambda pid: read.append(pid) or GONE, started=lambda pid: None,
                                 cgroup_paths=CgroupPaths(None))
    directory.departed({7: Departed("cron-job", 0)})
    assert directory.known(7) == Identity("cron-job", None, None) and directory.known(8) is None
    assert read == []  # the metrics pass stays off /proc


def test_the_exit_records_last_one_tick():
    directory = ProcessDirectory(identify=lambda pid: GONE, started=lambda pid: None, cgroup_paths=CgroupPaths(None))
    directory.departed({7: Departed("a", 0)})
    directory.departed({})
    assert directory.identity(7) == GONE


def test_cgroup_ids_resolve_by_inode_and_misses_rewalk_at_most_every_rescan(tmp_path):
    clock = [0.0]
    paths = CgroupPaths(tmp_path, rescan_s=10, clock=lambda: clock[0])
    assert paths.path_of(os.stat(tmp_path).st_ino) == "/"
    late = tmp_path / "late"
    late.mkdir()
    assert paths.path_of(os.stat(late).st_ino) is None  # walked a moment ago: not again yet
    clock[0] = 11
    assert paths.path_of(os.stat(late).st_ino) == "/late"
    assert CgroupPaths(None).path_of(1) is None


def test_a_hybrid_host_gives_no_owner_from_the_v2_id(tmp_path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("\n")  # memory is on v1 there
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {tmp_path / 'unified'} cgroup2 rw 0 0\n")
    assert CgroupPaths.of_this_host(mounts).mount is None
    (tmp_path / "unified" / "cgroup.controllers").write_text("cpu memory\n")
    assert CgroupPaths.of_this_host(mounts).mount == tmp_path / "unified"
