"""Shared fixtures. Under CI=true a missing prerequisite fails the run; elsewhere it skips (see support.require)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import WORKLOAD_SOURCE, require


@pytest.fixture(autouse=True)
def _kernel_prerequisites(request):
    if request.node.get_closest_marker("kernel") is None:
        return
    from oomguard.bpf.preflight import all_checks, failed_required

    require(os.geteuid() == 0, "kernel tests need root: run `make test` as root")
    failures = failed_required(all_checks())
    require(not failures, "; ".join(f"{c.name}: {c.detail} ({c.fix})" for c in failures))


@pytest.fixture(scope="session")
def workload(tmp_path_factory) -> Path:
    """The compiled tests/workloads/workload.c."""
    require(shutil.which("gcc") is not None, "gcc not found: apt-get install gcc (`make setup` does)")
    binary = tmp_path_factory.mktemp("bin") / "workload"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(WORKLOAD_SOURCE)], check=True)
    return binary


@pytest.fixture(scope="session")
def callsites(tmp_path_factory) -> Path:
    """The compiled tests/workloads/callsites.c: allocations through named functions (and a JIT's shape)."""
    require(shutil.which("gcc") is not None, "gcc not found: apt-get install gcc (`make setup` does)")
    binary = tmp_path_factory.mktemp("bin") / "callsites"
    # frame pointers, as a program built for profiling has them: user stacks unwind through them
    subprocess.run(["gcc", "-O0", "-fno-omit-frame-pointer", "-Wall", "-o", str(binary),
                    str(WORKLOAD_SOURCE.with_name("callsites.c"))], check=True)
    return binary


@pytest.fixture(scope="module")
def tracer():
    """One loaded Tracer per test module (loading takes about a second)."""
    require(os.geteuid() == 0, "kernel tests need root: run `make test` as root")
    from oomguard.bpf.tracer import Tracer

    with Tracer() as loaded:
        yield loaded
