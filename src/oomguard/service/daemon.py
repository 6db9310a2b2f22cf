"""The daemon: one tick per interval, OOM kills as they arrive, SIGHUP applied in place, clean exit on signals.

Data flows one way each tick: collector (maps -> rates) -> selection and
identity -> subjects (limiting cgroups) -> alert engine -> delivery, metrics,
console, status. Kills flow: ring buffer + kernel log -> correlator ->
attributed report -> alert engine -> delivery.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TextIO

from ..alerting import store
from ..alerting.chart import ChartFiles, chart_data
from ..alerting.engine import AlertEngine, KillOutcome
from ..alerting.lifecycle import CONFIRMED, ESCALATED, PRE_OOM, missed_kills
from ..alerting.messages import Message, utc_ms
from ..alerting.outbox import Outbox, receivers_for
from ..bpf.events import Counters, OomKill
from ..bpf.preflight import check_pid_namespace
from ..bpf.tracer import Tracer
from ..config import (
    NO_RECEIVERS,
    NO_RECEIVERS_FIX,
    Config,
    ConfigError,
    live_part,
    load,
    lost_sections,
    needs_restart,
    receivers,
)
from ..detection.descriptors import OpenedSince
from ..detection.detector import CgroupDetector, Verdict
from ..detection.groups import Subject, explained, subjects
from ..detection.screen import Screens
from ..detection.workloads import WorkloadMemory, judged
from ..errors import OomguardError
from ..evidence.capture import EvidenceCapture, section
from ..evidence.symbols import Symbolizer
from ..files import UnsafePath, own_directory
from ..identity.cgroup import MemoryCgroup, default_memory_version, oom_kills, own_throttled_s
from ..identity.owners import Owners
from ..identity.pods import PodDirectory
from ..identity.procfs import ProcessDirectory
from ..identity.selection import Selection, kernel_filter_for
from ..kills.kmsg import KernelOomRecord, KmsgReader, records_in_log
from ..kills.report import KillAttributor, KillCorrelator, KillReport
from ..sampling.collector import Collector, Tick
from ..signals import Signals
from ..text import markdown, plain, printable
from ..views.console import alert_line, print_kill, print_message, print_tick, sampling_line
from ..views.table import busiest_rows
from . import systemd
from .pace import Late, Pace, Stopwatch
from .recording import Recorder
from .status import write_status

log = logging.getLogger("oomguard")
POLL_SLICE_MS = 200  # longest wait in the ring buffer, so signals are seen promptly
STATUS_TOP = 20  # processes in status.json (`status`, and `top` as the daemon's client)
SAY_AGAIN_S = 60.0  # how often a persisting disk error, or late ticks, are logged again
SHUTDOWN_S = 2.0  # what stopping may wait for the senders (systemd's TimeoutStopSec is 5 s)


def prepare_state_dir(directory: Path) -> None:
    """[state] dir exists and is the daemon's alone (0700, whatever the umask). One that another user owns or
    can write into, or a symlink, is refused (OomguardError): what it holds would steer a root daemon's writes
    and messages. Any other failure (a read-only disk) is logged, never fatal."""
    try:
        own_directory(directory)
        directory.chmod(0o700)
    except UnsafePath as exc:
        raise unsafe_state_dir(directory, exc) from None
    except OSError as exc:
        log.error("cannot prepare [state] dir %s (%s): alerts still go to the console and the receivers, but "
                  "state and the spool are not kept; fix: make it a writable directory, or set [state] dir",
                  directory, exc.strerror or exc)


def unsafe_state_dir(directory: Path, exc: UnsafePath) -> OomguardError:
    """The error for a state dir the daemon will not use, naming the fix."""
    return OomguardError(f"[state] dir {exc.path} {exc.problem}: refusing to use it",
                         f"give it to the daemon's user alone (chown root: {exc.path} && chmod 700 {exc.path}), "
                         f"or set [state] dir to a real directory only root can write")


def own_usage(status: Path = Path("/proc/self/status")) -> dict[str, float]:
    """The daemon's own footprint: resident memory (and its anonymous part), threads, CPU seconds so far."""
    fields: dict[str, float] = {}
    try:
        for line in status.read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "VmHWM"):
                fields[name] = int(value.split()[0]) * 1024
            elif name == "Threads":
                fields["threads"] = int(value)
    except (OSError, ValueError, IndexError):
        pass
    times = os.times()
    return {"rss_bytes": fields.get("VmRSS", 0), "rss_anon_bytes": fields.get("RssAnon", 0),
            "peak_rss_bytes": fields.get("VmHWM", 0), "threads": fields.get("threads", 0),
            "cpu_s": times.user + times.system}


