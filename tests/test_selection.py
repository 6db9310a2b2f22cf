"""Process selection: the filter's rules, and its kernel-side cgroup v2 enforcement on the real kernel."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from cgroups import unified_cgroup
from conftest import require
from oomguard.cgroup import MemoryCgroup
from oomguard.config import from_mapping
from oomguard.daemon import Watchdog
from oomguard.events import SOURCE_KMALLOC
from oomguard.procfs import Identity
from oomguard.selection import (MODE_EXCLUDE, MODE_INCLUDE, MODE_OFF, ProcessFilter, cgroup2_mount,
                                kernel_cgroup_filter, under)


def who(command: str, path: str | None) -> Identity:
    return Identity(command, MemoryCgroup(1, path) if path else None, None)


def test_prefix_is_by_whole_components():
    assert under("/kubepods/burstable/pod1", "/kubepods")
    assert under("/kubepods", "/kubepods/")
    assert not under("/kubepods2/x", "/kubepods")
    assert under("/anything", "/")


@pytest.mark.parametrize("rules, identity, allowed", [
    (ProcessFilter(), who("bash", "/"), True),
    (ProcessFilter(include_cgroups=("/kubepods",)), who("java", "/kubepods/pod1/c"), True),
    (ProcessFilter(include_cgroups=("/kubepods",)), who("java", "/system.slice/x"), False),
    (ProcessFilter(include_cgroups=("/kubepods",)), who("java", None), False),  # unknown cgroup: not included
    (ProcessFilter(exclude_cgroups=("/system.slice",)), who("sshd", "/system.slice/ssh.service"), False),
    (ProcessFilter(exclude_cgroups=("/system.slice",)), who("java", "/kubepods/x"), True),
    (ProcessFilter(exclude_cgroups=("/system.slice",)), who("java", None), True),
    (ProcessFilter(include_commands=("java",)), who("java", "/"), True),
    (ProcessFilter(include_commands=("java",)), who("python3", "/"), False),
    (ProcessFilter(exclude_commands=("oomguard",)), who("oomguard", "/"), False),
    (ProcessFilter(include_cgroups=("/k",), exclude_commands=("pause",)), who("pause", "/k/p"), False),
])
def test_filter_rules(rules, identity, allowed):
    assert rules.allows(identity) is allowed


def test_cgroup2_mount_and_kernel_mode(tmp_path):
    assert cgroup2_mount("cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\nproc /proc proc rw 0 0\n") == \
        Path("/sys/fs/cgroup/unified")
    assert cgroup2_mount("proc /proc proc rw 0 0\n") is None
    (tmp_path / "kubepods").mkdir()
    assert kernel_cgroup_filter(ProcessFilter(include_cgroups=("/kubepods",)), tmp_path) == \
        (MODE_INCLUDE, [tmp_path / "kubepods"])
    assert kernel_cgroup_filter(ProcessFilter(exclude_cgroups=("/kubepods",)), tmp_path) == \
        (MODE_EXCLUDE, [tmp_path / "kubepods"])
    # a path the v2 tree does not have (v1-only): the kernel cannot be exact, user space filters
    assert kernel_cgroup_filter(ProcessFilter(include_cgroups=("/absent",)), tmp_path) == (MODE_OFF, [])
    assert kernel_cgroup_filter(ProcessFilter(include_cgroups=("/kubepods",)), None) == (MODE_OFF, [])
    assert kernel_cgroup_filter(ProcessFilter(include_commands=("x",)), tmp_path) == (MODE_OFF, [])


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


@pytest.mark.kernel
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


@pytest.mark.kernel
def test_watchdog_leaves_excluded_commands_out_of_its_rates(tracer, workload):
    policy = from_mapping({"sampling": {"initial_rate": 1}, "selection": {"exclude_commands": ["ogworkload"]}}, "t")
    watchdog = Watchdog(tracer, policy)
    watchdog.tick()
    child = subprocess.Popen([str(workload), "poll-for", "1"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    tick = watchdog.tick()
    child.wait()
    assert child.pid in tracer.snapshot().pid.tolist()  # recorded by the kernel (no v2 rule)...
    assert child.pid not in tick.rates.pid.tolist()  # ...but not watched
