"""The daemon's main loop: one tick per interval, OOM kills as they arrive, clean exit on signals."""

from __future__ import annotations

import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from .config import Config
from .events import SOURCE_KMALLOC, SOURCE_PAGE, SOURCES, Counters, OomKill
from .loader import Tracer
from .procfs import ProcessDirectory, live_pids
from .rates import RateTracker, Rates
from .report import oom_line, rate_table, sampling_line
from .sampling import SampleRateController
from .selection import MODE_OFF, ProcessFilter, cgroup2_mount, kernel_cgroup_filter

log = logging.getLogger("oomguard")
POLL_SLICE_MS = 200  # longest wait in the ring buffer, so signals are seen promptly


class Stop:
    """Set by SIGTERM/SIGINT; the loop checks it between waits."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.requested = True


@dataclass(frozen=True)
class Tick:
    """What one tick learnt."""

    rates: Rates | None
    counters: Counters
    sample_rates: tuple[int, int]  # N in force during the interval
    exited_pids: np.ndarray  # processes pruned from the maps this tick


class Watchdog:
    """One tick: read the maps, compute rates, adapt N, prune exited processes."""

    def __init__(self, tracer: Tracer, config: Config):
        self.tracer = tracer
        self.config = config
        n = config.sampling.initial_rate
        self.controllers = [SampleRateController(config.sampling.target_events_per_sec, initial_n=n)
                            for _ in SOURCES]
        for source, controller in enumerate(self.controllers):
            tracer.set_sample_rate(source, controller.n)
        self.rates = RateTracker()
        self.directory = ProcessDirectory()
        self.selection = ProcessFilter(*(getattr(config.selection, k) for k in (
            "include_cgroups", "exclude_cgroups", "include_commands", "exclude_commands")))
        mode, directories = kernel_cgroup_filter(self.selection, cgroup2_mount(Path("/proc/self/mounts").read_text()))
        tracer.set_cgroup_filter(mode, directories)
        if self.selection.active:
            log.info("process selection: %s; in the kernel: %s", self.selection,
                     "off (filtering in user space)" if mode == MODE_OFF else ", ".join(map(str, directories)))
        self._judged = np.zeros(0, dtype=np.uint32)  # pids the filter has seen, sorted
        self._excluded = np.zeros(0, dtype=np.uint32)
        self._previous_counters: Counters | None = None
        self._previous_time: float | None = None
        self._warned_full = False

    def tick(self) -> Tick:
        snapshot = self.tracer.snapshot()
        counters = self.tracer.counters()
        in_force = (self.controllers[SOURCE_KMALLOC].n, self.controllers[SOURCE_PAGE].n)
        rates, exited = self.rates.update(snapshot, live_pids())
        if rates is not None and self.selection.active:
            rates = rates.select(self._selected(rates.pid))
        if len(exited):
            self.tracer.forget_pids(exited)
            self.directory.forget(exited)
            self._judged = np.setdiff1d(self._judged, exited)
            self._excluded = np.setdiff1d(self._excluded, exited)
        if len(snapshot) >= self.tracer.max_pids and not self._warned_full:
            log.warning("per-process map full (%d entries): least active processes are being evicted; "
                        "raise [sampling] max_pids", self.tracer.max_pids)
            self._warned_full = True
        self._adapt(counters, snapshot.monotonic_s)
        return Tick(rates=rates, counters=counters, sample_rates=in_force, exited_pids=exited)

    def _selected(self, pids: np.ndarray) -> np.ndarray:
        """Mask of `pids` the policy selects; each pid is judged once, when first seen."""
        new = pids[~np.isin(pids, self._judged)]
        if len(new):
            rejected = [pid for pid in new.tolist() if not self.selection.allows(self.directory.identity(pid))]
            self._judged = np.union1d(self._judged, new)
            self._excluded = np.union1d(self._excluded, np.array(rejected, dtype=np.uint32))
        return ~np.isin(pids, self._excluded)

    def _adapt(self, counters: Counters, now: float) -> None:
        previous, self._previous_counters = self._previous_counters, counters
        last, self._previous_time = self._previous_time, now
        if previous is None:
            return
        for source, (name, before, after) in enumerate(
                (("kmalloc", previous.kmalloc, counters.kmalloc), ("page", previous.page, counters.page))):
            decision = self.controllers[source].update(after.seen - before.seen, now - last)
            if decision.changed:
                self.tracer.set_sample_rate(source, decision.n)
                log.info("sample rate %s: %s", name, decision.reason)


def print_tick(tick: Tick, previous: Counters | None, config: Config, out: TextIO) -> None:
    if tick.rates is None:
        return
    lines = [time.strftime("%H:%M:%S ") + sampling_line(tick.counters, previous, tick.rates.interval_s,
                                                       tick.sample_rates)]
    if config.output.top_pids:
        lines += rate_table(tick.rates, config.output.top_pids)
    print("\n".join(lines) + "\n", file=out, flush=True)


def print_kill(kill: OomKill, out: TextIO) -> None:
    print(oom_line(kill), file=out, flush=True)


def run(config: Config, out: TextIO = sys.stdout) -> int:
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with Tracer(max_pids=config.sampling.max_pids) as tracer:
        watchdog = Watchdog(tracer, config)
        log.info("tracing kmalloc, page allocations, RSS and OOM kills (policy: %s)", config.source)
        previous_counters = None
        next_tick = time.monotonic() + config.sampling.interval
        while not stop.requested:
            wait_ms = int(max(0.0, min(next_tick - time.monotonic(), POLL_SLICE_MS / 1000)) * 1000)
            for kill in tracer.poll_oom_kills(wait_ms):
                print_kill(kill, out)
            if time.monotonic() < next_tick:
                continue
            tick = watchdog.tick()
            print_tick(tick, previous_counters, config, out)
            previous_counters = tick.counters
            # A late tick (a stalled machine) starts a fresh schedule rather than firing a burst.
            next_tick = max(next_tick + config.sampling.interval, time.monotonic())
    log.info("stopped; BPF programs detached")
    return 0
