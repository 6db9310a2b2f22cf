"""Workload memory on the bench: the same workload started again and again, with and without what its earlier
instances teach (src/oomguard/detection/workloads.py).

A workload here is one scenario of bench/scenarios.py with its parameters
drawn once (a pod template), started INSTANCES times in a row, each instance
its first ten minutes (the first minute included) with a jitter of its own:
its level scaled by 1 +- 3% and fresh noise. Benign workloads come from every
benign class; each instance's critical and warning verdicts are counted
(one per instance at most, as one alert), for the first instance, the second
(one earlier instance: not yet a pattern) and the seen-before ones (two or
more earlier instances), per 24 h of instances, beside the same detector
without workload memory and the threshold rule operators use today
(working set > 90% of the limit).

Leaking workloads: INSTANCES - 1 healthy instances of a warm-up or a fill,
then one that goes on climbing from a point inside its usual start-up or
after it (the divergence, known by construction) at 0.2-2% of its limit a
second, to its kill; and workloads whose every instance is a leak from
birth. Scored: recall (a critical before the kill), and the critical lead
against min(kill - divergence, horizon), with the same series' lead as a
first instance beside it. A new version (a deploy) whose warm-up levels off
20% higher or lower: the criticals on each of its first instances, so how
many instances the memory takes to adapt.

Seeds: train (bench/scenarios.py TRAIN_SEEDS) and held-out (HELD_OUT_SEEDS,
not looked at while choosing MARGIN and SEEN_BEFORE) are reported apart.
Also printed: the memory cost per learnt workload, and the judging cost per
tick at 500 cgroups and 5,000 learnt workloads. Exit 1 when a target is
missed.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass

import numpy as np
import scenarios as sc

from oomguard.config import defaults
from oomguard.detection.detector import CRITICAL, WARNING, CgroupDetector
from oomguard.detection.workloads import WorkloadMemory

INSTANCES = 5
SECONDS = 600  # of each benign instance
GAP_S = 5.0  # between two instances
VERSION_RUNS = 4  # instances of a new version, after INSTANCES - 2 of the old
WORKLOAD = "bench workload"


@dataclass
class Counts:
    instances: int = 0
    seconds: float = 0.0
    critical: int = 0
    warning: int = 0
    threshold: int = 0

    def per_day(self, n: int) -> str:
        return f"{n * 86400 / self.seconds:5.1f}" if self.seconds else "    -"


def instance_of(trace: sc.Trace, rng: np.random.Generator, seconds: int | None) -> np.ndarray:
    """One instance of a workload: its series with its level jittered and fresh noise."""
    usage = trace.usage[:seconds] if seconds else trace.usage
    base = float(usage[0])
    scaled = base + (usage - base) * (1 + rng.normal(0, 0.03))
    return scaled + rng.normal(0, 0.002 * trace.limit, len(usage))


def watch(memory: WorkloadMemory | None, detector: CgroupDetector, series: list[np.ndarray], limits: list[int],
          workloads: list[str], names: list[str], start: float) -> list[list[str]]:
    """Instances (one a row, each of its workload) watched together second by second as the daemon watches a
    node's cgroups (one vectorised detector pass a second): the severity of each second of each (its kill, the
    first sample at its limit, ends it)."""
    floor = defaults().alerts.headroom_floor
    severities: list[list[str]] = [[] for _ in series]
    alive = [True] * len(series)
    for t in range(max(len(s) for s in series)):
        now = start + t
        for i, s in enumerate(series):
            if alive[i] and t < len(s) and s[t] >= limits[i]:
                alive[i] = False
                if memory:
                    memory.killed([names[i]])
                detector.restart([names[i]])
        live = [i for i, s in enumerate(series) if alive[i] and t < len(s)]
        if not live:
            continue
        usage = np.array([max(float(series[i][t]), 0.0) for i in live])
        verdicts = detector.update_all([names[i] for i in live], now, usage, np.array([float(limits[i]) for i in live]))
        if memory:
            memory.observe([(names[i], workloads[i], int(usage[j]), limits[i]) for j, i in enumerate(live)], now)
            verdicts = memory.judge(verdicts, floor, now, wall=now)[0]
        for j, i in enumerate(live):
            severities[i].append(verdicts[j].severity)
    if memory:
        memory.observe([], start + max(len(s) for s in series) + 1)
    return severities


def fresh() -> tuple[WorkloadMemory, CgroupDetector]:
    memory = WorkloadMemory()
    memory.observe([], 0.0)  # the daemon's first tick: every instance after it is watched from its start
    return memory, CgroupDetector.for_policy(defaults())


def benign(seeds: range, runs: int) -> dict[str, list[Counts]]:
    """Per benign class: counts by instance index (0: first, 1: second, 2: seen before), with memory, then
    without."""
    out: dict[str, list[Counts]] = {}
    for make in sc.BENIGN_CLASSES:
        counts = [Counts() for _ in range(6)]
        traces = [make(np.random.default_rng([seeds[r], sc.STREAMS.index(make)])) for r in range(runs)]
        jitters = [np.random.default_rng([seeds[r], 99]) for r in range(runs)]
        memory, detector = fresh()
        _, alone = fresh()
        workloads = [f"w{r}" for r in range(runs)]
        limits = [trace.limit for trace in traces]
        start = 10.0
        for k in range(INSTANCES):
            series = [instance_of(trace, jitter, SECONDS) for trace, jitter in zip(traces, jitters, strict=True)]
            names = [f"/w{r}/i{k}" for r in range(runs)]
            for offset, m, d in ((0, memory, detector), (3, None, alone)):
                for usage, severities, limit in zip(series, watch(m, d, series, limits, workloads, names, start),
                                                    limits, strict=True):
                    c = counts[offset + min(k, 2)]
                    c.instances += 1
                    c.seconds += len(usage)
                    c.critical += CRITICAL in severities
                    c.warning += WARNING in severities and CRITICAL not in severities
                    c.threshold += bool((usage > 0.9 * limit).any())
            start += SECONDS + GAP_S
        out[make.__name__] = counts
    return out


def warm_then_leak(rng: np.random.Generator) -> tuple[sc.Trace, int, float]:
    """A warm-up or fill (a healthy instance) and where its leaking instance leaves it, and at what rate."""
    make = sc.jvm_warmup if rng.uniform() < 0.5 else sc.fill_then_flat
    trace = make(rng)
    diverge = int(rng.uniform(20, 300))
    rate = rng.uniform(0.002, 0.02) * trace.limit
    return trace, diverge, rate


def leaking(seeds: range, runs: int) -> list[dict[str, float]]:
    """Workloads whose last instance leaks after its usual start: leads with memory, and as a first instance."""
    horizon = defaults().alerts.horizon
    made = [warm_then_leak(np.random.default_rng([seeds[r], 1001])) for r in range(runs)]
    jitters = [np.random.default_rng([seeds[r], 1002]) for r in range(runs)]
    traces = [trace for trace, _, _ in made]
    limits, workloads = [t.limit for t in traces], [f"w{r}" for r in range(runs)]
    memory, detector = fresh()
    start = 10.0
    for k in range(INSTANCES - 1):
        series = [instance_of(trace, jitter, SECONDS) for trace, jitter in zip(traces, jitters, strict=True)]
        watch(memory, detector, series, limits, workloads, [f"/w{r}/i{k}" for r in range(runs)], start)
        start += SECONDS + GAP_S
    leaks, meta = [], []
    for (trace, diverge, rate), jitter in zip(made, jitters, strict=True):
        healthy = instance_of(trace, jitter, SECONDS)
        t = np.arange(len(healthy) * 4)
        healthy = np.concatenate([healthy, np.full(len(t) - len(healthy), healthy[-1])])
        diverge = min(diverge, len(healthy) - 2)
        usage = np.where(t > diverge, np.maximum(healthy, healthy[diverge] + rate * (t - diverge)), healthy)
        over = np.flatnonzero(usage >= trace.limit)
        kill = int(over[0]) if len(over) else len(usage)
        leaks.append(usage[: kill + 1])
        meta.append((trace.name, int(np.flatnonzero(usage > healthy)[0]), kill, bool(len(over))))
    names = [f"/w{r}/leak" for r in range(runs)]
    with_memory = watch(memory, detector, leaks, limits, workloads, names, start)
    _, alone_detector = fresh()
    alone = watch(None, alone_detector, leaks, limits, workloads, names, start)
    results = []
    for (name, diverge, kill, killed), seen, first in zip(meta, with_memory, alone, strict=True):
        if not killed:
            continue
        scored = [kill - s.index(CRITICAL) if CRITICAL in s else None for s in (seen, first)]
        results.append({"class": name, "achievable": min(kill - diverge, horizon), "lead": scored[0],
                        "alone": scored[1], "kill": kill, "diverge": diverge})
    return results


def new_version(seeds: range, runs: int, scale: float) -> list[int]:
    """Workloads of a warm-up or fill whose new version (a deploy) levels off `scale` times as high (capped at
    90% of its limit): INSTANCES - 2 instances of the old version, then VERSION_RUNS of the new. The number of
    workloads whose k-th new instance drew a critical, for each k: how many instances the memory takes to
    adapt."""
    traces = []
    for r in range(runs):
        rng = np.random.default_rng([seeds[r], 1004])
        trace = (sc.jvm_warmup if rng.uniform() < 0.5 else sc.fill_then_flat)(rng)
        traces.append(trace)
    jitters = [np.random.default_rng([seeds[r], 1005]) for r in range(runs)]
    limits, workloads = [t.limit for t in traces], [f"w{r}" for r in range(runs)]
    memory, detector = fresh()
    start, criticals = 10.0, [0] * VERSION_RUNS
    for k in range(INSTANCES - 2 + VERSION_RUNS):
        series = [instance_of(trace, jitter, SECONDS) for trace, jitter in zip(traces, jitters, strict=True)]
        if k >= INSTANCES - 2:
            series = [np.minimum(u[0] + (u - u[0]) * scale, 0.9 * trace.limit)
                      for u, trace in zip(series, traces, strict=True)]
        severities = watch(memory, detector, series, limits, workloads, [f"/w{r}/i{k}" for r in range(runs)], start)
        if k >= INSTANCES - 2:
            criticals[k - INSTANCES + 2] += sum(CRITICAL in s for s in severities)
        start += SECONDS + GAP_S
    return criticals


def all_leaks(seeds: range, runs: int) -> tuple[int, int, list[float]]:
    """Workloads whose every instance is a fresh leak: (alerted, instances, leads) with memory on."""
    traces = [sc.fresh_leak(np.random.default_rng([seeds[r], sc.STREAMS.index(sc.fresh_leak)])) for r in range(runs)]
    jitters = [np.random.default_rng([seeds[r], 1003]) for r in range(runs)]
    limits, workloads = [t.limit for t in traces], [f"w{r}" for r in range(runs)]
    memory, detector = fresh()
    alerted, total, leads, start = 0, 0, [], 10.0
    for k in range(INSTANCES):
        series = [instance_of(trace, jitter, None) for trace, jitter in zip(traces, jitters, strict=True)]
        for severities in watch(memory, detector, series, limits, workloads, [f"/w{r}/i{k}" for r in range(runs)],
                                start):
            total += 1
            if CRITICAL in severities:
                alerted += 1
                leads.append(len(severities) - severities.index(CRITICAL))
        start += max(len(s) for s in series) + GAP_S
    return alerted, total, leads


def cost() -> tuple[float, float]:
    """(bytes per learnt workload in the state file, ms of judging per tick at 500 cgroups, 5,000 workloads)."""
    memory = WorkloadMemory()
    memory.observe([], 0.0)
    for round_ in range(2):  # two finished instances each: every judgement goes all the way
        for w in range(5000):
            memory.observe([(f"/c{w}", f"workload {w}", 100 << 20, 256 << 20)], 1.0 + w + 5000 * round_)
        memory.observe([], 11000.0)
    per = len(json.dumps({k: vars(v) for k, v in memory.shapes.items()})) / len(memory.shapes)
    detector = CgroupDetector.for_policy(defaults())
    cgroups = [f"/c{w}" for w in range(500)]
    usage, limit = np.full(500, 200.0 * (1 << 20)), np.full(500, 256.0 * (1 << 20))
    took = []
    for t in range(60):
        now = 12000.0 + t
        verdicts = detector.update_all(cgroups, now, usage + t * (1 << 20), limit)
        started = time.perf_counter()
        memory.observe([(c, f"workload {i}", int(usage[i]) + t * (1 << 20), int(limit[i]))
                        for i, c in enumerate(cgroups)], now)
        memory.judge(verdicts, 0.05, now)
        took.append(time.perf_counter() - started)
    return per, float(np.median(took) * 1000)


def report(name: str, seeds: range, runs: int) -> bool:
    ok = True
    print(f"\n== {name} (seeds {seeds.start}.., {runs} workloads per class, {INSTANCES} instances of "
          f"{SECONDS // 60} min each)")
    print(f"{'benign class':34} {'instance':>10}  {'critical/24h':>12} {'warning/24h':>11}  {'no memory':>9}  "
          f"{'threshold 90%':>13}")
    totals = [Counts() for _ in range(6)]
    for cls, rows in benign(seeds, runs).items():  # rows: with memory (first, second, seen), then without
        for i, label in enumerate(("first", "second", "seen")):
            c, plain = rows[i], rows[3 + i]
            print(f"{cls:34} {label:>10}  {c.per_day(c.critical):>12} {c.per_day(c.warning):>11}  "
                  f"{plain.per_day(plain.critical):>9}  {c.per_day(c.threshold):>13}")
            for j, x in ((i, c), (3 + i, plain)):
                t = totals[j]
                t.instances += x.instances
                t.seconds += x.seconds
                t.critical += x.critical
                t.warning += x.warning
                t.threshold += x.threshold
    for i, label in enumerate(("first", "second", "seen")):
        c, plain = totals[i], totals[3 + i]
        print(f"{'all benign':34} {label:>10}  {c.per_day(c.critical):>12} {c.per_day(c.warning):>11}  "
              f"{plain.per_day(plain.critical):>9}  {c.per_day(c.threshold):>13}")
    seen = totals[2]
    if seen.critical:
        ok = False
        print(f"MISSED: {seen.critical} seen-before benign instances drew a critical (target 0)")
    leaks = leaking(seeds, runs * 2)
    missed = [x for x in leaks if x["lead"] is None]
    short = [x for x in leaks if x["lead"] is not None and x["lead"] < 0.7 * x["achievable"]]
    shares = [x["lead"] / x["achievable"] for x in leaks if x["lead"] is not None and x["achievable"] > 0]
    alone = [x["alone"] / x["achievable"] for x in leaks if x["alone"] is not None and x["achievable"] > 0]
    print(f"leak after its workload's usual start ({len(leaks)} workloads): recall "
          f"{len(leaks) - len(missed)}/{len(leaks)}; critical lead / achievable (from the divergence, at most the "
          f"horizon): median {np.median(shares):.0%}, lowest {min(shares, default=0):.0%}, under 70%: {len(short)}; "
          f"the same series as a first instance: median {np.median(alone):.0%}")
    for x in (missed + short)[:5]:
        print(f"  {x['class']}: diverges at {x['diverge']}s, killed at {x['kill']}s, lead {x['lead']} "
              f"(alone {x['alone']}), achievable {x['achievable']:.0f}s")
    if missed or short:
        ok = False
        print("MISSED: a leak in a seen-before workload was not alerted, or late")
    for scale, what in ((1.2, "higher"), (0.8, "lower")):
        criticals = new_version(seeds, runs * 2, scale)
        print(f"a new version with a {what} plateau (x{scale}, {runs * 2} workloads of {INSTANCES - 2} old "
              f"instances): criticals on its 1st..{VERSION_RUNS}th instances: {criticals}")
        if any(criticals[2:]):
            ok = False
            print("MISSED: a new version still drew criticals after two of its own instances")
    alerted, total, leads = all_leaks(seeds, runs)
    print(f"workloads whose every instance leaks: {alerted}/{total} instances alerted critical, median lead "
          f"{np.median(leads) if leads else 0:.0f}s")
    if alerted < total:
        ok = False
        print("MISSED: an instance of an always-leaking workload was not alerted")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=6, help="workloads per benign class (leaks: twice as many)")
    args = parser.parse_args()
    ok = report("train", sc.TRAIN_SEEDS, args.runs)
    ok = report("held-out", sc.HELD_OUT_SEEDS, args.runs) and ok
    per, ms = cost()
    print(f"\nlearnt state: {per:.0f} bytes per workload in the state file (5,000 workloads: "
          f"{per * 5000 / 1e6:.1f} MB); judging 500 cgroups against 5,000 learnt workloads: {ms:.2f} ms a tick "
          "(median of 60)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
