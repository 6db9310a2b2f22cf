"""What deep sampling (call sites of suspect processes, issue #17) costs, against the same run without it.

1. Kernel: oomguard's kmalloc program run time per event (bpf_stats) under a
   poll() storm pinned to one CPU, at N=100, with (a) no suspect, (b) one
   suspect that is not the storm (the cost every other process pays while an
   alert is open), (c) the storm itself a suspect with M=1 (every sample's
   stacks taken) and (d) with M as the daemon's controller sets it.
2. Daemon: the CPU the capture loop (read the sites, name new stacks, fold
   them in, re-read breakdowns) takes per 500 ms tick with the storm a
   suspect, against the same loop with no suspect.

Interleaved rounds; the storm is `workload poll-for` (one kmalloc per call).
Exits 2 when the rounds are too noisy to judge (a cost below the floor).

    sudo .venv/bin/python bench/deep_cost.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from footprint import cpu_seconds
from kmalloc_cost import program_stats

from oomguard.bpf.events import SOURCE_KMALLOC
from oomguard.bpf.tracer import Tracer
from oomguard.evidence.capture import EvidenceCapture
from oomguard.evidence.symbols import Symbolizer

from common import build_workload

N = 100


def storm(workload: Path, seconds: float) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", "1", str(workload), "poll-for", str(seconds)],
                            stdout=subprocess.DEVNULL)


def body_ns(tracer: Tracer, workload: Path, seconds: float, suspect: str, every: int) -> float:
    """Run time per kmalloc event of oomguard's program with the given suspect set."""
    fd = next(fn.fd for name, fn in tracer._bpf.funcs.items() if b"kmalloc" in name)
    tracer.set_deep_pids({os.getpid(): every} if suspect == "other" else {})
    before = program_stats(fd)
    process = storm(workload, seconds)
    if suspect == "storm":
        tracer.set_deep_pids({process.pid: every})
    process.wait()
    after = program_stats(fd)
    tracer.set_deep_pids({})
    tracer.deep_sites()
    return (after[0] - before[0]) / max(after[1] - before[1], 1)


def child_cpu_s(names: Symbolizer) -> float:
    """CPU seconds the symbolizer's child has used (0 when none runs): its cost is the daemon's too."""
    child = names._child
    try:
        return cpu_seconds(child.pid) if child else 0.0
    except OSError:  # it exited between the check and the read
        return 0.0


def capture_cpu(tracer: Tracer, workload: Path, ticks: int, suspect: bool,
                directory: Path) -> tuple[float, float, int]:
    """Under the storm: (the costliest tick's CPU ms, CPU % of a core at the median tick of 500 ms, the M it
    settled at), the symbolizer child's CPU counted in. The first tick that names stacks starts the child and
    loads the kernel's symbols (kallsyms), once."""
    names = Symbolizer()
    capture = EvidenceCapture(tracer, names, directory)
    process = storm(workload, ticks * 0.5 + 1)
    took, every = [], 1
    try:
        for _ in range(ticks):
            time.sleep(0.5)
            started, child_before = time.thread_time(), child_cpu_s(names)
            capture.update({"/bench": (process.pid,)} if suspect else {}, {process.pid: "ogworkload"})
            took.append(time.thread_time() - started + max(0.0, child_cpu_s(names) - child_before))
            every = capture.every
    finally:
        process.kill()
        process.wait()
        capture.update({}, {})
        names.close()
    return 1000 * max(took), 100 * statistics.median(took) / 0.5, every


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()
    cases = {"no suspect": ("none", 1), "one suspect, not the storm": ("other", 1),
             "the storm a suspect, M=1": ("storm", 1)}
    with tempfile.TemporaryDirectory() as tmp, Tracer() as tracer:
        workload = build_workload(Path(tmp))
        tracer.set_sample_rate(SOURCE_KMALLOC, N)
        # M as the controller sets it for this storm: from a short capture run
        _, _, settled = capture_cpu(tracer, workload, 10, True, Path(tmp) / "e")
        cases[f"the storm a suspect, M={settled} (controller)"] = ("storm", settled)
        body: dict[str, list[float]] = {name: [] for name in cases}
        Path("/proc/sys/kernel/bpf_stats_enabled").write_text("1")
        try:
            for _ in range(args.rounds):
                for name, (suspect, every) in cases.items():
                    body[name].append(body_ns(tracer, workload, args.seconds, suspect, every))
        finally:
            Path("/proc/sys/kernel/bpf_stats_enabled").write_text("0")
        _, idle, _ = capture_cpu(tracer, workload, args.ticks, False, Path(tmp) / "e")
        first, busy, every = capture_cpu(tracer, workload, args.ticks, True, Path(tmp) / "e")

    print(f"kmalloc program at N={N} under a poll() storm pinned to CPU 1; kernel accounting (bpf_stats), "
          f"median of {args.rounds} interleaved rounds of {args.seconds}s\n")
    base_values = body["no suspect"]
    base, noise = statistics.median(base_values), max(base_values) - min(base_values)
    print(f"{'case':<48} {'ns/event':>9} {'min':>7} {'max':>7} {'x no suspect':>13}")
    for name, values in body.items():
        print(f"{name:<48} {statistics.median(values):>9.1f} {min(values):>7.1f} {max(values):>7.1f} "
              f"{statistics.median(values) / base:>13.2f}")
    other = statistics.median(body["one suspect, not the storm"])
    verdict = ("TOO NOISY TO JUDGE" if abs(other - base) <= noise else
               "costs more" if other > base else "TOO NOISY TO JUDGE (below the floor)")
    print(f"\noutside the suspects: {other - base:+.1f} ns/event against a round-to-round spread of {noise:.1f} ns: "
          f"{'no cost measurable' if verdict == 'TOO NOISY TO JUDGE' else verdict}")
    print(f"\ncapture loop CPU at the median 500 ms tick: {busy:.2f}% of a core with the storm a suspect (M settled "
          f"at {every}), {idle:.2f}% with no suspect ({busy / max(idle, 1e-3):.1f}x); the costliest tick with a "
          f"suspect: {first:.0f} ms (the first stacks named: the kernel's symbols loaded once)")
    return 2 if base <= 0 else 0


if __name__ == "__main__":
    sys.exit(main())
