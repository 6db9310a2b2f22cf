"""Hostile input on the real kernel: process and cgroup names no UTF-8 decodes beside a leaking pod, and the daemon
killed the instant the kernel kills a process it warned of."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import pytest

from support import (
    Daemon,
    free_port,
    http_receiver,
    leak_to_kill,
    memory_cgroup,
    metric_samples,
    oom_kills_in,
    procs_file,
    wait_for_len,
)

pytestmark = pytest.mark.kernel
MIB = 1 << 20
CUT = "x€€€€€".encode()[:15]  # 15 bytes ending inside a 3-byte character: what prctl(PR_SET_NAME) keeps
NAMES = {CUT: "x€€€€\\xe2\\x82", b"cr\rname": "cr\\rname", b"\xff\xfe-raw": "\\xff\\xfe-raw"}


def renamed(name: bytes) -> list[str]:
    """A process that names itself `name` (only a process may: its own /proc/self/comm) and keeps allocating,
    so it is among the busiest the console, top and the metrics show."""
    script = ("import os, time\nfd = os.open('/proc/self/comm', os.O_WRONLY)\n"
              f"os.write(fd, {name!r})\nos.close(fd)\n"
              "import mmap\nblock = b'x' * (4 << 20)\n"
              "for _ in range(3000):\n    area = mmap.mmap(-1, len(block))\n    area.write(block)\n"
              "    area.close()\n    time.sleep(0.02)\n")  # fresh pages each time: a heap would reuse its own
    return [sys.executable, "-c", script]


def test_names_no_utf8_decodes_neither_stop_the_daemon_nor_top_nor_hide_a_leak(tmp_path, workload):
    port = free_port()
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\ninitial_rate = 1\n[output]\ntop_pids = 10\n'
                      f'[metrics]\nlisten = "127.0.0.1:{port}"\ntop_pids = 20\n[state]\ndir = "{tmp_path / "s"}"\n')
    policy.chmod(0o600)
    hostile_cgroup = os.fsdecode(b"oomguard-test-bad\xff\xfename-" + uuid.uuid4().hex[:6].encode())
    named: list[subprocess.Popen] = []
    daemon = None
    try:
        with memory_cgroup(256 * MIB, relative=hostile_cgroup) as cgroup:
            procs = procs_file(cgroup)
            for name in NAMES:
                named.append(subprocess.Popen(renamed(name), preexec_fn=lambda: procs.write_text(str(os.getpid()))))
            time.sleep(0.5)
            assert {open(f"/proc/{p.pid}/comm", "rb").read()[:-1] for p in named} == set(NAMES)
            daemon = Daemon(policy)
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 30)
            shown = daemon.wait_for(lambda l: "x€€€€\\xe2\\x82" in l, 20)  # the console table names it, escaped
            pre, confirmed = leak_to_kill(daemon, workload)
            top = subprocess.run([sys.executable, "-m", "oomguard.cli", "top", "-c", str(policy), "-n", "3"],
                                 capture_output=True, text=True, timeout=90, env={**os.environ, "COLUMNS": "250"})
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                metrics = response.read().decode("utf-8")  # strict: valid UTF-8 whatever the names
            alive = daemon.process.poll() is None
    finally:
        for process in named:
            process.kill()
            process.wait()
        code = daemon.stop()[0] if daemon else None
    assert alive and code == 0, "\n".join(daemon.seen[-40:])
    assert "ALERT pre-OOM" in pre and "ALERT confirmed" in confirmed
    assert "\\xe2\\x82" in shown and not any("Traceback" in line for line in daemon.seen)
    assert top.returncode == 0 and "Traceback" not in top.stderr, top.stderr[-2000:]
    shown_in_top = [escaped for escaped in NAMES.values() if escaped in top.stdout]
    assert shown_in_top, top.stdout[-3000:]  # at least one of the three among top's busiest, as its bytes
    cgroups = {sample.labels.get("cgroup", "") for samples in metric_samples(metrics).values() for sample in samples}
    assert any("oomguard-test-bad\\xff\\xfename" in c for c in cgroups), cgroups  # its bytes shown, page valid


def test_sigkill_the_instant_of_the_kill_loses_no_kill_and_states_no_false_alarm(tmp_path, workload):
    """The daemon warned of a leak and is SIGKILLed the moment the kernel's kill counter moves: restarted, it
    confirms the alert from the kernel's evidence exactly once and counts no false alarm."""
    state = tmp_path / "state"
    with http_receiver() as receiver:
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[metrics]\nlisten = ""\n'
                          f'[state]\ndir = "{state}"\n[alerts]\nurls = ["{receiver.url}"]\n')
        policy.chmod(0o600)
        first = Daemon(policy)
        second = None
        killed_at: list[float] = []
        try:
            first.wait_for(lambda l: "tracing kmalloc" in l, 30)
            with memory_cgroup(128 * MIB) as cgroup:
                procs = procs_file(cgroup)
                before = oom_kills_in(cgroup)

                def kill_daemon_at_the_kill() -> None:
                    deadline = time.monotonic() + 60
                    while time.monotonic() < deadline and oom_kills_in(cgroup) == before:
                        time.sleep(0.0005)
                    os.kill(first.process.pid, signal.SIGKILL)
                    killed_at.append(time.monotonic())

                leaker = subprocess.Popen([str(workload), "leak", "300", "30", "5"], stdout=subprocess.DEVNULL,
                                          preexec_fn=lambda: procs.write_text(str(os.getpid())))
                first.wait_for(lambda l: l.startswith("ALERT pre-OOM"), 20)
                watcher = threading.Thread(target=kill_daemon_at_the_kill)
                watcher.start()
                assert leaker.wait(timeout=30) == -9
                watcher.join(65)
                assert first.process.wait(timeout=10) == -signal.SIGKILL
                first_lines = list(first.seen)
                second = Daemon(policy)
                confirmed = second.wait_for(lambda l: l.startswith("ALERT confirmed"), 30)
                time.sleep(3)  # six ticks: a cleared "false alarm" would come on the first
            wait_for_len(receiver.payloads, 2, 20)
            time.sleep(2)  # anything more it would send (a second confirmation, a cleared) has come by now
        finally:
            code = second.stop()[0] if second else None
            if first.process.poll() is None:
                first.process.kill()
    titles = [p["title"] for p in receiver.payloads]
    tallies = json.loads((state / "alerts.json").read_text())["tallies"]
    assert code == 0 and killed_at, "\n".join((second.seen if second else first.seen)[-40:])
    assert sum("confirmed" in t for t in titles) == 1 and not any("cleared" in t for t in titles), titles
    assert not any(line.startswith("ALERT confirmed") for line in first_lines)  # killed before it could say so
    assert "ALERT confirmed" in confirmed and "foreseen" in confirmed
    assert tallies["foreseen"] == 1 and tallies["false_alarms"] == 0 and tallies["unforeseen"] == 0, tallies
    assert any("came while oomguard was not running" in line for line in second.seen), second.seen[-20:]
