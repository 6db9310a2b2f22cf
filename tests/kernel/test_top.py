"""`oomguard top` live on the real kernel."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from support import Daemon, memory_cgroup, procs_file, wait_until

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
                                     "--count", "50", "--trace"], capture_output=True, text=True, timeout=60,
                                    env={**os.environ, "COLUMNS": "250"})
        finally:
            leaker.kill()
            leaker.wait()
    assert result.returncode == 0, result.stderr
    rows = [l for l in result.stdout.splitlines() if f" {leaker.pid} " in l and "ogworkload" in l]
    assert rows, result.stdout
    assert cgroup.name in rows[-1]
    assert "of 256.0MiB" in rows[-1]


def test_top_names_a_process_that_lived_less_than_one_tick(tmp_path, workload):
    """Each spike allocates 100 MiB in 50 ms and exits 50 ms later: gone from /proc long before the next
    500 ms tick reads the maps, so only the kernel's record of its exit can name it."""
    policy = tmp_path / "policy.toml"
    policy.write_text('[sampling]\ninterval = "500ms"\ninitial_rate = 1\n')
    top = subprocess.Popen([sys.executable, "-m", "oomguard.cli", "top", "-c", str(policy), "-n", "8", "--count", "20",
                            "--trace"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "COLUMNS": "250"})
    spikes = []
    try:
        time.sleep(4)  # loaded and ticking
        for _ in range(6):
            spike = subprocess.Popen([str(workload), "spike", "100", "0.05", "0.05"], stdout=subprocess.DEVNULL)
            spikes.append(spike)
            assert spike.wait(timeout=10) == 0
            time.sleep(0.3)
        out, err = top.communicate(timeout=60)
    finally:
        if top.poll() is None:
            top.kill()
            top.wait()
    assert top.returncode == 0, err
    pids = {str(s.pid) for s in spikes}
    rows = [l for l in out.splitlines() if any(f" {pid} " in l.split("│")[1:2][0] + " " for pid in pids
                                               if len(l.split("│")) > 2)]
    assert rows, out[-3000:]
    assert all(" ogworkload " in f" {r} " for r in rows), rows


def test_top_is_a_client_of_the_running_daemon_and_loads_no_programs_of_its_own(tmp_path, workload):
    state = tmp_path / "state"
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\ninitial_rate = 1\n[output]\ntop_pids = 0\n'
                      f'[state]\ndir = "{state}"\n[metrics]\nlisten = ""\n')
    with memory_cgroup(256 * MIB) as cgroup:
        daemon = Daemon(policy)
        leaker = None
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 60)
            leaker = subprocess.Popen([str(workload), "leak", "200", "30"], stdout=subprocess.DEVNULL,
                                      preexec_fn=lambda: procs_file(cgroup).write_text(str(os.getpid())))
            status = state / "status.json"
            wait_until(lambda: status.exists() and f'"pid": {leaker.pid},' in status.read_text(), 15)
            started = time.monotonic()
            result = subprocess.run([sys.executable, "-m", "oomguard.cli", "top", "-c", str(policy), "-n", "2"],
                                    capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "250"})
            took = time.monotonic() - started
        finally:
            if leaker:
                leaker.kill()
                leaker.wait()
            daemon.stop()
    assert result.returncode == 0, result.stderr
    assert f"from the running daemon (pid {daemon.process.pid}, tick " in result.stdout, result.stdout
    rows = [l for l in result.stdout.splitlines() if f" {leaker.pid} " in l and "ogworkload" in l]
    assert rows and cgroup.name in rows[-1] and "of 256.0MiB" in rows[-1], result.stdout
    assert took < 5, took  # two refreshes 0.5 s apart, and no BPF program compiled and loaded (seconds)
