"""The daemon's main loop: one tick per interval, OOM kills as they arrive, clean exit on signals."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from . import systemd
from .config import Config, ConfigError, load
from .alerts import Message
from .attribution import PodDirectory
from .delivery import Outbox, receivers_for
from .guard import LiveGuard, print_message
from .events import SOURCE_KMALLOC, SOURCE_PAGE, SOURCES, Counters
from .kills import KillAttributor, KillCorrelator, KillReport
from .kmsg import KmsgReader
from .state import write_status
from .loader import Tracer
from .metrics import Exporter
from .preflight import check_pid_namespace
from .recording import Recorder
from .procfs import ProcessDirectory, live_pids
from .rates import RateTracker, Rates
from .report import oom_line, rate_table, sampling_line
from .sampling import SampleRateController
from .selection import MODE_OFF, ProcessFilter, cgroup2_mount, kernel_cgroup_filter

log = logging.getLogger("oomguard")
POLL_SLICE_MS = 200  # longest wait in the ring buffer, so signals are seen promptly


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
        n = config.sampling.initial_rate
        self.controllers = [SampleRateController(config.sampling.target_events_per_sec, initial_n=n)
                            for _ in SOURCES]
        for source, controller in enumerate(self.controllers):
            tracer.set_sample_rate(source, controller.n)
        self.rates = RateTracker()
        self.directory = ProcessDirectory()
        self._excluded = np.zeros(0, dtype=np.uint32)  # pids the selection rejected, sorted
        self.apply_policy(config)
        self._previous_counters: Counters | None = None
        self._previous_time: float | None = None
        self._warned_full = False

    def apply_policy(self, config: Config) -> None:
        """Take up a (new) policy: the sampling target and the process selection. max_pids needs a restart."""
        self.config = config
        for controller in self.controllers:
            controller.target_per_s = float(config.sampling.target_events_per_sec)
        self.selection = ProcessFilter(*(getattr(config.selection, k) for k in (
            "include_cgroups", "exclude_cgroups", "include_commands", "exclude_commands")))
        mode, directories = kernel_cgroup_filter(self.selection, cgroup2_mount(Path("/proc/self/mounts").read_text()))
        self.tracer.set_cgroup_filter(mode, directories)
        if self.selection.active:
            log.info("process selection: %s; in the kernel: %s", self.selection,
                     "off (filtering in user space)" if mode == MODE_OFF else ", ".join(map(str, directories)))
        self._excluded = np.zeros(0, dtype=np.uint32)
        self._judge(np.array(sorted(self.directory.pids()), dtype=np.uint32))  # everyone known, by the new rules

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

    def events_per_s(self, interval_s: float) -> list[float]:
        """Events seen per source over the last interval."""
        return [float(c.last_seen) / interval_s if interval_s > 0 else 0.0 for c in self.controllers]

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


class Signals:
    """SIGTERM/SIGINT ask to stop, SIGHUP to reload; the loop acts on them between waits."""

    def __init__(self) -> None:
        self.stop = self.reload = False
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        self.stop = True

    def _on_reload(self, _signum, _frame) -> None:
        self.reload = True


def reload_policy(current: Config, watchdog: Watchdog, guard: LiveGuard) -> Config:
    """Re-read the policy file; keep the current policy if the new one is invalid."""
    if current.source == "built-in defaults":
        log.warning("SIGHUP: running on built-in defaults, there is no file to reload")
        return current
    systemd.notify("RELOADING=1")
    try:
        new = load(Path(current.source))
    except ConfigError as exc:
        log.error("SIGHUP: new policy rejected, keeping the old one: %s (fix: %s)", exc.cause, exc.fix)
        systemd.notify("READY=1")
        return current
    if new.sampling.max_pids != current.sampling.max_pids:
        log.warning("SIGHUP: [sampling] max_pids changes only on restart; keeping %d", current.sampling.max_pids)
    if new.alerts.urls != current.alerts.urls or new.state.dir != current.state.dir:
        log.warning("SIGHUP: [alerts] urls and [state] dir change only on restart")
    watchdog.apply_policy(new)
    guard.apply_policy(new)
    log.info("SIGHUP: policy reloaded from %s", new.source)
    systemd.notify("READY=1")
    return new


def status_of(tick: Tick, watchdog: Watchdog, config: Config, attributor: KillAttributor, started: float,
              kills_seen: int, guard: LiveGuard, outbox: Outbox | None) -> dict:
    """The figures `oomguard status` shows, as plain JSON values."""
    rates = tick.rates
    top = []
    if rates is not None:
        for i in rates.busiest(10):
            command, owner = attributor.describe(int(rates.pid[i]))
            top.append({"pid": int(rates.pid[i]), "command": command, "owner": owner,
                        "kmalloc_bytes_per_s": float(rates.kmalloc_bytes_per_s[i]),
                        "page_bytes_per_s": float(rates.page_bytes_per_s[i]), "rss_bytes": int(rates.rss_bytes[i])})
    interval = rates.interval_s if rates is not None else config.sampling.interval
    return {
        "pid": os.getpid(), "started": started, "updated": time.time(), "policy": config.source,
        "interval_s": config.sampling.interval,
        "sample_rates": [c.n for c in watchdog.controllers],
        "events_per_s": watchdog.events_per_s(interval),
        "ringbuf_drops": tick.counters.ringbuf_drops,
        "processes": len(watchdog.directory), "kills_seen": kills_seen, "top": top,
        "open_alerts": [{"id": a.id, "cgroup": a.cgroup, "title": a.title, "age_s": time.monotonic() - a.opened_at}
                        for a in guard.book.open.values()],
        "tallies": asdict(guard.book.tallies) | {"summary": guard.book.tallies.lead_time_summary()},
        "undelivered": outbox.pending() if outbox else 0,
    }


def run(config: Config, out: TextIO = sys.stdout, record_to: Path | None = None) -> int:
    """The daemon. With `record_to`, it records what the guard sees there and delivers no alert (only prints)."""
    signals = Signals()
    kmsg = open_kmsg()
    started = time.time()
    kills_seen = 0
    pinger = systemd.WatchdogPinger()
    receivers = receivers_for(config.alerts.urls, config.alerts.alertmanager)
    outbox = Outbox(config.state.dir / "spool", receivers) if receivers and not record_to else None
    recorder = Recorder(record_to, socket.gethostname(), config.sampling.interval) if record_to else None
    exporter = Exporter(config.metrics) if config.metrics.listen else None
    with Tracer(max_pids=config.sampling.max_pids) as tracer:
        watchdog = Watchdog(tracer, config)
        correlator = KillCorrelator()
        pods = PodDirectory(config.attribution.pods_log_dir, config.attribution.containers_log_dir)
        attributor = KillAttributor(watchdog.directory, pods)

        def deliver(message: Message) -> None:
            print_message(message, out)
            if outbox:
                outbox.put(message)

        guard = LiveGuard(config, watchdog.directory, pods, deliver)
        if outbox:
            outbox.start()
        if exporter and not exporter.start():
            exporter = None
        log.info("tracing kmalloc, page allocations, RSS and OOM kills (policy: %s)", config.source)
        namespace = check_pid_namespace()
        if not namespace.ok:
            log.warning("running in a %s: %s", namespace.detail, namespace.fix)
        systemd.notify("READY=1")  # only now: every program is attached
        previous_counters = None
        next_tick = time.monotonic() + config.sampling.interval
        while not signals.stop:
            pinger.ping()
            if signals.reload:
                signals.reload = False
                config = reload_policy(config, watchdog, guard)
            wait_ms = int(max(0.0, min(next_tick - time.monotonic(), POLL_SLICE_MS / 1000)) * 1000)
            for kill in tracer.poll_oom_kills(wait_ms):
                watchdog.directory.identity(kill.victim_pid)  # read /proc now, while the victim may still be there
                correlator.add_kill(kill, time.monotonic())
            for record in kmsg.read() if kmsg else ():
                correlator.add_record(record, time.monotonic())
            for kill, record in correlator.ready(time.monotonic()):
                kills_seen += 1
                report = attributor.report(kill, record)
                print_kill(report, out)
                foreseen = guard.book.tallies.foreseen
                guard.kill(report)
                if exporter and guard.book.tallies.foreseen > foreseen:
                    exporter.lead_time.observe(guard.book.tallies.lead_times_s[-1])
                if recorder:
                    recorder.kill(time.monotonic(), report)
            if time.monotonic() < next_tick:
                continue
            started_tick = time.perf_counter()
            tick = watchdog.tick()
            guard.tick(tick.rates, tick.sample_rates)
            if exporter:
                exporter.tick_duration.observe(time.perf_counter() - started_tick)
                exporter.update(rates=tick.rates, owner_of=attributor.owner, observations=guard.last_observations,
                                forecasts=guard.guard.last_forecasts, sample_rates=tick.sample_rates,
                                counters=tick.counters, processes=len(watchdog.directory),
                                tallies=guard.book.tallies, open_alerts=len(guard.book.open))
            print_tick(tick, previous_counters, config, attributor.describe, out)
            if recorder and tick.rates is not None:
                recorder.tick(time.monotonic(), guard.last_observations)
            previous_counters = tick.counters
            status = status_of(tick, watchdog, config, attributor, started, kills_seen, guard, outbox)
            write_status(config.state.dir, status)
            systemd.notify(f"STATUS=kmalloc 1-in-{status['sample_rates'][0]}, page 1-in-{status['sample_rates'][1]}; "
                           f"{status['processes']} processes; {kills_seen} OOM kills seen; "
                           f"{len(guard.book.open)} open alerts")
            # A late tick (a stalled machine) starts a fresh schedule rather than firing a burst.
            next_tick = max(next_tick + config.sampling.interval, time.monotonic())
        systemd.notify("STOPPING=1")
    if outbox:
        outbox.stop(1.0)  # what is not sent stays in the spool for the next start
    if recorder:
        recorder.close()
    if exporter:
        exporter.stop()
    if kmsg:
        kmsg.close()
    log.info("stopped; BPF programs detached")
    return 0
