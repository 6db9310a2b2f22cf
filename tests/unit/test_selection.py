"""Process selection: the filter's rules, and its kernel-side cgroup v2 enforcement on the real kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from oomguard.bpf.events import FILTER_EXCLUDE as MODE_EXCLUDE
from oomguard.bpf.events import FILTER_INCLUDE as MODE_INCLUDE
from oomguard.bpf.events import FILTER_OFF as MODE_OFF
from oomguard.identity.attribution import under_cgroup as under
from oomguard.identity.cgroup import MemoryCgroup, cgroup2_mount
from oomguard.identity.procfs import Identity
from oomguard.identity.selection import ProcessFilter, kernel_cgroup_filter


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
