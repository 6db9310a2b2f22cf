"""Per-process state stays bounded under churn and tells a reused pid from its predecessor (pure, fast)."""

from __future__ import annotations

import time

import numpy as np

from oomguard.config import SelectionConfig
from oomguard.identity.owners import Owners
from oomguard.identity.pods import PodDirectory
from oomguard.identity.procfs import Identity, ProcessDirectory, start_time
from oomguard.identity.selection import Selection


def fake_directory(reads: list[int], started: dict[int, int]) -> ProcessDirectory:
    def identify(pid: int) -> Identity:
        reads.append(pid)
        return Identity(f"proc{pid}-{started.get(pid, 0)}", None, None, started.get(pid, 0))

    return ProcessDirectory(identify=identify, started=started.get)


def test_dead_pids_are_forgotten_a_tick_after_they_die_and_never_relearnt():
    reads: list[int] = []
    directory = fake_directory(reads, {})
    selection = Selection(directory, SelectionConfig())
    sizes = []
    for tick in range(50):  # 1,000 new short-lived processes each tick, each seen once by the kernel
        born = np.arange(10_000 + tick * 1000, 11_000 + tick * 1000, dtype=np.uint32)
        live = np.concatenate([np.arange(1, 101, dtype=np.uint32), born[:10]])  # most already gone
        seen = np.concatenate([np.arange(1, 101, dtype=np.uint32), born])
        selection.admit(None, seen, live)
        sizes.append(len(directory))
    assert max(sizes) <= 100 + 2 * 10  # the long-lived, this tick's survivors, last tick's (forgotten next)
    assert len(reads) == 100 + 50 * 10  # dead-on-arrival pids are never read from /proc


def test_churn_costs_o_changes_not_o_pids_squared():
    directory = fake_directory([], {})
    selection = Selection(directory, SelectionConfig())
    live = np.arange(1, 20_001, dtype=np.uint32)
    selection.admit(None, live, live)
    started = time.perf_counter()
    for tick in range(20):  # 20,000 processes, 500 replaced per tick
        live = np.concatenate([live[500:], np.arange(30_000 + tick * 500, 30_500 + tick * 500, dtype=np.uint32)])
        selection.admit(None, live, live)
    per_tick_ms = (time.perf_counter() - started) / 20 * 1000
    assert len(directory) <= 20_500 and per_tick_ms < 50, per_tick_ms


def test_a_reused_pid_is_told_apart_by_its_start_time(tmp_path):
    started = {7: 100}
    directory = fake_directory([], started)
    owners = Owners(directory, PodDirectory(tmp_path))
    assert owners.owner_of(7).command == "proc7-100"
    started[7] = 250  # pid 7 exited and a new process took it between two ticks
    assert owners.owner_of(7).command == "proc7-250"
    assert owners.cached(8) is None  # passes over every process never read /proc


def test_start_time_of_this_process_and_of_an_odd_command(tmp_path):
    import os

    assert start_time(os.getpid()) is not None and start_time(2**31 - 1) is None
    (tmp_path / "9").mkdir()
    fields = " ".join(str(i) for i in range(4, 60))  # field 4 onwards, numbered as in proc(5)
    (tmp_path / "9" / "stat").write_text(f"9 (a) b ) c) S {fields}\n")  # ")" in the command
    assert start_time(9, proc=tmp_path) == 22


def test_the_cgroup_index_follows_churn_reuse_and_container_turnover():
    """cgroups_of (what each tick groups by) agrees with the identities, whatever joined, left or was reused."""
    from oomguard.bpf.events import Departed
    from oomguard.identity.cgroup import MemoryCgroup
    from oomguard.identity.procfs import CGROUPS_KEPT_UNUSED

    started: dict[int, int] = {}
    cgroup_of: dict[int, str] = {}

    def identify(pid: int) -> Identity:
        path = cgroup_of.get(pid)
        return Identity(f"p{pid}", MemoryCgroup(2, path) if path else None, None, started.get(pid, 0))

    directory = ProcessDirectory(identify=identify, started=started.get, cgroup_paths=None)
    rng = np.random.default_rng(3)
    live = np.zeros(0, dtype=np.uint32)
    for tick in range(60):  # 60 containers come and go, 40 processes each, some without a cgroup
        born = np.arange(1000 + tick * 40, 1040 + tick * 40, dtype=np.uint32)
        for pid in born.tolist():
            cgroup_of[pid] = f"/kubepods/pod{tick}/c" if pid % 7 else ""
        live = np.union1d(live, born)
        directory.learn(born)
        leaving = live[rng.random(len(live)) < 0.5] if tick > 2 else np.zeros(0, np.uint32)
        directory.forget(leaving)
        live = np.setdiff1d(live, leaving)
        index, cgroups = directory.cgroups_of(live)
        expected = [cgroup_of[p] or None for p in live.tolist()]
        assert [cgroups[i].path if i >= 0 else None for i in index.tolist()] == expected
    assert len(directory._cgroups) <= 2 * len(set(filter(None, expected))) + CGROUPS_KEPT_UNUSED + 1  # bounded

    # a reused pid moves to its new container; a process named only by its exit record is found too
    pid = int(live[0])
    started[pid], cgroup_of[pid] = 99, "/kubepods/podnew/c"
    directory.current(pid)
    index, cgroups = directory.cgroups_of(np.array([pid], np.uint32))
    assert cgroups[int(index[0])].path == "/kubepods/podnew/c"
    directory.departed({5: Departed("cron", 0)})
    index, _ = directory.cgroups_of(np.array([5], np.uint32))
    assert index.tolist() == [-1] and directory.known(5).command == "cron"  # named, with no cgroup on v1
