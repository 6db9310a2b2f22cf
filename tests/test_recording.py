"""record/replay: round trips, deterministic replay, clear errors, and a recording of a real kill."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from cgroups import memory_cgroup, procs_file
from oomguard.config import defaults
from oomguard.errors import OomguardError
from oomguard.guard import Observation
from oomguard.recording import Recorder, kill_from_json, kill_to_json, observation_from_json, observation_to_json, replay
from test_alerts import CGROUP, kill_report, subject

MIB = 1 << 20


def leak_recording(path):
    """90 s steady at 20 MiB (with a little noise), then a 2 MiB/s leak into a 128 MiB limit until the kill."""
    recorder = Recorder(path, "node-1", 1.0)
    usage, t = 20 * MIB, 0
    while usage < 128 * MIB:
        usage = 20 * MIB + (t % 3) * 4096 if t < 90 else usage + 2 * MIB
        recorder.tick(100.0 + t, [Observation(CGROUP, usage, 128 * MIB, subject())])
        t += 1
    recorder.kill(100.0 + t, kill_report())
    recorder.close()


def replayed(path) -> str:
    out = io.StringIO()
    replay(path, defaults(), out)
    return out.getvalue()


def test_round_trips():
    seen = Observation(CGROUP, 5, 10, subject())
    assert observation_from_json(observation_to_json(seen)) == seen
    assert kill_from_json(kill_to_json(kill_report())) == kill_report()


def test_replay_is_deterministic_and_finds_the_warning_before_the_kill(tmp_path):
    path = tmp_path / "leak.jsonl.gz"
    leak_recording(path)
    first, second = replayed(path), replayed(path)
    assert first == second
    lines = first.splitlines()
    # the leak starts at +90 s; its growth (an 8-sample slope) is anomalous and the limit within
    # the horizon from +95 s
    assert lines[0].startswith("+   95.0s ALERT pre-OOM replay-0001: [oomguard] pre-OOM on node-1")
    assert lines[1].startswith("+  144.0s ALERT confirmed replay-0001: ")
    assert lines[-1] == "kills foreseen 1, unforeseen 0, false alarms 0; lead time median 49s, min 49s"


def test_bad_recordings_name_the_fix(tmp_path):
    with pytest.raises(OomguardError, match="no such file"):
        replayed(tmp_path / "absent.gz")
    junk = tmp_path / "junk.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(OomguardError, match="not an oomguard recording") as caught:
        replayed(junk)
    assert "oomguard record -o FILE" in caught.value.fix


@pytest.mark.kernel
def test_record_a_real_kill_and_replay_it(tmp_path, workload):
    recording = tmp_path / "real.jsonl.gz"
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{tmp_path / "s"}"\n'
                      '[detect]\nwarmup = 6\nlearn_after = "2s"\n')
    recorder = subprocess.Popen([sys.executable, "-m", "oomguard.cli", "record", "-c", str(policy),
                                 "-o", str(recording)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in recorder.stdout:  # loaded and ticking
            if "tracing kmalloc" in line:
                break
        with memory_cgroup(128 * MIB) as cgroup:
            procs = procs_file(cgroup)
            leaker = subprocess.Popen([str(workload), "leak", "300", "15", "10"], stdout=subprocess.DEVNULL,
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