def open_kmsg() -> KmsgReader | None:
    try:
        return KmsgReader()
    except OSError as exc:
        log.warning("cannot read /dev/kmsg (%s): kills are reported from the ring buffer alone, without the "
                    "cgroup whose limit was hit; run as root or grant CAP_SYSLOG", exc.strerror)
        return None


def pods_for(config: Config) -> PodDirectory:
    return PodDirectory(config.attribution.pods_log_dir, config.attribution.containers_log_dir)


class Daemon:
    """The running watchdog. `run()` owns every resource through one ExitStack."""

    def __init__(self, config: Config, out: TextIO = sys.stdout, record_to: Path | None = None):
        self.config, self.out, self.record_to = config, out, record_to
        self.started = time.time()
        self.kills_seen = 0
        self.signals = Signals()
        self.pinger = systemd.WatchdogPinger()
        self.directory = ProcessDirectory()
        self.owners = Owners(self.directory, pods_for(config))
        self.selection = Selection(self.directory, config.selection)
        self.screens = Screens(config.detect.screen_sigma)
        self.opened = OpenedSince()  # descriptors each suspect held when its cgroup's climb was first seen
        self._first_read: float | None = None  # the first tick: cgroups born after it are new containers
        version = default_memory_version()
        self.detector = CgroupDetector.for_policy(config)
        self.engine = AlertEngine(config, boot_id=store.boot_id(),
                                  count_kills=lambda cgroup: oom_kills(MemoryCgroup(version, cgroup)))
        self.state_file = config.state.dir / store.ALERTS_FILE
        prepare_state_dir(config.state.dir)
        self.workloads = WorkloadMemory()  # what each workload's earlier instances did (survives restarts)
        self.workloads.load(config.state.dir)
        self._workloads_saved_at = time.monotonic()
        self._withheld: set[tuple[str, str]] = set()  # (cgroup, severity) already said in the log
        self.withheld = 0  # instances whose verdict was withheld, since start
        # Alerts left open by an earlier boot: resolved (sent once the receivers are up), not resumed.
        self.stale = self.engine.restored(store.load(self.engine.book, self.state_file), time.monotonic())
        self.correlator = KillCorrelator()
        self.attributor = KillAttributor(self.owners)
        self.previous_counters: Counters | None = None
        self.outbox: Outbox | None = None
        self.exporter: Any = None  # metrics.Exporter, imported only when the exporter is on
        self.recorder: Recorder | None = None
        self.kmsg: KmsgReader | None = None
        self.evidence: EvidenceCapture | None = None
        self.charts: ChartFiles | None = None
        self.pace = Pace(config.sampling.interval)
        self._disk_error_at = float("-inf")
        self._late_logged_at = float("-inf")
        self.receivers = receivers(config.alerts)  # redacted, for status: set at start (a reload keeps them)
        self._last_rates: tuple[int, int] | None = None  # the sample rates last tick, when ticks are not shown
        self._summary_at = float("-inf")  # when the last summary line was printed

    # -- lifetime ----------------------------------------------------------

    def run(self) -> int:
        with ExitStack() as stack:
            self._open(stack)
            log.info("tracing kmalloc, page allocations, RSS and OOM kills (policy: %s)", self.config.source)
            if not self.receivers:
                log.warning("%s; fix: %s", NO_RECEIVERS, NO_RECEIVERS_FIX)
            namespace = check_pid_namespace()
            if not namespace.ok:
                log.warning("running in a %s: %s", namespace.detail, namespace.fix)
            systemd.notify("READY=1")  # only now: every program is attached
            stack.callback(systemd.notify, "STOPPING=1")
            self._deliver(self.stale, time.time())
            self._confirm_missed_kills()
            self._loop()
            if self.workloads.changed:
                self._save_workloads(time.monotonic())
        log.info("stopped; BPF programs detached")
        return 0

    def _open(self, stack: ExitStack) -> None:
        config = self.config
        self.kmsg = open_kmsg()
        if self.kmsg:
            stack.callback(self.kmsg.close)
        if self.record_to:
            self.recorder = Recorder(self.record_to, socket.gethostname(), config.sampling.interval)
            stack.callback(self.recorder.close)
        if config.metrics.listen:
            from .metrics import Exporter  # prometheus-client only when the exporter is on

            exporter = Exporter(config.metrics, health=lambda: self.pace.health(time.monotonic()))
            if exporter.start():
                self.exporter = exporter
                stack.callback(exporter.stop)
        receivers = receivers_for(config.alerts.urls, config.alerts.alertmanager, None,
                                  config.alerts.alertmanager_resend)
        if receivers and not self.record_to:  # a recording prints alerts, never sends them
            if config.alerts.chart:
                self.charts = ChartFiles(config.state.dir / "charts")
                stack.callback(self.charts.stop)
                receivers = receivers_for(config.alerts.urls, config.alerts.alertmanager, self.charts,
                                          config.alerts.alertmanager_resend)
            self.outbox = Outbox(config.state.dir / "spool", receivers)
            self.outbox.start()
            stack.callback(self._stop_outbox)
        self.tracer = stack.enter_context(Tracer(max_pids=config.sampling.max_pids))
        self.collector = Collector(self.tracer, config.sampling)
        if config.alerts.evidence:
            self.evidence = EvidenceCapture(self.tracer, Symbolizer(), config.state.dir / "evidence")
            stack.callback(self.evidence.stop)
        self.tracer.set_cgroup_filter(*kernel_filter_for(self.selection.rules))

    def _loop(self) -> None:
        next_tick = time.monotonic() + self.config.sampling.interval
        while not self.signals.stop:
            self.pinger.ping()
            if self.signals.reload:
                self.signals.reload = False
                self.reload()
            wait_ms = int(max(0.0, min(next_tick - time.monotonic(), POLL_SLICE_MS / 1000)) * 1000)
            for kill in self.tracer.poll_oom_kills(wait_ms):
                self.directory.reread(kill.victim_pid)  # read /proc now, while the victim is still there
                self.correlator.add_kill(kill, time.monotonic())
            for record in self.kmsg.read() if self.kmsg else ():
                self.correlator.add_record(record, time.monotonic())
            for pair in self.correlator.ready(time.monotonic()):
                self.on_kill(*pair)
            if time.monotonic() < next_tick:
                continue
            self._late(self.pace.started(next_tick, time.monotonic(), time.time(), own_throttled_s()))
            self.on_tick()
            # A late tick (a stalled machine) starts a fresh schedule rather than firing a burst.
            next_tick = max(next_tick + self.config.sampling.interval, time.monotonic())
        log.info("received %s, stopping", self.signals.stopped_by)

    # -- events ------------------------------------------------------------

    def on_kill(self, kill: OomKill | None, record: KernelOomRecord | None) -> KillOutcome:
        started, decided = time.perf_counter(), time.time()
        self.kills_seen += 1
        report = self.attributor.report(kill, record)
        print_kill(report, self.out)
        if self.evidence:
            self.evidence.collect()  # what the kernel sampled since the last tick, for the confirmation
        outcome = self.engine.kill(report, time.monotonic())
        self.detector.restart(outcome.killed_in)
        self.workloads.killed(outcome.killed_in)
        self._deliver([outcome.message], decided)
        self._count_kill(report, outcome)
        if self.recorder:
            self.recorder.kill(time.monotonic(), report)
        self.pace.took("an OOM kill's handling", time.perf_counter() - started)
        return outcome

    def _judged(self, found: list[Subject], now: float) -> list[Verdict]:
        """The detector's verdicts, less those of instances doing what their workload's earlier ones did."""
        verdicts, withheld = judged(self.workloads, self.detector, found, self.config.alerts.headroom_floor, now)
        for w in withheld:
            if (w.cgroup, w.severity) not in self._withheld:
                self._withheld.add((w.cgroup, w.severity))
                self.withheld += 1
                log.info("%s: %s withheld, as its workload's earlier instances did the same: %s (workload %s)",
                         printable(w.cgroup), w.severity, w.why, printable(w.workload))
        self._withheld = {said for said in self._withheld if said[0] in self.workloads.live}
        if self.workloads.changed and now - self._workloads_saved_at >= SAY_AGAIN_S:
            self._save_workloads(now)
        return verdicts

    def _save_workloads(self, now: float) -> None:
        self._workloads_saved_at = now
        try:
            self.workloads.save(self.config.state.dir)
        except OSError as exc:
            self._disk_error(self.config.state.dir, exc)

    def _late(self, late: Late | None) -> None:
        """A late tick: counted, and said in the log at most once a minute."""
        if late is None:
            return
        if self.exporter:
            self.exporter.late_tick(late.by_s, late.reason)
        now = time.monotonic()
        if now - self._late_logged_at >= SAY_AGAIN_S:
            self._late_logged_at = now
            log.warning("a tick started %.2fs late (%.2fs after the one before; %d late of %d so far): %s",
                        late.by_s, late.gap_s, self.pace.late, self.pace.ticks, late.why)

    def _count_kill(self, report: KillReport, outcome: KillOutcome) -> None:
        """A kill in the figures: by where it happened, and its lead time when an alert foresaw it."""
        if self.exporter:
            pod = report.pod
            self.exporter.count_kill(pod.namespace if pod else "", pod.pod if pod else "",
                                     (pod.container or "") if pod else "", outcome.foreseen)
            if outcome.lead_s is not None:
                self.exporter.lead_time.observe(outcome.lead_s)

    def _confirm_missed_kills(self) -> None:
        """Alerts resumed from this boot whose OOM kill came while the daemon was not running (killed the
        instant it saw the kill, say): the kernel still says so (its log, the cgroup's kill counter), so they
        are confirmed now, never judged false alarms when their processes are found gone."""
        book = self.engine.book
        if not book.open:
            return
        counts = {cgroup: self.engine.count_kills(cgroup) for cgroup in book.open}
        now = time.monotonic()
        for missed in missed_kills(list(book.open.values()), counts, records_in_log(), now):
            alert = missed.alert
            record = missed.record or KernelOomRecord(int(now * 1e6), "CONSTRAINT_MEMCG", alert.cgroup, None,
                                                      "(not in the kernel log)", 0, None)
            report = self.attributor.report(None, record)
            outcome = self.engine.kill(report, missed.at)
            self.detector.restart(outcome.killed_in)
            self._count_kill(report, outcome)
            if self.outbox and self.outbox.spooled(alert.id, CONFIRMED):
                log.info("alert %s: its confirmation was spooled before the restart; not sent again", alert.id)
                self._save_book()
                continue
            log.warning("alert %s: its OOM kill came while oomguard was not running (%s); confirmed now",
                        alert.id, "the kernel log has it" if missed.record else "the cgroup's kill counter moved")
            self._deliver([outcome.message], time.time())

    def _stop_outbox(self) -> None:
        """Within SHUTDOWN_S whatever the receivers do; what is not sent stays in the spool for the next start."""
        if self.outbox and not self.outbox.stop(SHUTDOWN_S):
            log.warning("a receiver did not answer in time: its message stays in the spool for the next start")

    def on_tick(self) -> Tick:
        started, watch = time.perf_counter(), Stopwatch()
        if self.outbox:
            self.outbox.supervise()
        tick = self.collector.tick()
        rates = self.selection.admit(tick.rates, tick.seen_pids, tick.live_pids, tick.departed)
        watch.lap("reading the maps")
        found: list[Subject] = []
        if rates is not None:
            # Each usage is stamped when it is read, not when the tick's work is done: on a starved CPU the
            # work can take seconds, and a late stamp stretches a 4 s climb into a 5 s trend.
            read_at, decided = time.monotonic(), time.time()
            found = subjects(rates, tick.sample_rates, self.owners, self.screens.update(rates))
            decisions = self.engine.decide(found, self._judged(found, read_at), read_at)
            # only the few subjects an alert opens or escalates on are explained (culprits, holdings)
            smoothed = self.screens.smoothed() if decisions else {}
            messages = [self.engine.words(d, explained(d.subject, rates, self.owners, smoothed,
                                                       d.verdict.slope_bytes_per_s, opened=self.opened, now=read_at))
                        for d in decisions] + self.engine.expire(read_at, {s.cgroup for s in found})
            watch.lap("detection")
            self._deliver(messages, decided)  # the warning first: evidence and charts are added as they are
            watch.lap("delivery")
            suspects = self._suspects(found)
            self._count_descriptors(found, suspects, read_at)
            if self.evidence:
                self._capture(found, suspects)
            if self.charts:
                self.charts.warm(bool(suspects) or bool(self.engine.book.open), read_at)
            watch.lap("evidence")
            if self.outbox and self.config.alerts.alertmanager:
                for refresh in self.engine.refresh(read_at, self.config.alerts.alertmanager_resend):
                    self.outbox.put(refresh)  # Alertmanager's alone: not printed, not a new alert
            if self.recorder:
                self.recorder.tick(read_at, found)
        if self.exporter:
            from .metrics import Figures

            self.exporter.tick_duration.observe(time.perf_counter() - started)
            self.exporter.update(Figures(
                rates=rates, owner_of=self.owners.cached, subjects=found, verdicts=self.engine.verdicts,
                sample_rates=tick.sample_rates, counters=tick.counters, processes=len(self.directory),
                tallies=self.engine.book.tallies, open_alerts=len(self.engine.book.open),
                backlog=self.outbox.pending() if self.outbox else 0,
                dropped=self.outbox.counts.dropped if self.outbox else 0,
                delivery_latest_s=self.outbox.counts.latest_s if self.outbox else 0.0,
                delivery_slowest_s=self.outbox.counts.slowest_s if self.outbox else 0.0))
        if self._ticks_shown():
            print_tick(replace(tick, rates=rates), self.previous_counters, self.config.output.top_pids,
                       self.owners.owner_of, self.out)
        else:
            self._quiet_lines(tick)
        self.previous_counters = tick.counters
        watch.lap("metrics and output")
        self._write_status(tick, time.perf_counter() - started)
        watch.lap("the status file")
        self.pace.took(*watch.slowest())
        return tick

    def _ticks_shown(self) -> bool:
        """Each interval's lines: on a terminal by default; a service's log gets a summary instead."""
        ticks = self.config.output.ticks
        return ticks == "always" or (ticks == "auto" and self.out.isatty())

    def _quiet_lines(self, tick: Tick) -> None:
        """What a service's log gets instead of each tick: a line when a sample rate changes, and a summary
        every [output] summary_every (alerts and kills are printed as they happen, whatever this says)."""
        now = time.monotonic()
        if self._last_rates is not None and tick.sample_rates != self._last_rates:
            print(time.strftime("%H:%M:%S ") + sampling_line(tick.counters, self.previous_counters,
                                                            self.config.sampling.interval, tick.sample_rates),
                  file=self.out, flush=True)
        self._last_rates = tick.sample_rates
        if now - self._summary_at >= self.config.output.summary_every:
            self._summary_at = now
            book = self.engine.book
            print(time.strftime("%H:%M:%S ") + f"watching {len(self.directory)} processes in "
                  f"{len(self.engine.subjects)} limited cgroups; sample rates kmalloc 1-in-{tick.sample_rates[0]}, "
                  f"page 1-in-{tick.sample_rates[1]}; {len(book.open)} open alerts; {self.kills_seen} OOM kills "
                  f"seen; {book.tallies.lead_time_summary()}", file=self.out, flush=True)

    def reload(self) -> None:
        """Re-read the policy file; apply what can change live, keep the rest (logged), keep all on any error."""
        current = self.config
        if current.source == "built-in defaults":
            log.warning("SIGHUP: running on built-in defaults, there is no file to reload")
            return
        systemd.notify("RELOADING=1")
        try:
            new = load(Path(current.source))
        except ConfigError as exc:
            log.error("SIGHUP: new policy rejected, keeping the old one: %s (fix: %s)", exc.cause, exc.fix)
        except Exception as exc:  # never let a reload kill the watchdog  # noqa: BLE001
            log.error("SIGHUP: reading the new policy failed (%s: %s), keeping the old one; fix: check the file "
                      "with `oomguard check-config -c %s`", type(exc).__name__, exc, current.source)
        else:
            lost = lost_sections(current, new)
            if lost:
                log.error("SIGHUP: new policy rejected, keeping the old one: %s has lost %s, which the running "
                          "policy has (a half-written file?); fix: write them back, or, if you mean to drop "
                          "them, restart (systemctl restart oomguard)", current.source, ", ".join(lost))
            else:
                for key in needs_restart(current, new):
                    log.warning("SIGHUP: %s changed: needs a restart to apply (systemctl restart oomguard); "
                                "keeping the running value", key)
                self.apply(live_part(current, new))
                log.info("SIGHUP: policy reloaded from %s", new.source)
        systemd.notify("READY=1")

    def apply(self, config: Config) -> None:
        """Put a policy in force in place: every stage keeps what it has learnt."""
        self.collector.reconfigure(config.sampling)
        self.selection.reconfigure(config.selection)
        self.tracer.set_cgroup_filter(*kernel_filter_for(self.selection.rules))
        self.screens.reconfigure(config.detect.screen_sigma)
        self.detector.apply_policy(config)
        self.engine.reconfigure(config)
        self.pace.interval_s = config.sampling.interval
        if config.attribution != self.config.attribution:
            self.owners.pods = pods_for(config)
        if self.exporter:
            self.exporter.reconfigure(config.metrics)
        self.config = config

    # -- edges ---------------------------------------------------------------

    def _with_chart(self, message: Message) -> Message:
        """The message with the numbers of its cgroup's picture (drawn later, by the sender, in a child)."""
        cgroup = message.labels.get("cgroup", "")
        times, usage = self.detector.history(cgroup)
        verdict = self.engine.verdicts.get(cgroup)
        if not len(times) or verdict is None:
            return message
        killed = message.kind == CONFIRMED
        now = time.monotonic() if killed else float(times[-1])
        data = chart_data(times, usage, now, verdict.limit, message.title.removeprefix("[oomguard] "), cgroup,
                          eta_s=None if killed else verdict.seconds_to_limit,
                          eta_interval=None if killed else verdict.eta_interval, killed=killed, wall=time.time())
        return replace(message, chart=data)

    def _suspects(self, found: list[Subject]) -> dict[str, tuple[int, ...]]:
        """The processes of the cgroups with an open alert or an established climb, by cgroup."""
        verdicts, open_alerts = self.engine.verdicts, self.engine.book.open
        return {s.cgroup: s.pids for s in found if s.cgroup != "/" and (
            s.cgroup in open_alerts or (s.cgroup in verdicts and verdicts[s.cgroup].climbing))}

    def _count_descriptors(self, found: list[Subject], suspects: dict[str, tuple[int, ...]], now: float) -> None:
        """Count the descriptors of the suspects' processes, then of new containers' (started since the
        daemon's first tick, in their first minute): a leak from birth can be alerted on the tick its climb
        is first seen, and only a count at its start shows what its processes have opened since."""
        if self._first_read is None:
            self._first_read = now
        young = self.detector.young(self._first_read, now)
        new = [s.pids for s in found if s.cgroup in young]  # a suspect's pids again: OpenedSince takes each once
        self.opened.update(now, (pid for pids in [*suspects.values(), *new] for pid in pids))

    def _capture(self, found: list[Subject], suspects: dict[str, tuple[int, ...]]) -> None:
        """Deep-sample the suspects."""
        assert self.evidence is not None
        commands = {pid: s.command for s in found if s.cgroup in suspects for pid in s.pids}
        self.evidence.update(suspects, commands)

    def _with_evidence(self, message: Message) -> Message:
        """The message with its cgroup's call sites and memory breakdown, and the full report attached."""
        assert self.evidence is not None
        evidence = self.evidence.of(message.labels.get("cgroup", ""))
        if evidence is None:
            return message
        text = section(evidence, time.monotonic(), message.alert_id, self.evidence.held_back)
        path = self.evidence.save(message.alert_id, message.title, evidence)
        return replace(message, body=f"{message.body}\n\n{plain(text)}",
                       markdown_body=f"{message.markdown_body}\n\n{markdown(text)}",
                       evidence=str(path) if path else None)

    def _deliver(self, messages: list[Message], decided: float) -> None:
        """Each message out at once: printed, spooled, its chart started (the senders wait for it only until
        its decoration deadline). `decided`: the wall time of the tick or kill that made them."""
        if not messages:
            return
        for message in messages:
            message = replace(message, decided_at=decided, body=f"{message.body}decided at: {utc_ms(decided)}\n",
                              markdown_body=f"{message.markdown_body}decided at: {utc_ms(decided)}\n")
            if self.evidence and message.kind in (PRE_OOM, ESCALATED, CONFIRMED):
                message = self._with_evidence(message)
            if self.config.alerts.chart and message.kind in (PRE_OOM, ESCALATED, CONFIRMED):
                message = self._with_chart(message)
                if self.charts:
                    self.charts.draw(asdict(message))
            if systemd.Journal.native:  # one journal entry with the alert's fields, not a bare stdout line
                log.log(systemd.alert_priority(message.kind), "%s", alert_line(message),
                        extra=systemd.journal_fields(message))
            else:
                print_message(message, self.out)
            if self.outbox:
                self.outbox.put(message)
        self._save_book()

    def _save_book(self) -> None:
        try:
            store.save(self.engine.book, self.state_file)
        except OSError as exc:
            self._disk_error(self.state_file, exc)

    def _write_status(self, tick: Tick, tick_s: float) -> None:
        rates, config = tick.rates, self.config
        interval = rates.interval_s if rates is not None else config.sampling.interval
        book = self.engine.book
        status = {
            "pid": os.getpid(), "started": self.started, "updated": time.time(), "policy": config.source,
            "interval_s": config.sampling.interval,
            "sample_rates": list(self.collector.sample_rates),
            "events_per_s": self.collector.events_per_s(interval),
            "ringbuf_drops": tick.counters.ringbuf_drops,
            "processes": len(self.directory), "kills_seen": self.kills_seen,
            "top": [asdict(row) for row in busiest_rows(rates, STATUS_TOP, self.owners.owner_of)] if rates else [],
            "open_alerts": [{"id": a.id, "cgroup": a.cgroup, "title": a.title, "age_s": time.monotonic() - a.opened_at}
                            for a in book.open.values()],
            "tallies": asdict(book.tallies) | {"summary": book.tallies.lead_time_summary()},
            "undelivered": self.outbox.pending() if self.outbox else 0,
            "receivers": self.receivers,
            "delivery": asdict(self.outbox.counts) if self.outbox else {},
            "tick_s": tick_s,
            "ticks": self.pace.status(),
            "workloads": {"learnt": len(self.workloads.shapes), "live": len(self.workloads.live),
                          "withheld": self.withheld},
            "self": own_usage(),
        }
        try:
            write_status(config.state.dir, status)
        except OSError as exc:
            self._disk_error(config.state.dir, exc)
        kmalloc_n, page_n = self.collector.sample_rates
        systemd.notify(f"STATUS=kmalloc 1-in-{kmalloc_n}, page 1-in-{page_n}; {len(self.directory)} processes; "
                       f"{self.kills_seen} OOM kills seen; "
                       f"{len(book.open)} open alerts")

    def _disk_error(self, path: Path, exc: OSError) -> None:
        """A state write failed: say so (at most once a minute) and keep watching."""
        now = time.monotonic()
        if now - self._disk_error_at >= SAY_AGAIN_S:
            self._disk_error_at = now
            log.error("cannot write %s (%s): alerts still go to the console and the receivers, but state is not "
                      "kept; fix: free space or permissions on [state] dir %s", path, exc.strerror or exc,
                      self.config.state.dir)


def run(config: Config, out: TextIO = sys.stdout, record_to: Path | None = None) -> int:
    """The daemon. With `record_to`, it records what it sees there and delivers no alert (only prints)."""
    return Daemon(config, out, record_to).run()
