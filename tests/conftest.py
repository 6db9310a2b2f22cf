"""Shared fixtures. Under CI=true a missing prerequisite fails the run; elsewhere it skips."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WORKLOAD_SOURCE = Path(__file__).with_name("workloads") / "workload.c"


def require(condition: bool, why: str) -> None:
    """Skip when a prerequisite is missing, except under CI, where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture(autouse=True)
def _kernel_prerequisites(request):
    if request.node.get_closest_marker("kernel") is None:
        return
    from oomguard.preflight import all_checks, failed_required

    require(os.geteuid() == 0, "kernel tests need root: run `sudo make test`")
    failures = failed_required(all_checks())
    require(not failures, "; ".join(f"{c.name}: {c.detail} ({c.fix})" for c in failures))


@pytest.fixture(scope="session")
def workload(tmp_path_factory) -> Path:
    """The compiled tests/workloads/workload.c."""
    require(shutil.which("gcc") is not None, "gcc not found: apt-get install gcc (`sudo make setup` does)")
    binary = tmp_path_factory.mktemp("bin") / "workload"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(WORKLOAD_SOURCE)], check=True)
    return binary


@pytest.fixture(scope="module")
def tracer():
    """One loaded Tracer per test module (loading takes about a second)."""
    if os.geteuid() != 0:
        require(False, "kernel tests need root: run `sudo make test`")
    from oomguard.loader import Tracer

    with Tracer() as loaded:
        yield loaded
