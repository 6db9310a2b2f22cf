"""`oomguard run` end to end: live rates, a real OOM kill, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from cgroups import memory_cgroup, procs_file

pytestmark = pytest.mark.kernel
MIB = 1 << 20


def our_program_names() -> set[str]:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], check=True, capture_output=True, text=True).stdout
    return {p.get("name", "") for p in json.loads(out)}


def read_lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def wait_for(lines: queue.Queue, predicate, seconds: float, seen: list[str]) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if predicate(line):
            return line
    raise AssertionError(f"not seen within {seconds}s; output was:\n" + "\n".join(seen[-40:]))


def test_run_shows_rates_and_a_real_oom_kill_then_stops_clean(tmp_path, workload):
    policy = tmp_path / "policy.toml"
    policy.write_text('[sampling]\ninterval = "500ms"\ninitial_rate = 1\n[output]\ntop_pids = 5\n')
    daemon = subprocess.Popen([sys.executable, "-m", "oomguard.cli", "run", "-c", str(policy)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(daemon.stdout, lines), daemon=True).start()
    seen: list[str] = []
    leaker = None
    try:
        wait_for(lines, lambda l: "tracing kmalloc" in l, 30, seen)
        leaker = subprocess.Popen([str(workload), "leak", "256", "20"], stdout=subprocess.DEVNULL)
        # the leaker's row: ~12.8 MiB/s of pages
        row = wait_for(lines, lambda l: l.split()[:2] == [str(leaker.pid), "ogworkload"], 10, seen)
        page_rate = row.split()[3]
        assert page_rate.endswith("MiB"), row
        assert 4 <= float(page_rate[:-3]) <= 40, row

        with memory_cgroup(64 * MIB) as cgroup:
            procs = procs_file(cgroup)
            hog = subprocess.Popen([str(workload), "hog", "500"],
                                   preexec_fn=lambda: procs.write_text(str(os.getpid())))
            assert hog.wait(timeout=30) == -9
            kill = wait_for(lines, lambda l: l.startswith("OOM KILL"), 5, seen)
        assert f"pid {hog.pid} (ogworkload)" in kill
    finally:
        if leaker:
            leaker.kill()
            leaker.wait()
        daemon.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            raise
    assert code == 0
    assert time.monotonic() - started < 2.0
    time.sleep(0.2)  # detached raw-tracepoint programs are freed after an RCU grace period
    assert not {"kmalloc", "mm_page_alloc"} & our_program_names()
