"""Estimate accuracy: per-process kmalloc bytes from sampling against the exact count.

Calibration at N=1 (every event counted) gives the workload's bytes per
poll() call and its start-up bytes, so any run's exact total is known from
the number of calls it reports. Then, with the controller running against a
background storm (so N is well above 1), processes allocating 1 to 64 MB/s
run for a window, and each one's sampled estimate is compared with its exact
total. Baseline in the same run: the same processes at N=1.

    sudo .venv/bin/python bench/accuracy.py
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from oomguard.bpf.events import SOURCE_KMALLOC
from oomguard.bpf.tracer import Tracer
from oomguard.config import defaults
from oomguard.sampling.controller import SampleRateController

from common import build_workload

TARGET_ERROR = 0.05
RATES_MB_S = (1, 4, 16, 64)


def row(tracer: Tracer, pid: int) -> tuple[int, int]:
    snap = tracer.snapshot()
    i = np.flatnonzero(snap.pid == pid)
    return (int(snap.kmalloc_bytes[i[0]]), int(snap.kmalloc_samples[i[0]])) if len(i) else (0, 0)


def run_poll(workload: Path, *args: str) -> tuple[int, int]:
    """(pid, calls made) of one workload run."""
    child = subprocess.Popen([str(workload), *args], stdout=subprocess.PIPE, text=True)
    out = child.communicate(timeout=600)[0].strip()
    return child.pid, int(out) if out else int(args[-1])


def calibrate(tracer: Tracer, workload: Path) -> tuple[float, float]:
    """(start-up bytes, bytes per poll call) at N=1."""
    tracer.set_sample_rate(SOURCE_KMALLOC, 1)
    pid0, _ = run_poll(workload, "poll", "0")
    pid1, _ = run_poll(workload, "poll", "100000")
    startup, total = row(tracer, pid0)[0], row(tracer, pid1)[0]
    return startup, (total - startup) / 100_000


def controller_loop(tracer: Tracer, stop: threading.Event, ns: list[int]) -> None:
    controller = SampleRateController(defaults().sampling.target_events_per_sec, initial_n=1)
    before, last = tracer.counters().kmalloc.seen, time.monotonic()
    while not stop.wait(1.0):
        now, seen = time.monotonic(), tracer.counters().kmalloc.seen
        tracer.set_sample_rate(SOURCE_KMALLOC, controller.update(seen - before, now - last).n)
        ns.append(controller.n)
        before, last = seen, now


def measure(tracer: Tracer, workload: Path, bytes_per_call: float, window_s: int, storm: bool) -> list[tuple]:
    """Per rate: (MB/s, exact bytes, estimate, samples) for processes run side by side."""
    stop, ns = threading.Event(), []
    storms = ([subprocess.Popen([str(workload), "poll-for", str(window_s + 4)], stdout=subprocess.DEVNULL)]
              if storm else [])
    controller = threading.Thread(target=controller_loop, args=(tracer, stop, ns)) if storm else None
    if controller:
        controller.start()
        time.sleep(3)  # let N settle on the storm
    results: dict[int, tuple[int, int]] = {}
    threads = [threading.Thread(target=lambda r=r: results.__setitem__(r, run_poll(
        workload, "poll-paced", str(int(r * 1e6 / bytes_per_call)), str(window_s)))) for r in RATES_MB_S]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    if controller:
        controller.join()
    for s in storms:
        s.wait()
    out = []
    for rate in RATES_MB_S:
        pid, calls = results[rate]
        estimate, samples = row(tracer, pid)
        out.append((rate, calls, estimate, samples, ns[-1] if ns else 1))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=30, help="seconds each process allocates")
    args = parser.parse_args()
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp, Tracer() as tracer:
        workload = build_workload(Path(tmp))
        startup, per_call = calibrate(tracer, workload)
        print(f"calibration at N=1: {per_call:.1f} bytes per poll() call, {startup:,.0f} start-up bytes")
        print(f"window {args.window}s; controller on, target {defaults().sampling.target_events_per_sec:,} "
              "sampled/s, against an unpaced poll() storm\n")
        print(f"{'MB/s':>5} {'mode':<22} {'exact MB':>9} {'estimate MB':>12} {'samples':>8} {'error':>7} "
              f"{'claimed 1-sigma':>16}")
        for storm, mode in ((False, "baseline N=1, no storm"), (True, "sampled, storm")):
            if not storm:
                tracer.set_sample_rate(SOURCE_KMALLOC, 1)
            for rate, calls, estimate, samples, n in measure(tracer, workload, per_call, args.window, storm):
                exact = startup + calls * per_call
                error = estimate / exact - 1
                claimed = 1 / math.sqrt(samples) if samples else float("inf")
                if storm:
                    worst = max(worst, abs(error))
                label = mode if not storm else f"{mode}, N={n}"
                print(f"{rate:>5} {label:<22} {exact / 1e6:>9.2f} {estimate / 1e6:>12.2f} {samples:>8,} "
                      f"{error:>+7.2%} {claimed:>16.2%}")
    verdict = "meets" if worst < TARGET_ERROR else "MISSES"
    print(f"\nworst sampled error for processes over 1 MB/s: {worst:.2%} ({verdict} the {TARGET_ERROR:.0%} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
