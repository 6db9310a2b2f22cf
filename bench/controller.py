"""Adaptive sampling: sampled events/s held near the target across a load sweep from 1k to 5M events/s.

Real load where this machine can make it (poll() storms paced at each rate,
two unpaced ones at the top), on the real kernel with the real controller
writing N into the BPF map; beyond that, a replayed event-rate trace through
the same controller, with the kernel's sampling simulated. Baseline in the
same run: a fixed N (the starting one), which is what oomguard would do
without the controller.

    sudo .venv/bin/python bench/controller.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oomguard.bpf.events import SOURCE_KMALLOC
from oomguard.bpf.tracer import Tracer
from oomguard.config import defaults
from oomguard.sampling.controller import SampleRateController

from common import build_workload

TOLERANCE = 0.20
SETTLE_UP = 2  # intervals after a rise before the band applies (the issue: react within two)
SETTLE_DOWN = 6  # after a fall: the controller waits 2 intervals, then lowers N at most 4x per interval


@dataclass
class Step:
    label: str
    seen_per_s: list[float]
    sampled_per_s: list[float]
    ns: list[int]


def real_sweep(workload: Path, target: int, step_s: int) -> list[Step]:
    loads: list[tuple[str, list[list[str]]]] = [
        (f"{rate:,} paced", [["poll-paced", str(rate), str(step_s)]]) for rate in (1_000, 10_000, 50_000, 200_000)
    ] + [("2 x unpaced", [["poll-for", str(step_s)], ["poll-for", str(step_s)]]),
         ("50,000 paced", [["poll-paced", "50000", str(step_s)]]), ("idle", [])]
    steps = []
    with Tracer() as tracer:
        controller = SampleRateController(target, initial_n=1)
        tracer.set_sample_rate(SOURCE_KMALLOC, controller.n)
        for label, commands in loads:
            children = [subprocess.Popen([str(workload), *c], stdout=subprocess.DEVNULL) for c in commands]
            step = Step(label, [], [], [])
            before, last = tracer.counters().kmalloc, time.monotonic()
            for _ in range(step_s):
                time.sleep(1.0)
                now, after = time.monotonic(), tracer.counters().kmalloc
                seen, sampled = after.seen - before.seen, after.sampled - before.sampled
                step.seen_per_s.append(seen / (now - last))
                step.sampled_per_s.append(sampled / (now - last))
                step.ns.append(controller.n)
                decision = controller.update(seen, now - last)
                tracer.set_sample_rate(SOURCE_KMALLOC, decision.n)
                before, last = after, now
            for child in children:
                child.wait()
            steps.append(step)
    return steps


def replayed_sweep(target: int, per_step: int, fixed_n: int | None = None) -> list[Step]:
    """The same controller over a trace from 1k to 5M events/s and back, kernel sampling simulated."""
    rng = np.random.default_rng(1)
    rates = [1e3, 1e4, 1e5, 5e5, 1e6, 2e6, 5e6, 1e6, 1e5, 1e4, 1e3]
    controller = SampleRateController(target, initial_n=1)
    steps = []
    for rate in rates:
        step = Step(f"{rate:,.0f} replayed", [], [], [])
        for _ in range(per_step):
            n = fixed_n or controller.n
            seen = int(rate * (1 + 0.03 * rng.standard_normal()))  # a steady load's own jitter
            sampled = rng.binomial(seen, 1 / n)
            step.seen_per_s.append(seen)
            step.sampled_per_s.append(sampled)
            step.ns.append(n)
            controller.update(seen, 1.0)
        steps.append(step)
    return steps


def verdict(step: Step, previous: Step | None, target: int) -> tuple[str, bool, int]:
    """(sampled/s range after settling, within band?, N changes after settling)."""
    fell = previous is not None and statistics.median(previous.seen_per_s) > statistics.median(step.seen_per_s)
    settle = SETTLE_DOWN if fell else SETTLE_UP
    settled = step.sampled_per_s[settle:]
    seen = statistics.median(step.seen_per_s[settle:])
    if seen < target * (1 - TOLERANCE):  # the load is below the target: everything is sampled (N=1)
        ok = all(n == 1 for n in step.ns[settle + 1:])
    else:
        ok = all(abs(s / target - 1) <= TOLERANCE for s in settled)
    changes = sum(1 for a, b in zip(step.ns[settle + 1:], step.ns[settle + 2:]) if a != b)
    return f"{min(settled):>9,.0f} .. {max(settled):>9,.0f}", ok, changes


def print_table(title: str, steps: list[Step], target: int) -> bool:
    print(f"\n{title}")
    print(f"{'load':<20} {'events/s':>10} {'N':>6} {'sampled/s after settling':>26} {'in band':>8} {'N moves':>8}")
    all_ok = True
    for previous, step in zip([None] + steps, steps):
        span, ok, changes = verdict(step, previous, target)
        all_ok &= ok and changes == 0
        print(f"{step.label:<20} {statistics.median(step.seen_per_s):>10,.0f} {step.ns[-1]:>6} {span:>26} "
              f"{'yes' if ok else 'NO':>8} {changes:>8}")
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=defaults().sampling.target_events_per_sec)
    parser.add_argument("--step-seconds", type=int, default=10)
    args = parser.parse_args()
    print(f"target {args.target:,} sampled events/s, band +-{TOLERANCE:.0%}, judged from the "
          f"{SETTLE_UP + 1}rd interval after a rise and the {SETTLE_DOWN + 1}th after a fall; "
          "below the target every event is sampled (N=1)")
    with tempfile.TemporaryDirectory() as tmp:
        real_ok = print_table("real kernel, kmalloc", real_sweep(build_workload(Path(tmp)), args.target,
                                                                  args.step_seconds), args.target)
    replay_ok = print_table("replayed trace", replayed_sweep(args.target, 12), args.target)
    fixed = replayed_sweep(args.target, 12, fixed_n=64)
    fixed_sampled = [statistics.median(s.sampled_per_s) for s in fixed]
    print(f"\nbaseline, fixed N=64 over the same trace: sampled/s from {min(fixed_sampled):,.0f} to "
          f"{max(fixed_sampled):,.0f} ({max(fixed_sampled) / args.target:.1f}x the target at 5M events/s)")
    held = real_ok and replay_ok
    print(f"\ncontroller {'holds' if held else 'does NOT hold'} the band everywhere"
          + (", without oscillation" if held else ": see the rows marked NO or with N moves"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
