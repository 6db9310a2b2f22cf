"""The scenario corpus of bench/detect.py: classes of memory behaviour with parameters drawn from ranges.

Each class draws its parameters from a seeded generator, so a seed names
one run. TRAIN_SEEDS are the only runs anyone tunes the detector on;
HELD_OUT_SEEDS are reported apart and never looked at while tuning; each
range is run once, after a stop's decisions are fixed on train, and then
retired. SPENT_SEEDS is the range retired last: it checked one decision of
this stop before a second was made, so it is no longer clean evidence; it
is still reported, apart, for comparison. (1,000,000.. to 8,000,000.. were
retired before it, each after the decisions it checked.)

A Trace is one memory cgroup's working set, one sample per second, against
its limit; an OOM-bound trace is killed where it reaches the limit. Traces
of multi-process classes also carry each process's RSS and allocation
rates, with the index of the culprit (the process whose growth leads to
the kill), to score who the alert names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

MIB = 1 << 20
GIB = 1 << 30
TRAIN_SEEDS = range(0, 1000)
HELD_OUT_SEEDS = range(10_000_000, 10_001_000)
SPENT_SEEDS = range(9_000_000, 9_001_000)
BENIGN_SECONDS = 2 * 3600  # each benign run: two hours, the first minute included
FRESH_MIN_RATE, FRESH_MAX_KILL_S = 0.5 * MIB, 600  # the slowest fresh leak, the latest it is killed


@dataclass
class Processes:
    """Per-process series inside one trace (rows: processes, columns: seconds)."""

    rss: np.ndarray  # bytes
    page_rate: np.ndarray  # bytes/s allocated in pages
    kmalloc_rate: np.ndarray  # bytes/s through kmalloc
    # row of the process whose growth the alert should name first; None (many similar leakers): whoever grew
    # most in the minute before the alert (`culprit_at`), not before the kill, which a restart after the
    # alert can change
    culprit: int | None
    held: np.ndarray | None = None  # bytes of shared memory (memfd/tmpfs) each holds open; None: none
    descriptors: np.ndarray | None = None  # open fds each holds; None: a few dozen each, as /proc shows


def culprit_at(p: Processes, second: int) -> int:
    """The row the alert given at `second` should name first."""
    if p.culprit is not None:
        return p.culprit
    end = min(second, p.rss.shape[1] - 1)
    return int(np.argmax(p.rss[:, end] - p.rss[:, max(end - 60, 0)]))


@dataclass
class Trace:
    name: str  # the class
    usage: np.ndarray  # working set, bytes per second
    limit: int
    oom: bool  # the class ends in an OOM kill where usage reaches the limit
    onset: int = 0  # second the growth that kills starts
    processes: Processes | None = None
    params: dict[str, float] = field(default_factory=dict)


def _limit(rng: np.random.Generator, low: int = 128 * MIB, high: int = 2 * GIB) -> int:
    return int(np.exp(rng.uniform(np.log(low), np.log(high))))


def _noise(rng: np.random.Generator, n: int, limit: int) -> np.ndarray:
    """Measurement and allocator noise: 0.2-1% of the limit, at least 0.5 MiB."""
    return rng.normal(0, max(0.5 * MIB, rng.uniform(0.002, 0.01) * limit), n)


def _until_limit(usage: np.ndarray, limit: int, tail: int = 5) -> np.ndarray:
    """Cut a rising series a few samples after it reaches the limit (the kill)."""
    over = np.flatnonzero(usage >= limit)
    return usage[: over[0] + tail] if len(over) else usage


# -- OOM-bound classes --------------------------------------------------------


def fresh_leak(rng: np.random.Generator) -> Trace:
    """A container leaking from its first second: 0.5-20 MiB/s, killed 20 s to 10 min after start."""
    limit = _limit(rng)
    base = rng.uniform(5, 30) * MIB
    kill_s = np.exp(rng.uniform(np.log(20), np.log(FRESH_MAX_KILL_S)))
    rate = float(np.clip((limit - base) / kill_s, FRESH_MIN_RATE, 20 * MIB))
    n = int((limit - base) / rate) + 10
    t = np.arange(n)
    usage = base + rate * t + _noise(rng, n, limit)
    return Trace("fresh container, leak from birth", _until_limit(usage, limit), limit, True, 0,
                 params={"rate_mib_s": rate / MIB})


def medium_leak(rng: np.random.Generator) -> Trace:
    """A leak from birth killed 10-30 min after start: between the fresh containers (at most 10 min) and the
    slow leaks (hours), where a warning's wait for warn_horizon / warn_trust of climb costs lead."""
    limit = _limit(rng, 256 * MIB, 4 * GIB)
    base, kill_s = rng.uniform(0.05, 0.3) * limit, rng.uniform(600, 1800)
    rate = (limit - base) / kill_s
    n = int(kill_s) + 10
    usage = base + rate * np.arange(n) + _noise(rng, n, limit)
    return Trace("leak over 10-30 min, from birth", _until_limit(usage, limit), limit, True, 0,
                 params={"rate_mib_s": rate / MIB})


