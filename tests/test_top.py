"""`oomguard top`: rows and rendering from hand-made rates, and the live command on the real kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from rich.console import Console

from cgroups import memory_cgroup, procs_file
from oomguard.cgroup import Headroom, MemoryCgroup
from oomguard.rates import Rates
from oomguard.procfs import Identity, ProcessDirectory
from oomguard.top import render, top_rows

MIB = 1 << 20


def FakeDirectory() -> ProcessDirectory:
    return ProcessDirectory(identify=lambda pid: Identity(f"proc{pid}", MemoryCgroup(2, f"/pods/{pid}"), None))


def rates() -> Rates:
    return Rates(interval_s=1.0, pid=np.array([5, 6, 7], dtype=np.uint32),
                 kmalloc_bytes_per_s=np.array([100.0, 0.0, 0.0]), page_bytes_per_s=np.array([0.0, 8 * MIB, 0.0]),
                 kmalloc_samples=np.array([4, 0, 0]), page_samples=np.array([0, 100, 0]),
                 rss_bytes=np.array([MIB, 32 * MIB, 0]), rss_bytes_per_s=np.array([0.0, 4.0 * MIB, 0.0]))


def test_rows_are_ordered_idle_left_out_and_carry_headroom():
    rows = top_rows(rates(), 10, FakeDirectory(), read_headroom=lambda cg: Headroom(32 * MIB, 64 * MIB, cg.path))
    assert [r.pid for r in rows] == [6, 5]
    assert rows[0].cgroup == "/pods/6" and rows[0].room.free_bytes == 32 * MIB
    assert rows[0].error == pytest.approx(0.1)  # 100 page samples
    assert rows[1].error == pytest.approx(0.5)  # 4 kmalloc samples


def test_render_shows_every_column():
    rows = top_rows(rates(), 10, FakeDirectory(), read_headroom=lambda cg: Headroom(32 * MIB, 64 * MIB, cg.path))
    console = Console(record=True, width=200)
    console.print(render(rows, "title"))
    text = console.export_text()
    line = next(l for l in text.splitlines() if "proc6" in l)
    for cell in ("6", "proc6", "owner unknown", "/pods/6", "0B", "8.0MiB", "10%", "32.0MiB", "4.0MiB", "32.0MiB of 64.0MiB"):
        assert cell in line, (cell, line)


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


@pytest.mark.kernel
def test_top_shows_a_leaking_process_with_its_cgroup_and_headroom(tmp_path, workload):
    policy = tmp_path / "policy.toml"
    policy.write_text('[sampling]\ninterval = "500ms"\ninitial_rate = 1\n')
    with memory_cgroup(256 * MIB) as cgroup:
        procs = procs_file(cgroup)
        leaker = subprocess.Popen([str(workload), "leak", "200", "30"], stdout=subprocess.DEVNULL,
                                  preexec_fn=lambda: procs.write_text(str(os.getpid())))
        try:
            result = subprocess.run([sys.executable, "-m", "oomguard.cli", "top", "-c", str(policy), "-n", "4",
                                     "--count", "50"], capture_output=True, text=True, timeout=60,
                                    env={**os.environ, "COLUMNS": "250"})
        finally:
            leaker.kill()
            leaker.wait()
    assert result.returncode == 0, result.stderr
    rows = [l for l in result.stdout.splitlines() if f" {leaker.pid} " in l and "ogworkload" in l]
    assert rows, result.stdout
    assert cgroup.name in rows[-1]
    assert "of 256.0MiB" in rows[-1]
