"""Process selection: the filter's rules, and its kernel-side cgroup v2 enforcement on the real kernel."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from oomguard.bpf.events import FILTER_EXCLUDE as MODE_EXCLUDE
from oomguard.bpf.events import FILTER_INCLUDE as MODE_INCLUDE
from oomguard.bpf.events import FILTER_OFF as MODE_OFF
from oomguard.bpf.events import SOURCE_KMALLOC
from oomguard.config import from_mapping
from oomguard.identity.cgroup import cgroup2_mount
from oomguard.identity.procfs import ProcessDirectory
from oomguard.identity.selection import Selection
from oomguard.sampling.collector import Collector

from support import require, unified_cgroup

pytestmark = pytest.mark.kernel


@contextlib.contextmanager
def v2_cgroup():
    mount = cgroup2_mount(Path("/proc/self/mounts").read_text())
    require(mount is not None, "no cgroup2 hierarchy mounted: mount -t cgroup2 none /sys/fs/cgroup/unified")
    with unified_cgroup(mount) as path:
        yield path


def poll_child(workload, cgroup: Path | None) -> int:
    procs = cgroup / "cgroup.procs" if cgroup else None
    child = subprocess.Popen([str(workload), "poll", "20000"],
                             preexec_fn=(lambda: procs.write_text(str(os.getpid()))) if procs else None)
    assert child.wait(timeout=30) == 0
    return child.pid


@pytest.mark.parametrize("mode", [MODE_INCLUDE, MODE_EXCLUDE])
def test_kernel_filter_records_only_selected_cgroups(tracer, workload, mode):
    tracer.set_sample_rate(SOURCE_KMALLOC, 1)
    with v2_cgroup() as cgroup:
        tracer.set_cgroup_filter(mode, [cgroup])
        try:
            inside, outside = poll_child(workload, cgroup), poll_child(workload, None)
            snapshot = tracer.snapshot()
        finally:
            tracer.set_cgroup_filter(MODE_OFF, [])
    samples = dict(zip(snapshot.pid.tolist(), snapshot.kmalloc_samples.tolist()))
    # 20,000 poll() calls each; a child's few allocations between fork and
    # joining its cgroup are charged before the filter can see it there
    selected, rejected = (inside, outside) if mode == MODE_INCLUDE else (outside, inside)
    assert samples.get(selected, 0) >= 20_000
    assert samples.get(rejected, 0) < 1_000


def test_selection_leaves_excluded_commands_out_of_the_rates(tracer, workload):
    policy = from_mapping({"sampling": {"initial_rate": 1}, "selection": {"exclude_commands": ["ogworkload"]}}, "t")
    collector, selection = Collector(tracer, policy.sampling), Selection(ProcessDirectory(), policy.selection)
    collector.tick()
    child = subprocess.Popen([str(workload), "poll-for", "1"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    tick = collector.tick()
    rates = selection.admit(tick.rates, tick.seen_pids, tick.live_pids)
    child.wait()
    assert child.pid in tracer.snapshot().pid.tolist()  # recorded by the kernel (no v2 rule)...
    assert child.pid in tick.rates.pid.tolist() and child.pid not in rates.pid.tolist()  # ...but not watched
    assert np.isin(rates.pid, tick.rates.pid).all()