def leak_after_flat(rng: np.random.Generator) -> Trace:
    limit = _limit(rng)
    flat, level = int(rng.uniform(60, 1800)), rng.uniform(0.2, 0.6) * limit
    rate = rng.uniform(0.5, 10) * MIB
    n = flat + int((limit - level) / rate) + 10
    t = np.arange(n)
    usage = level + np.where(t > flat, (t - flat) * rate, 0.0) + _noise(rng, n, limit)
    return Trace("leak after a flat period", _until_limit(usage, limit), limit, True, flat)


def staircase(rng: np.random.Generator) -> Trace:
    """Steps of 2-10% of the limit every 5-60 s, each taking 1-3 s (a cache that only grows)."""
    limit = _limit(rng)
    level, step, every = rng.uniform(0.1, 0.4) * limit, rng.uniform(0.02, 0.1) * limit, int(rng.uniform(5, 60))
    rise = int(rng.uniform(1, 4))
    n = int((limit - level) / step + 2) * every + 10
    t = np.arange(n)
    steps = (t // every) * step + np.clip((t % every) / rise, 0, 1) * step
    usage = level + steps + _noise(rng, n, limit)
    return Trace("staircase", _until_limit(usage, limit), limit, True, 0)


def gc_over_rising_floor(rng: np.random.Generator) -> Trace:
    limit = _limit(rng, 256 * MIB)
    period, amplitude = int(rng.uniform(10, 60)), rng.uniform(0.1, 0.3) * limit
    floor0, rate = rng.uniform(0.1, 0.3) * limit, rng.uniform(0.3, 3) * MIB
    n = int((limit - floor0) / rate) + 10
    t = np.arange(n)
    usage = floor0 + rate * t + (t % period) / period * amplitude + _noise(rng, n, limit)
    return Trace("GC sawtooth over a rising floor", _until_limit(usage, limit), limit, True, 0)


def sudden_jump(rng: np.random.Generator) -> Trace:
    """Flat, then a climb to the limit in 5-30 s (a request that loads a huge file)."""
    limit = _limit(rng)
    flat, level, climb = int(rng.uniform(30, 1800)), rng.uniform(0.2, 0.6) * limit, int(rng.uniform(5, 30))
    n = flat + climb + 10
    t = np.arange(n)
    usage = level + np.clip((t - flat) / climb, 0, 2) * (limit - level) + _noise(rng, n, limit)
    return Trace("sudden jump", _until_limit(usage, limit), limit, True, flat)


def slow_leak(rng: np.random.Generator) -> Trace:
    """0.05-0.5 MiB/s into 1-4 GiB, killed 1-3 hours after the run starts."""
    limit = _limit(rng, 1 * GIB, 4 * GIB)
    rate, kill_s = rng.uniform(0.05, 0.5) * MIB, rng.uniform(3600, 3 * 3600)
    level = max(0.2 * limit, limit - rate * kill_s)
    n = int((limit - level) / rate) + 10
    usage = level + rate * np.arange(n) + _noise(rng, n, limit)
    return Trace("slow leak (hours)", _until_limit(usage, limit), limit, True, 0)


def _busy_processes(rng: np.random.Generator, count: int, n: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Healthy busy processes: flat RSS with a small sawtooth, high page/kmalloc churn. (rss, page rate)."""
    t = np.arange(n)
    level = rng.uniform(0.02, 0.08, count)[:, None] * limit
    period = rng.uniform(5, 30, count)[:, None]
    rss = level * (1 + 0.2 * ((t[None, :] % period) / period))
    pages = rng.uniform(20, 200, count)[:, None] * MIB * (1 + 0.3 * rng.random((count, n)))
    return rss, pages


def leaker_among_busy(rng: np.random.Generator) -> Trace:
    """One leaking process among 3-12 busy healthy ones that allocate far more (and free it)."""
    limit = _limit(rng, 256 * MIB)
    busy = int(rng.integers(3, 13))
    rate = rng.uniform(0.5, 8) * MIB
    n_guess = int(limit / rate) + 10
    rss, pages = _busy_processes(rng, busy, n_guess, limit)
    room = limit - rss[:, 0].sum()
    n = int(max(room, 0.2 * limit) / rate) + 10
    rss, pages = rss[:, :n], pages[:, :n]
    t = np.arange(n)
    leak = rng.uniform(5, 20) * MIB + rate * t
    rss = np.vstack([rss, leak])
    pages = np.vstack([pages, np.full(n, rate * 1.2)])
    order = rng.permutation(busy + 1)
    rss, pages = rss[order], pages[order]
    usage = rss.sum(axis=0) + _noise(rng, n, limit)
    cut = len(_until_limit(usage, limit))
    procs = Processes(rss[:, :cut], pages[:, :cut], pages[:, :cut] * 0.05, int(np.flatnonzero(order == busy)[0]))
    return Trace("one leaker among busy processes", usage[:cut], limit, True, 0, procs)


def many_small_leakers(rng: np.random.Generator) -> Trace:
    """10-50 processes each leaking 0.05-0.5 MiB/s; now and then one restarts and gives its memory back."""
    limit = _limit(rng, 256 * MIB)
    count = int(rng.integers(10, 51))
    rates = rng.uniform(0.05, 0.5, count) * MIB
    n = int(limit / rates.sum() * 1.5) + 60
    t = np.arange(n)
    born = np.zeros(count, dtype=int)
    rss = np.zeros((count, n))
    for p in range(count):
        restarts = np.sort(rng.choice(n, size=rng.poisson(n / 1800), replace=False)) if n > 1 else []
        start = 0
        for r in [*restarts, n]:
            rss[p, start:r] = 3 * MIB + rates[p] * (t[start:r] - start)
            start = r
    del born
    usage = rss.sum(axis=0) + _noise(rng, n, limit)
    cut = len(_until_limit(usage, limit))
    procs = Processes(rss[:, :cut], np.repeat(rates[:, None], cut, 1) * 1.1, np.zeros((count, cut)), None)
    return Trace("many small leakers, one container", usage[:cut], limit, True, 0, procs)


def shared_memory_growth(rng: np.random.Generator) -> Trace:
    """A memfd/tmpfs writer: the cgroup grows in 1-5 s chunks, the writer's RSS does not."""
    limit = _limit(rng, 256 * MIB)
    rate, every = rng.uniform(0.5, 10) * MIB, int(rng.uniform(1, 6))
    level = rng.uniform(0.1, 0.3) * limit
    n = int((limit - level) / rate) + 10
    t = np.arange(n)
    written = (t // every) * every * rate
    usage = level + written + _noise(rng, n, limit)
    busy_rss, busy_pages = _busy_processes(rng, 2, n, limit)
    writer_rss = np.full((1, n), 8.0 * MIB)
    rss = np.vstack([busy_rss, writer_rss])
    pages = np.vstack([busy_pages, np.full((1, n), rate)])
    # the writer holds what it wrote; in half the runs a busy process also holds a static segment (a
    # database's shared buffers) of 5-20% of the limit from its start
    static = rng.uniform(0.05, 0.2) * limit if rng.random() < 0.5 else 0.0
    held = np.vstack([np.full(n, static), np.zeros(n), level * 0.2 + written])
    cut = len(_until_limit(usage, limit))
    procs = Processes(rss[:, :cut], pages[:, :cut], pages[:, :cut] * 0.05, 2, held[:, :cut])
    return Trace("shared memory (memfd) growth", usage[:cut], limit, True, 0, procs)


def pod_limit_two_containers(rng: np.random.Generator) -> Trace:
    """The limit is on the pod; of its two containers one leaks, the other saws."""
    limit = _limit(rng, 256 * MIB)
    rate, flat = rng.uniform(0.5, 8) * MIB, int(rng.uniform(0, 600))
    period, amplitude = int(rng.uniform(10, 60)), rng.uniform(0.05, 0.15) * limit
    n = flat + int(0.9 * limit / rate) + 10
    t = np.arange(n)
    leaker = 0.1 * limit + np.where(t > flat, (t - flat) * rate, 0.0)
    sidecar = 0.15 * limit + (t % period) / period * amplitude
    usage = leaker + sidecar + _noise(rng, n, limit)
    cut = len(_until_limit(usage, limit))
    rss = np.vstack([sidecar, leaker])[:, :cut]
    pages = np.vstack([np.full(cut, amplitude / period * 3), np.full(cut, rate)])
    return Trace("limit on the pod, two containers", usage[:cut], limit, True, flat,
                 Processes(rss, pages, pages * 0.05, 1))


def kernel_memory_growth(rng: np.random.Generator) -> Trace:
    """Sockets or files never closed: kernel memory charged to the cgroup, 0.2-3 MiB/s, seen by kmalloc only."""
    limit = _limit(rng, 128 * MIB, 1 * GIB)
    rate, level = rng.uniform(0.2, 3) * MIB, rng.uniform(0.1, 0.4) * limit
    n = int((limit - level) / rate) + 10
    usage = level + rate * np.arange(n) + _noise(rng, n, limit)
    busy_rss, busy_pages = _busy_processes(rng, 3, n, limit)
    cut = len(_until_limit(usage, limit))
    rss = np.vstack([busy_rss, np.full((1, n), 6.0 * MIB)])[:, :cut]
    pages = np.vstack([busy_pages, np.full((1, n), 0.1 * MIB)])[:, :cut]
    kmalloc = np.vstack([busy_pages * 0.02, np.full((1, n), rate)])[:, :cut]
    # descriptors: the leaker's grow by one per 1-4 KiB of kernel memory (a socket with its buffers, a file
    # with its dentry and inode); the busy ones hold 10-300, and in a third of the runs one is a server
    # holding 2,000-20,000 connections
    busy_fds = rng.uniform(10, 300, 3)
    if rng.random() < 1 / 3:
        busy_fds[0] = rng.uniform(2000, 20000)
    leaker_fds = 20 + np.arange(n) * rate / rng.uniform(1024, 4096)
    fds = np.vstack([np.repeat(busy_fds[:, None], n, 1), leaker_fds])[:, :cut]
    return Trace("kernel memory (sockets, files)", usage[:cut], limit, True, 0,
                 Processes(rss, pages, kmalloc, 3, descriptors=fds))


# -- benign classes -----------------------------------------------------------


def _ramp(start: float, end: float, base: float, rate: float) -> dict[str, float]:
    """The first climb of a benign trace, a straight line: from `start` (at `base` bytes) to `end`, rate
    bytes/s. Up to `end` it is the same series as a leak that goes on at that rate (its twin): the bench
    asks whether a detector meeting the lead target on the twin must have alerted before `end`."""
    return {"ramp_start": start, "ramp_end": end, "ramp_base": base, "ramp_rate": rate}


def sawtooth_from_birth(rng: np.random.Generator) -> Trace:
    """A GC'd runtime: up to its trough in 1-3 s at start, then saws with peaks at 40-75% of the limit."""
    limit, n = _limit(rng), BENIGN_SECONDS
    peak = rng.uniform(0.4, 0.75) * limit
    trough = peak - rng.uniform(0.1, 0.25) * limit
    period, start = rng.uniform(5, 60), int(rng.integers(1, 4))
    t = np.arange(n)
    usage = trough + (t % period) / period * (peak - trough)
    usage[:start] = np.linspace(0.02 * limit, trough, start + 1)[1:]
    return Trace("sawtooth from birth", usage + _noise(rng, n, limit), limit, False,
                 params=_ramp(0, period, trough, (peak - trough) / period))


def page_cache_churn(rng: np.random.Generator) -> Trace:
    """Page cache far above the limit is reclaimed: the working set wanders at 20-50% with reclaim steps."""
    limit, n = _limit(rng), BENIGN_SECONDS
    level = rng.uniform(0.2, 0.5) * limit
    walk = np.cumsum(rng.normal(0, 0.002 * limit, n))
    walk -= np.convolve(walk, np.ones(120) / 120, mode="same")  # mean-reverting: reclaim pulls it back
    return Trace("page-cache churn (reclaimable)", level + walk + _noise(rng, n, limit), limit, False)


def fill_then_flat(rng: np.random.Generator) -> Trace:
    limit, n = _limit(rng), BENIGN_SECONDS
    start, top = rng.uniform(0.05, 0.3) * limit, rng.uniform(0.6, 0.85) * limit
    fill = int(np.exp(rng.uniform(np.log(30), np.log(900))))
    t = np.arange(n)
    usage = start + np.clip(t / fill, 0, 1) * (top - start)
    return Trace("fill to 60-85%, then flat", usage + _noise(rng, n, limit), limit, False,
                 params=_ramp(0, fill, start, (top - start) / fill))


def periodic_batch(rng: np.random.Generator) -> Trace:
    """Every 10-60 min: fill a cache to 50-75% over 20-120 s, hold it, release it."""
    limit, n = _limit(rng), BENIGN_SECONDS
    base, top = rng.uniform(0.05, 0.2) * limit, rng.uniform(0.5, 0.75) * limit
    every, fill, hold = int(rng.uniform(600, 3600)), int(rng.uniform(20, 120)), int(rng.uniform(30, 300))
    usage = np.full(n, base)
    first = int(rng.uniform(0, every))
    for s in range(first, n, every):
        usage[s:s + fill] = np.linspace(base, top, fill)[: n - s]
        usage[s + fill:s + fill + hold] = top
    return Trace("periodic batch", usage + _noise(rng, n, limit), limit, False,
                 params=_ramp(first, first + fill - 1, base, (top - base) / (fill - 1)))


def single_spikes(rng: np.random.Generator) -> Trace:
    """Spikes to 70-90% of the limit at any age (one in the first minute), rising in 1-3 s, gone in 1-5 s."""
    limit, n = _limit(rng), BENIGN_SECONDS
    level = rng.uniform(0.2, 0.5) * limit
    usage = np.full(n, level)
    starts = [int(rng.uniform(5, 60)), *np.sort(rng.choice(np.arange(60, n - 20), size=int(rng.integers(1, 8))))]
    for s in starts:
        rise, hold, top = int(rng.integers(1, 4)), int(rng.integers(1, 6)), rng.uniform(0.7, 0.9) * limit
        usage[s:s + rise] = np.linspace(level, top, rise + 1)[1:]
        usage[s + rise:s + rise + hold] = top
    return Trace("single spikes at any age", usage + _noise(rng, n, limit), limit, False)


def jvm_warmup(rng: np.random.Generator) -> Trace:
    """Heap warm-up: an exponential approach to a plateau at 40-80%, then a small GC sawtooth."""
    limit, n = _limit(rng), BENIGN_SECONDS
    plateau, tau = rng.uniform(0.4, 0.8) * limit, rng.uniform(10, 120)
    period, amplitude = rng.uniform(5, 60), rng.uniform(0.01, 0.05) * limit
    t = np.arange(n)
    usage = 0.05 * limit + (plateau - 0.05 * limit) * (1 - np.exp(-t / tau)) + (t % period) / period * amplitude
    return Trace("JVM-style warm-up to a plateau", usage + _noise(rng, n, limit), limit, False,
                 params={"plateau": plateau / limit, "tau_s": tau})


def alloc_free_churn(rng: np.random.Generator) -> Trace:
    """Heavy allocate/free: the working set jumps around 30-60% by up to 10% of the limit each second."""
    limit, n = _limit(rng), BENIGN_SECONDS
    level = rng.uniform(0.3, 0.6) * limit
    usage = level + rng.uniform(0, 0.1, n) * limit
    return Trace("heavy allocate/free churn", usage + _noise(rng, n, limit), limit, False)


OOM_CLASSES: list[Callable[[np.random.Generator], Trace]] = [
    fresh_leak, medium_leak, leak_after_flat, staircase, gc_over_rising_floor, sudden_jump, slow_leak,
    leaker_among_busy, many_small_leakers, shared_memory_growth, pod_limit_two_containers, kernel_memory_growth]
BENIGN_CLASSES: list[Callable[[np.random.Generator], Trace]] = [
    sawtooth_from_birth, page_cache_churn, fill_then_flat, periodic_batch, single_spikes, jvm_warmup,
    alloc_free_churn]


# Each class draws from its own random stream, numbered in the order the classes were added: a new class
# leaves every other class's draws, and so every range's figures, as they were.
STREAMS = [c for c in OOM_CLASSES + BENIGN_CLASSES if c is not medium_leak] + [medium_leak]


def suite(seeds: range, runs: int, benign_runs: int) -> list[Trace]:
    """`runs` traces per OOM class and `benign_runs` per benign class, each from its own seed in `seeds`."""
    traces = []
    for make in OOM_CLASSES + BENIGN_CLASSES:
        for r in range(runs if make in OOM_CLASSES else benign_runs):
            traces.append(make(np.random.default_rng([seeds[r], STREAMS.index(make)])))
    return traces
