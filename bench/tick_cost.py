"""User-space tick cost (map read + rates + pruning) at 1,000 / 10,000 / 50,000 live PIDs.

The real BPF maps are filled with synthetic processes (pids above pid_max, so
they never clash with real ones); each tick 1% of them "exit" and are pruned
from the maps, and the rest allocate a little more. Baseline in the same run:
reading the same map the naive way, through bcc's per-entry Python iteration.

    sudo .venv/bin/python bench/tick_cost.py
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import sys
import time

import numpy as np

from oomguard.bpf.tracer import Tracer
from oomguard.sampling.collector import live_pids
from oomguard.sampling.rates import RateTracker

import common  # noqa: F401  (puts src/ on the import path)

FIRST_FAKE_PID = 10_000_000
TARGET_MS = 10.0


def fill(tracer: Tracer, pids: np.ndarray, scale: int) -> None:
    """Write cumulative totals for `pids` into both per-PID maps with BPF_MAP_UPDATE_BATCH."""
    from bcc.libbcc import lib

    keys = np.ascontiguousarray(pids, dtype=np.uint32)
    ncpus = tracer._ncpus
    allocs = np.zeros((len(keys), ncpus, 4), dtype=np.uint64)
    allocs[:, 0, 0] = scale * 1000  # kmalloc bytes on CPU 0
    allocs[:, 0, 1] = scale * 4096
    allocs[:, 0, 2] = scale
    allocs[:, 0, 3] = scale
    rss = np.zeros((len(keys), 4), dtype=np.int64)
    rss[:, 1] = 1 << 20
    for fd, values in ((tracer._allocs_fd, allocs), (tracer._rss_fd, rss)):
        count = ctypes.c_uint32(len(keys))
        if lib.bpf_update_batch(fd, keys.ctypes.data, values.ctypes.data, ctypes.byref(count)) != 0:
            raise OSError(ctypes.get_errno(), "BPF_MAP_UPDATE_BATCH failed")


def bench_size(tracer: Tracer, count: int, ticks: int) -> tuple[float, float, float]:
    """(median oomguard tick ms, its p90, naive bcc iteration ms) with `count` live fake PIDs."""
    rng = np.random.default_rng(count)
    fake = np.arange(FIRST_FAKE_PID, FIRST_FAKE_PID + count, dtype=np.uint32)
    next_pid = FIRST_FAKE_PID + count
    fill(tracer, fake, 1)
    tracker = RateTracker()
    tracker.update(tracer.snapshot(), np.concatenate([live_pids(), fake]))
    times = []
    for tick in range(ticks):
        # 1% exit (gone from the live set), as many new ones start; the rest grow
        leaving = rng.choice(len(fake), size=max(1, count // 100), replace=False)
        fake = np.delete(fake, leaving)
        born = np.arange(next_pid, next_pid + len(leaving), dtype=np.uint32)
        next_pid += len(leaving)
        fill(tracer, np.concatenate([fake, born]), tick + 2)
        live = np.concatenate([live_pids(), fake])  # the exited are not alive, the newborn...
        fake = np.concatenate([fake, born])
        live = np.concatenate([live, born])
        start = time.perf_counter()
        snapshot = tracer.snapshot()  # map read (both maps, batched, into numpy)
        live_now = np.sort(np.concatenate([live_pids(), fake]))  # the /proc listing the daemon does
        rates, exited = tracker.update(snapshot, live_now)
        tracer.forget_pids(exited)
        times.append((time.perf_counter() - start) * 1000)
        assert rates is not None and len(exited) >= len(leaving)
    start = time.perf_counter()
    naive_rows = sum(1 for _ in tracer._bpf[b"allocs"].items())
    naive_ms = (time.perf_counter() - start) * 1000
    assert naive_rows >= count
    tracer.forget_pids(fake)
    return statistics.median(times), float(np.percentile(times, 90)), naive_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()
    print(f"{'live PIDs':>10} {'max_pids':>9} {'tick ms (median)':>17} {'p90':>7} {'naive bcc read ms':>18} "
          f"{'naive/ours':>11}")
    results = {}
    for count in (1_000, 10_000, 50_000):
        # the map size a policy would set for this many processes: the default
        # 16384, or the next power of two with 25% room
        max_pids = max(16384, 1 << (int(count * 1.25) - 1).bit_length())
        with Tracer(max_pids=max_pids) as tracer:
            median, p90, naive = bench_size(tracer, count, args.ticks)
            results[count] = median
            print(f"{count:>10,} {max_pids:>9,} {median:>17.2f} {p90:>7.2f} {naive:>18.1f} {naive / median:>11.1f}x")
    verdict = "meets" if results[10_000] < TARGET_MS else "MISSES"
    print(f"\ntick at 10,000 PIDs: {results[10_000]:.2f} ms ({verdict} the {TARGET_MS:.0f} ms target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
