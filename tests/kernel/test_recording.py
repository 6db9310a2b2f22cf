"""record/replay: a recording of a real kill, replayed offline."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from support import memory_cgroup, procs_file

pytestmark = pytest.mark.kernel
MIB = 1 << 20


def test_record_a_real_kill_and_replay_it(tmp_path, workload):
    recording = tmp_path / "real.jsonl.gz"
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{tmp_path / "s"}"\n'
                      '')
    recorder = subprocess.Popen([sys.executable, "-m", "oomguard.cli", "record", "-c", str(policy),
                                 "-o", str(recording)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in recorder.stdout:  # loaded and ticking
            if "tracing kmalloc" in line:
                break
        with memory_cgroup(128 * MIB) as cgroup:
            procs = procs_file(cgroup)
            leaker = subprocess.Popen([str(workload), "leak", "300", "30", "5"], stdout=subprocess.DEVNULL,
                                      preexec_fn=lambda: procs.write_text(str(os.getpid())))
            assert leaker.wait(timeout=30) == -9
        time.sleep(2)  # the kill pairs with its kernel log line within 1 s
    finally:
        recorder.send_signal(signal.SIGTERM)
        output = recorder.communicate(timeout=10)[0]
    assert recorder.returncode == 0, output
    assert "ALERT pre-OOM" in output and "ALERT confirmed" in output  # printed, not sent
    result = subprocess.run([sys.executable, "-m", "oomguard.cli", "replay", "-c", str(policy), str(recording)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = [line.split(" ALERT ")[1].split()[0] for line in result.stdout.splitlines() if " ALERT " in line]
    assert kinds[:2] == ["pre-OOM", "confirmed"], result.stdout
    assert "kills foreseen 1" in result.stdout
    again = subprocess.run([sys.executable, "-m", "oomguard.cli", "replay", "-c", str(policy), str(recording)],
                           capture_output=True, text=True, timeout=60)
    assert again.stdout == result.stdout
