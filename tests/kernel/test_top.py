"""`oomguard top` live on the real kernel."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support import memory_cgroup, procs_file

pytestmark = pytest.mark.kernel
MIB = 1 << 20


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
