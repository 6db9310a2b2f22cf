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
