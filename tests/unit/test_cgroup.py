"""Memory cgroup of a process and its headroom, on fake trees and on this machine."""

from __future__ import annotations

import os

import pytest

from oomguard.identity.cgroup import Headroom, MemoryCgroup, headroom, memory_cgroup_of, parse_proc_cgroup
from oomguard.identity.procfs import meminfo

V1 = """12:pids:/
4:memory:/kubepods/burstable/pod1/abc
0::/
"""
V2 = "0::/system.slice/nginx.service\n"


@pytest.mark.parametrize("text, expected", [
    (V1, MemoryCgroup(1, "/kubepods/burstable/pod1/abc")),
    (V2, MemoryCgroup(2, "/system.slice/nginx.service")),
    ("4:cpu,memory:/a:b/c\n", MemoryCgroup(1, "/a:b/c")),  # a colon inside the path survives
    ("garbage\n\n0::/ok\n", MemoryCgroup(2, "/ok")),
    ("", None),
    ("3:cpu:/x\n", None),
])
def test_parse_proc_cgroup(text, expected):
    assert parse_proc_cgroup(text) == expected


def write(path, text):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_v2_headroom_takes_the_smallest_limit_up_the_tree(tmp_path):
    leaf = tmp_path / "kubepods.slice" / "pod.slice" / "ctr.scope"
    leaf.mkdir(parents=True)
    (tmp_path / "kubepods.slice" / "memory.max").write_text("max\n")
    (tmp_path / "kubepods.slice" / "pod.slice" / "memory.max").write_text("1048576\n")
    (leaf / "memory.max").write_text("4194304\n")
    (leaf / "memory.current").write_text("524288\n")
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\n")
    room = headroom(MemoryCgroup(2, "/kubepods.slice/pod.slice/ctr.scope"), root=tmp_path)
    assert room == Headroom(524288, 1048576, "/kubepods.slice/pod.slice")
    assert room.free_bytes == 524288


def test_v1_unlimited_and_unreadable(tmp_path):
    leaf = tmp_path / "memory" / "a"
    leaf.mkdir(parents=True)
    (leaf / "memory.usage_in_bytes").write_text("100\n")
    (leaf / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    (leaf / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    room = headroom(MemoryCgroup(1, "/a"), root=tmp_path)
    assert room == Headroom(100, None, None) and room.free_bytes is None
    assert headroom(MemoryCgroup(1, "/missing"), root=tmp_path) is None


def test_host_available(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    assert meminfo(path)["MemAvailable"] == 20000000 * 1024 and meminfo(path)["MemTotal"] == 24000000 * 1024
    assert meminfo(tmp_path / "absent") == {}
    assert meminfo()["MemAvailable"] > 0


def test_this_process_has_a_readable_memory_cgroup():
    mine = memory_cgroup_of(os.getpid())
    assert mine is not None and mine.path.startswith("/")
    assert memory_cgroup_of(2**31 - 1) is None
