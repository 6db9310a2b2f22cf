"""What counting a suspect's descriptors costs (detection/descriptors.py), against the /proc read an alert
already makes for the same process (procfs.held_open), at 40, 1,000 and 9,000 open descriptors.

The daemon counts `/proc/PID/fd` once per process when its cgroup starts to climb (for at most BUDGET_S
a tick) and again inside held_open for the alert. Both run here on this process, holding pipes it opened;
interleaved rounds, the median call of each round. The model printed at the end: a climb's counting grows
with processes x descriptors; a tick spends at most BUDGET_S on it, so a cgroup of many processes with
many descriptors is counted over several ticks.
Exits 1 when counting costs more than held_open, 2 when the rounds spread too widely to judge.

    .venv/bin/python bench/descriptor_cost.py
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time

from oomguard.detection.descriptors import BUDGET_S
from oomguard.identity.procfs import held_open, open_descriptors

ROUNDS, CALLS = 5, 200
SPREAD = 0.3  # rounds whose medians differ by more than this share of their median: too noisy to judge


def per_call(read, pid: int) -> float:
    """Median seconds of one call over CALLS calls."""
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        read(pid)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    pid, opened, verdict = os.getpid(), [], 0
    try:
        print(f"{'open fds':>9} {'count (us)':>11} {'held_open (us)':>15} {'ratio':>6}  {'counted a tick':>14}"
              f"  {'ticks for 256':>13}")
        for target in (40, 1000, 9000):
            while (open_descriptors(pid) or 0) < target:
                opened.extend(os.pipe())
            counts, reads = [], []
            for _ in range(ROUNDS):  # interleaved: a slow moment of this VM hits both
                counts.append(per_call(open_descriptors, pid))
                reads.append(per_call(held_open, pid))
            count, read = statistics.median(counts), statistics.median(reads)
            spread = max((max(x) - min(x)) / statistics.median(x) for x in (counts, reads))
            per_tick = max(1, int(BUDGET_S / count) + 1)  # the count that crosses the budget is the last
            print(f"{open_descriptors(pid):>9,} {count * 1e6:>11.1f} {read * 1e6:>15.1f} {count / read:>6.2f}"
                  f"  {per_tick:>14}  {-(-256 // per_tick):>13}" + (f"  (rounds spread {spread:.0%}: too noisy "
                                                                      "to judge)" if spread > SPREAD else ""))
            if spread > SPREAD:
                verdict = max(verdict, 2)
            elif count > read:
                print(f"  MISSED: counting costs more than the read the alert already makes ({count / read:.2f}x)")
                verdict = 1
    finally:
        for fd in opened:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(f"model: a climb costs one count per process of its cgroup (held_open's scan adds one more at the "
          f"alert), processes x descriptors in all, once per climb; a tick spends at most "
          f"{BUDGET_S * 1e3:.0f} ms on it (plus one count); it does not grow with CPUs or with other cgroups")
    return verdict


if __name__ == "__main__":
    sys.exit(main())
