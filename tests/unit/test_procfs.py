"""What is read from /proc: process names, the live pid list, meminfo."""

from __future__ import annotations

import os

import numpy as np

from oomguard.identity.procfs import ProcessDirectory, process_name
from oomguard.sampling.collector import live_pids


def test_process_name_of_self_and_of_gone_pid(tmp_path):
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "comm").write_text("bash\n")
    assert process_name(12, proc=tmp_path) == "bash"
    assert process_name(13, proc=tmp_path) == "-"


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
