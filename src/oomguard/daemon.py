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
from .attribution import PodDirectory
from .events import SOURCE_KMALLOC, SOURCE_PAGE, SOURCES, Counters
from .kills import KillAttributor, KillCorrelator, KillReport
from .kmsg import KmsgReader
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
        self._excluded = np.zeros(0, dtype=np.uint32)  # pids the selection rejected, sorted
        self._previous_counters: Counters | None = None
        self._previous_time: float | None = None
        self._warned_full = False

    def tick(self) -> Tick:
        snapshot = self.tracer.snapshot()
        counters = self.tracer.counters()
        in_force = (self.controllers[SOURCE_KMALLOC].n, self.controllers[SOURCE_PAGE].n)
        rates, exited = self.rates.update(snapshot, live_pids())
        self._judge(self.directory.learn(snapshot.pid))  # identity and attribution: once per process
        if rates is not None and len(self._excluded):
            rates = rates.select(~np.isin(rates.pid, self._excluded))
        if len(exited):
            self.tracer.forget_pids(exited)
            self.directory.forget(exited)
            self._excluded = np.setdiff1d(self._excluded, exited)
        if len(snapshot) >= self.tracer.max_pids and not self._warned_full:
            log.warning("per-process map full (%d entries): least active processes are being evicted; "
                        "raise [sampling] max_pids", self.tracer.max_pids)
            self._warned_full = True
        self._adapt(counters, snapshot.monotonic_s)
        return Tick(rates=rates, counters=counters, sample_rates=in_force, exited_pids=exited)

    def _judge(self, new_pids: np.ndarray) -> None:
        """Apply the selection to processes seen for the first time."""
        if not self.selection.active or not len(new_pids):
            return
        rejected = [pid for pid in new_pids.tolist() if not self.selection.allows(self.directory.identity(pid))]
        if rejected:
            self._excluded = np.union1d(self._excluded, np.array(rejected, dtype=np.uint32))

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


def print_tick(tick: Tick, previous: Counters | None, config: Config, describe, out: TextIO) -> None:
    if tick.rates is None:
        return
    lines = [time.strftime("%H:%M:%S ") + sampling_line(tick.counters, previous, tick.rates.interval_s,
                                                       tick.sample_rates)]
    if config.output.top_pids:
        lines += rate_table(tick.rates, config.output.top_pids, describe)
    print("\n".join(lines) + "\n", file=out, flush=True)


def print_kill(report: KillReport, out: TextIO) -> None:
    print(oom_line(report), file=out, flush=True)


def open_kmsg() -> KmsgReader | None:
    try:
        return KmsgReader()
    except OSError as exc:
        log.warning("cannot read /dev/kmsg (%s): kills are reported from the ring buffer alone, without the "
                    "cgroup whose limit was hit; run as root or grant CAP_SYSLOG", exc.strerror)
        return None


def run(config: Config, out: TextIO = sys.stdout) -> int:
    stop = Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    kmsg = open_kmsg()
    with Tracer(max_pids=config.sampling.max_pids) as tracer:
        watchdog = Watchdog(tracer, config)
        correlator = KillCorrelator()
        attributor = KillAttributor(watchdog.directory, PodDirectory(config.attribution.pods_log_dir,
                                                                     config.attribution.containers_log_dir))
        log.info("tracing kmalloc, page allocations, RSS and OOM kills (policy: %s)", config.source)
        previous_counters = None
        next_tick = time.monotonic() + config.sampling.interval
        while not stop.requested:
            wait_ms = int(max(0.0, min(next_tick - time.monotonic(), POLL_SLICE_MS / 1000)) * 1000)
            for kill in tracer.poll_oom_kills(wait_ms):
                watchdog.directory.identity(kill.victim_pid)  # read /proc now, while the victim may still be there
                correlator.add_kill(kill, time.monotonic())
            for record in kmsg.read() if kmsg else ():
                correlator.add_record(record, time.monotonic())
            for kill, record in correlator.ready(time.monotonic()):
                print_kill(attributor.report(kill, record), out)
            if time.monotonic() < next_tick:
                continue
            tick = watchdog.tick()
            print_tick(tick, previous_counters, config, attributor.describe, out)
            previous_counters = tick.counters
            # A late tick (a stalled machine) starts a fresh schedule rather than firing a burst.
            next_tick = max(next_tick + config.sampling.interval, time.monotonic())
    if kmsg:
        kmsg.close()
    log.info("stopped; BPF programs detached")
    return 0
