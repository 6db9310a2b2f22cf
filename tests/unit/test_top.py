"""`oomguard top`: rows and rendering from hand-made rates, and the live command on the real kernel."""

from __future__ import annotations

import numpy as np
import pytest
from rich.console import Console

from oomguard.identity.cgroup import Headroom, MemoryCgroup
from oomguard.identity.owners import Owners
from oomguard.identity.pods import PodDirectory
from oomguard.identity.procfs import Identity, ProcessDirectory
from oomguard.sampling.rates import Rates
from oomguard.views.table import busiest_rows
from oomguard.views.top import render

MIB = 1 << 20


def owners(tmp_path) -> Owners:
    directory = ProcessDirectory(identify=lambda pid: Identity(f"proc{pid}", MemoryCgroup(2, f"/pods/{pid}"), None))
    return Owners(directory, PodDirectory(tmp_path))


def room_of(row):
    return Headroom(32 * MIB, 64 * MIB, row.cgroup)


def rates() -> Rates:
    return Rates(interval_s=1.0, pid=np.array([5, 6, 7], dtype=np.uint32),
                 kmalloc_bytes_per_s=np.array([100.0, 0.0, 0.0]), page_bytes_per_s=np.array([0.0, 8 * MIB, 0.0]),
                 kmalloc_samples=np.array([4, 0, 0]), page_samples=np.array([0, 100, 0]),
                 rss_bytes=np.array([MIB, 32 * MIB, 0]), rss_bytes_per_s=np.array([0.0, 4.0 * MIB, 0.0]))


def test_rows_are_ordered_idle_left_out(tmp_path):
    rows = busiest_rows(rates(), 10, owners(tmp_path).owner_of)
    assert [r.pid for r in rows] == [6, 5]
    assert rows[0].cgroup == "/pods/6"
    assert rows[0].error == pytest.approx(0.1)  # 100 page samples
    assert rows[1].error == pytest.approx(0.5)  # 4 kmalloc samples


def test_render_shows_every_column(tmp_path):
    rows = busiest_rows(rates(), 10, owners(tmp_path).owner_of)
    console = Console(record=True, width=200)
    console.print(render(rows, "title", room_of))
    text = console.export_text()
    line = next(l for l in text.splitlines() if "proc6" in l)
    for cell in ("6", "proc6", "owner unknown", "/pods/6", "0B", "8.0MiB", "10%", "32.0MiB", "4.0MiB",
                 "32.0MiB of 64.0MiB"):
        assert cell in line, (cell, line)


def test_top_shows_the_running_daemons_table_and_says_so_and_when_it_stops():
    from oomguard.config import defaults
    from oomguard.views.top import run_top

    row = {"pid": 6, "command": "java", "owner": "pod shop/cart container app", "cgroup": "-",
           "kmalloc_bytes_per_s": 0.0, "page_bytes_per_s": 8.0 * MIB, "rss_bytes": 32 * MIB,
           "rss_bytes_per_s": 4.0 * MIB, "error": 0.1}
    status = {"pid": 4242, "updated": 1e12, "sample_rates": [16, 1], "events_per_s": [12000.0, 300.0],
              "top": [row]}
    answers = [status, status, status]
    console = Console(record=True, width=250)
    assert run_top(replace_interval(defaults(), 0.01), iterations=2, count=20, console=console,
                   daemon=lambda: answers.pop(0)) == 0
    text = console.export_text()
    assert "from the running daemon (pid 4242" in text and "kmalloc 1-in-16" in text and "(it keeps its top 1)" in text
    line = next(l for l in text.splitlines() if "java" in l)
    assert "pod shop/cart container app" in line and "8.0MiB" in line
    gone = Console(record=True, width=250)
    assert run_top(replace_interval(defaults(), 0.01), iterations=5, console=gone,
                   daemon=iter([status, None, None]).__next__) == 1
    assert "the daemon stopped answering" in gone.export_text()


def replace_interval(config, seconds):
    from dataclasses import replace

    return replace(config, sampling=replace(config.sampling, interval=seconds))
