"""Kernel cost per kmalloc event: oomguard's program against the empty-program floor, in one run.

The load is tests/workloads/workload.c `poll-for`: poll() on 64 fds, one
kmalloc per call. For each variant the extra time per call over the
untraced run is the program's cost per event. Variants run interleaved,
ROUNDS times, and the median is kept, so drift hits all of them alike.

    sudo make bench          (or: sudo .venv/bin/python bench/kmalloc_cost.py)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from oomguard.bpf.events import SOURCE_KMALLOC
from oomguard.bpf.tracer import Tracer

from common import build_workload

BASELINES = Path(__file__).with_name("baselines")
TARGET_RATIO = 1.3


def calls_per_second(workload: Path, seconds: float) -> float:
    # Pinned to one CPU so every variant runs the same path.
    out = subprocess.run(["taskset", "-c", "1", str(workload), "poll-for", str(seconds)],
                         check=True, capture_output=True, text=True)
    return float(out.stdout)


def program_stats(bpf) -> tuple[int, int]:
    """(run_time_ns, run_cnt) of the kmalloc program, from its fdinfo (needs kernel.bpf_stats_enabled)."""
    fd = next(fn.fd for name, fn in bpf.funcs.items() if b"kmalloc" in name)
    lines = Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
    fields = dict(line.split(":\t") for line in lines if ":\t" in line)
    return int(fields.get("run_time_ns", 0)), int(fields.get("run_cnt", 0))


class Untraced:
    name = "no tracing"
    bpf = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class BccProgram:
    def __init__(self, name: str, source: str, n: int | None = None):
        self.name, self.source, self.n = name, source, n

    def __enter__(self):
        from bcc import BPF

        self.bpf = BPF(src_file=str(BASELINES / self.source).encode())
        if self.n is not None:
            table = self.bpf[b"sample_rate"]
            table[table.Key(0)] = table.Leaf(self.n)
        return self

    def __exit__(self, *exc):
        self.bpf.cleanup()


class Oomguard:
    def __init__(self, n: int):
        self.n = n
        self.name = f"oomguard, N={n}"

    def __enter__(self):
        self.tracer = Tracer()
        self.tracer.set_sample_rate(SOURCE_KMALLOC, self.n)
        self.bpf = self.tracer._bpf
        return self

    def __exit__(self, *exc):
        self.tracer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="load duration per measurement")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved repetitions (median kept)")
    args = parser.parse_args()

    variants = [Untraced(), BccProgram("empty raw tracepoint (floor)", "empty_raw_tp.c"),
                BccProgram("naive: classic tp + prandom%N + hash, N=100", "naive.c", n=100),
                Oomguard(100), Oomguard(1)]
    with tempfile.TemporaryDirectory() as tmp:
        workload = build_workload(Path(tmp))
        best: dict[str, float] = {v.name: 0.0 for v in variants}
        for _ in range(args.rounds):
            for variant in variants:
                with variant:
                    calls_per_second(workload, 0.2)  # warm-up: let the load's after-effects settle
                    best[variant.name] = max(best[variant.name], calls_per_second(workload, args.seconds))
        # Second pass with the kernel's own BPF run-time accounting on: the
        # program body alone, without dispatch (and with the stats' own cost).
        body_ns = {}
        Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
        try:
            for variant in variants[1:]:
                with variant:
                    before = program_stats(variant.bpf)
                    calls_per_second(workload, args.seconds)
                    after = program_stats(variant.bpf)
                    body_ns[variant.name] = (after[0] - before[0]) / max(after[1] - before[1], 1)
        finally:
            Path("/proc/sys/kernel/bpf_stats_enabled").write_text("0")

    untraced_ns = 1e9 / best["no tracing"]
    extra = {name: 1e9 / rate - untraced_ns for name, rate in best.items() if name != "no tracing"}
    floor = extra["empty raw tracepoint (floor)"]
    print(f"poll() on 64 fds, 1 kmalloc per call, pinned to CPU 1; best of {args.rounds} rounds of {args.seconds}s")
    print(f"untraced: {best['no tracing']:,.0f} calls/s ({untraced_ns:.0f} ns per call)")
    print(f"{'variant':<46} {'calls/s':>10} {'extra ns/event':>15} {'x floor':>8} {'body ns':>8}")
    for name, value in extra.items():
        print(f"{name:<46} {best[name]:>10,.0f} {value:>15.1f} {value / floor:>8.2f} {body_ns[name]:>8.1f}")
    ours = extra["oomguard, N=100"] / floor
    naive = extra["naive: classic tp + prandom%N + hash, N=100"] / floor
    verdict = "meets" if ours <= TARGET_RATIO else "MISSES"
    print(f"\noomguard at N=100: {ours:.2f}x the empty-program floor ({verdict} the {TARGET_RATIO}x target); "
          f"the naive design: {naive:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
