"""The daemon's own footprint: memory, threads, fds, CPU idle and under a storm, start-to-READY time.

Runs `oomguard run` as systemd would (Type=notify: READY=1 on a socket of
this bench's), with the exporter and an alert URL configured (so everything
an alert needs is loaded), and reads /proc/PID/status, /proc/PID/fd and
/proc/PID/stat. Same-run baseline: a bare Python process that only imports
bcc and loads an empty raw-tracepoint program (bench/baselines/empty_raw_tp.c)
— the floor any bcc-based agent pays.

Phases: start (to READY=1; peak RSS is VmHWM), steady (30 s idle), storm
(~1 M kmalloc/s from poll() loops while 10,000 live processes sit in the
maps), after.

    .venv/bin/python bench/footprint.py      (root)
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

TARGETS = {"steady RssAnon MiB": 50.0, "steady RSS MiB": 120.0, "storm CPU % of a core": 2.0,
           "start to READY s": 3.0}
MIB = 1 << 20
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def status_of(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
            fields[name] = int(value.split()[0]) * 1024
        elif name == "Threads":
            fields[name] = int(value)
    fields["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system time of the process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_share(pid: int, seconds: float) -> float:
    before, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - start) * 100


def wait_ready(sock: socket.socket, process: subprocess.Popen, timeout: float = 60) -> float:
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < timeout:
        try:
            if b"READY=1" in sock.recv(4096):
                return time.monotonic() - started
        except TimeoutError:
            if process.poll() is not None:
                raise RuntimeError(f"exited with {process.returncode} before READY") from None
    raise RuntimeError("no READY=1 within the timeout")


BASELINE = """
import sys, time
from bcc import BPF
b = BPF(src_file=sys.argv[1].encode())
print("loaded", flush=True)
time.sleep(3600)
"""


def measure(command: list[str], ready, storm_s: float, steady_s: float, workload: Path, sleepers: int) -> dict:
    process = subprocess.Popen(command, **ready["popen"])
    pause = None
    try:
        startup = ready["wait"](process)
        time.sleep(2)  # first ticks
        peak = status_of(process.pid)["VmHWM"]
        idle = cpu_share(process.pid, steady_s)
        steady = status_of(process.pid)
        # 10,000 live processes in the maps, then a kmalloc storm
        pause = subprocess.Popen([str(workload), "sleepers", str(sleepers)], stdout=subprocess.PIPE, text=True,
                                 start_new_session=True)
        assert pause.stdout.readline().strip() == "ready"
        time.sleep(5)  # the daemon reads each newcomer's identity once: a one-off, not the storm's cost
        storm = [subprocess.Popen([str(workload), "poll-for", str(storm_s + 2)], stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
        time.sleep(1)
        busy = cpu_share(process.pid, storm_s)
        calls = sum(float(s.communicate(timeout=60)[0]) for s in storm)  # each prints its calls per second
        under_storm = status_of(process.pid)
        return {"start": startup, "peak": peak, "idle_cpu": idle, "steady": steady, "storm_cpu": busy,
                "storm": under_storm, "kmalloc_per_s": calls}
    finally:
        if pause is not None:
            os.killpg(pause.pid, signal.SIGKILL)  # the sleepers and their parent, whatever happened
            pause.wait()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="steady and storm phases, each")
    parser.add_argument("--pids", type=int, default=10_000, help="live processes during the storm")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="oomguard-footprint-"))
    workload = common.build_workload(work)
    notify = work / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    policy = work / "policy.toml"
    policy.write_text(f'[sampling]\nmax_pids = 16384\n[output]\ntop_pids = 0\n[state]\ndir = "{work / "state"}"\n'
                      '[alerts]\nurls = ["json://127.0.0.1:9/unused"]\n[metrics]\nlisten = "127.0.0.1:19843"\n')
    policy.chmod(0o600)
    env = {**os.environ, "NOTIFY_SOCKET": str(notify)}
    daemon = {"popen": {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL},
              "wait": lambda p: wait_ready(sock, p)}
    empty = Path(__file__).with_name("baselines") / "empty_raw_tp.c"

    def baseline_ready(process: subprocess.Popen) -> float:
        started = time.monotonic()
        assert process.stdout.readline().strip() == "loaded"
        return time.monotonic() - started

    bare = {"popen": {"stdout": subprocess.PIPE, "text": True}, "wait": baseline_ready}
    ours = measure([sys.executable, "-m", "oomguard.cli", "run", "-c", str(policy)], daemon, args.seconds,
                   args.seconds, workload, args.pids)
    base = measure([sys.executable, "-c", BASELINE, str(empty)], bare, args.seconds, args.seconds, workload,
                   args.pids)
    sock.close()
    rows = [
        ("start to READY s", ours["start"], base["start"]),
        ("peak RSS MiB (VmHWM)", ours["peak"] / MIB, base["peak"] / MIB),
        ("steady RSS MiB", ours["steady"]["VmRSS"] / MIB, base["steady"]["VmRSS"] / MIB),
        ("steady RssAnon MiB", ours["steady"]["RssAnon"] / MIB, base["steady"]["RssAnon"] / MIB),
        ("steady RssFile MiB", ours["steady"]["RssFile"] / MIB, base["steady"]["RssFile"] / MIB),
        ("threads", ours["steady"]["Threads"], base["steady"]["Threads"]),
        ("fds", ours["steady"]["fds"], base["steady"]["fds"]),
        ("idle CPU % of a core", ours["idle_cpu"], base["idle_cpu"]),
        ("storm CPU % of a core", ours["storm_cpu"], base["storm_cpu"]),
        (f"RSS MiB under the storm, {args.pids:,} live PIDs", ours["storm"]["VmRSS"] / MIB,
         base["storm"]["VmRSS"] / MIB),
    ]
    print(f"storm: {ours['kmalloc_per_s']:,.0f} kmalloc/s (poll() loops) with {args.pids:,} extra live processes\n")
    print(f"{'':<44} {'oomguard':>10} {'bare bcc + empty program':>26} {'ratio':>7}")
    for name, value, floor in rows:
        ratio = f"{value / floor:.2f}x" if floor else "-"
        print(f"{name:<44} {value:>10.2f} {floor:>26.2f} {ratio:>7}")
    print()
    ok = True
    for name, target in TARGETS.items():
        value = next(v for n, v, _ in rows if n == name)
        met = value <= target
        ok &= met
        print(f"{name}: {value:.2f} ({'meets' if met else 'MISSES'} the {target:g} target)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
