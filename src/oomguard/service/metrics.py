"""The Prometheus exporter (prometheus-client): per-container and top-N per-process figures, bounded.

Each tick builds the metric families from that tick's figures and swaps them
in at once; scrapes (on the exporter's own thread) read the last complete
set. Per-process series exist only for the top `[metrics] top_pids`
processes and per-container series for at most `max_containers`, so PID
churn cannot grow the number of series. Names follow Prometheus conventions
(units in names, `_total` counters); pod labels are spelled as
kube-state-metrics spells them (namespace, pod, container).

The same server answers `/healthz` from the loop's own pace, not from this
thread: 200 while ticks keep coming, 503 (with why) once the last tick is
older than STALE_TICKS intervals, so a liveness probe restarts a stuck loop
that would still serve metrics.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import Metric

from .. import __version__
from ..alerting.lifecycle import Tallies
from ..bpf.events import SOURCES, Counters
from ..config import MetricsConfig
from ..detection.detector import SEVERITIES, Verdict
from ..detection.groups import Subject
from ..identity.owners import Owner
from ..sampling.rates import Rates
from ..text import utf8

log = logging.getLogger("oomguard")
Health = Callable[[], tuple[bool, str]]  # (healthy, why): the daemon's answer for /healthz


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not logged
        pass


def app(registry: CollectorRegistry, health: Health) -> Callable[..., Any]:
    """/healthz from `health`; every other path the metrics, as prometheus-client serves them."""
    metrics = make_wsgi_app(registry)

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO") == "/healthz":
            ok, why = health()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"{'ok' if ok else 'unhealthy'}: {why}\n".encode()]
        return metrics(environ, start_response)

    return serve


@dataclass(frozen=True)
class Figures:
    """Everything one tick exports: the exporter's whole input."""

    rates: Rates | None
    owner_of: Callable[[int], Owner | None]  # from the identity cache only: never reads /proc per process
    subjects: list[Subject]  # limiting cgroups this tick
    verdicts: dict[str, Verdict]  # by cgroup
    sample_rates: tuple[int, int]
    counters: Counters
    processes: int
    tallies: Tallies
    open_alerts: int
    backlog: int = 0  # alert messages waiting in the spool, all receivers
    dropped: int = 0  # alert messages dropped undelivered (spool bound reached), since start
    delivery_latest_s: float = 0.0  # decision to receiver, the latest message's
    delivery_slowest_s: float = 0.0  # ... and the slowest since start


class Exporter:
    def __init__(self, config: MetricsConfig, health: Health = lambda: (True, "no check")):
        self.config, self.health = config, health
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # the daemon's own CPU and memory: process_*
        self.tick_duration = Histogram("oomguard_tick_duration_seconds", "Time one tick takes (maps, rates, alerts)",
                                       buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
                                       registry=self.registry)
        self.tick_lateness = Histogram("oomguard_tick_lateness_seconds", "How late ticks started, counting late "
                                       "ones only (see oomguard_ticks_late_total for why)",
                                       buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0), registry=self.registry)
        self._late: dict[str, int] = {}
        self.lead_time = Histogram("oomguard_alert_lead_time_seconds", "From pre-OOM alert to the kill it foresaw",
                                   buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1800), registry=self.registry)
        self._families: list[Metric] = []
        # OOM kills by where they happened: a counter per (namespace, pod, container, result), bounded by
        # [metrics] max_containers, the oldest forgotten first (a node restarting pods must not grow it forever)
        self._kills: OrderedDict[tuple[str, str, str, str], int] = OrderedDict()
        self.registry.register(self)  # a duck-typed collector, as the client documents
        self._server: Any = None

    def start(self) -> bool:
        """Serve /metrics; False (logged with the fix) if the address cannot be had: alerts matter more."""
        host, _, port = self.config.listen.rpartition(":")
        try:
            family = socket.getaddrinfo(host.strip("[]") or None, int(port), type=socket.SOCK_STREAM)[0][0]
            server = type("Server", (ThreadingWSGIServer,), {"address_family": family})
            self._server = make_server(host.strip("[]"), int(port), app(self.registry, self.health), server,
                                       handler_class=_Quiet)
            threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()
        except OSError as exc:
            log.error("metrics exporter cannot listen on %s (%s): running without it; fix: choose a free address "
                      "in [metrics] listen, or \"\" to turn the exporter off", self.config.listen, exc.strerror)
            return False
        log.info("metrics on http://%s/metrics", self.config.listen)
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reconfigure(self, config: MetricsConfig) -> None:
        """top_pids and max_containers apply from the next tick; listen needs a restart."""
        self.config = config

    def late_tick(self, by_s: float, reason: str) -> None:
        """A tick that started late, and why (service/pace.py: throttled, slow stage, CPU busy)."""
        self.tick_lateness.observe(by_s)
        self._late[reason] = self._late.get(reason, 0) + 1

    def count_kill(self, namespace: str, pod: str, container: str, foreseen: bool) -> None:
        """One OOM kill, for oomguard_container_oom_kills_total (shown from the next tick)."""
        key = (namespace, pod, container, "foreseen" if foreseen else "unforeseen")
        self._kills[key] = self._kills.pop(key, 0) + 1
        while len(self._kills) > max(1, self.config.max_containers):
            self._kills.popitem(last=False)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)  # the last complete set; replaced whole each tick

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: its series change with the workload

    def update(self, figures: Figures) -> None:
        counters, tallies, sample_rates = figures.counters, figures.tallies, figures.sample_rates
        families = [
            _gauge("oomguard_build_info", "oomguard's version: always 1", ["version"], [((__version__,), 1)]),
            _counter("oomguard_container_oom_kills", "OOM kills by namespace, pod and container (\"\" when not a "
                     "pod's), and whether a pre-OOM alert foresaw them; at most [metrics] max_containers series",
                     ["namespace", "pod", "container", "result"], list(self._kills.items())),
            _gauge("oomguard_sample_rate", "Events per sample (the N of 1-in-N) in force", ["source"],
                   [((s,), n) for s, n in zip(SOURCES, sample_rates, strict=False)]),
            _counter("oomguard_events_seen", "Allocation events that reached the BPF program", ["source"],
                     [(("kmalloc",), counters.kmalloc.seen), (("page",), counters.page.seen)]),
            _counter("oomguard_events_sampled", "Allocation events recorded per process", ["source"],
                     [(("kmalloc",), counters.kmalloc.sampled), (("page",), counters.page.sampled)]),
            _counter("oomguard_ringbuf_drops", "OOM kill events lost to a full ring buffer", [],
                     [((), counters.ringbuf_drops)]),
            _counter("oomguard_untracked_records", "Allocation records lost because every per-process slot was "
                     "taken (raise [sampling] max_pids)", [], [((), counters.untracked)]),
            _gauge("oomguard_processes_tracked", "Processes with allocation data", [], [((), figures.processes)]),
            _counter("oomguard_oom_kills", "OOM kills, by whether a pre-OOM alert foresaw them", ["result"],
                     [(("foreseen",), tallies.foreseen), (("unforeseen",), tallies.unforeseen)]),
            _counter("oomguard_false_alarms", "Pre-OOM alerts cleared without a kill and with nothing to explain "
                     "them (the horizon passed, or the processes exited)", [], [((), tallies.false_alarms)]),
            _counter("oomguard_alerts_stopped", "Pre-OOM alerts cleared because the climb stopped short of the limit",
                     [], [((), tallies.stopped)]),
            _gauge("oomguard_open_alerts", "Pre-OOM alerts open now", [], [((), figures.open_alerts)]),
            _gauge("oomguard_alert_backlog_messages", "Alert messages waiting for delivery, all receivers", [],
                   [((), figures.backlog)]),
            _counter("oomguard_alert_dropped_messages", "Alert messages dropped undelivered (spool full or too old)",
                     [], [((), figures.dropped)]),
            _gauge("oomguard_alert_delivery_seconds", "From an alert's decision (its tick or kill) to a receiver "
                   "taking it: the latest delivery's and the slowest since start", ["which"],
                   [(("latest",), figures.delivery_latest_s), (("slowest",), figures.delivery_slowest_s)]),
            _counter("oomguard_ticks_late", "Ticks that started late, by why (no cgroup is watched in between)",
                     ["reason"], [((reason,), count) for reason, count in sorted(self._late.items())]),
        ]
        if figures.rates is not None:
            families += self._process_families(figures.rates, figures.owner_of)
            families += self._container_families(figures.rates, figures.owner_of)
        families += self._cgroup_families(figures.subjects, figures.verdicts)
        self._families = families

    def _process_families(self, rates: Rates, owner_of: Callable[[int], Owner | None]) -> list[Metric]:
        labels = ["pid", "command", "namespace", "pod", "container"]
        alloc, rss = [], []
        for i in rates.busiest(self.config.top_pids):
            pid = int(rates.pid[i])
            who = owner_of(pid)
            base = ((str(pid), who.command, who.namespace, who.pod_name, who.container) if who
                    else (str(pid), "-", "", "", ""))  # exited before it could be named
            alloc += [((*base, "kmalloc"), float(rates.kmalloc_bytes_per_s[i])),
                      ((*base, "page"), float(rates.page_bytes_per_s[i]))]
            rss.append((base, int(rates.rss_bytes[i])))
        return [_gauge("oomguard_process_alloc_bytes_per_second", "Allocation rate of the top processes",
                       [*labels, "source"], alloc),
                _gauge("oomguard_process_rss_bytes", "Resident memory of the top processes", labels, rss)]

    def _container_families(self, rates: Rates, owner_of: Callable[[int], Owner | None]) -> list[Metric]:
        sums: dict[tuple[str, ...], list[float]] = {}
        active = np.flatnonzero((rates.kmalloc_bytes_per_s > 0) | (rates.page_bytes_per_s > 0))
        for i, pid in zip(active.tolist(), rates.pid[active].tolist(), strict=True):  # idle ones add nothing
            who = owner_of(pid)
            if who is None or not who.container_id:
                continue
            key = (who.namespace, who.pod_name, who.container, who.container_id)
            entry = sums.setdefault(key, [0.0, 0.0])
            entry[0] += float(rates.kmalloc_bytes_per_s[i])
            entry[1] += float(rates.page_bytes_per_s[i])
        busiest = sorted(sums.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))[:self.config.max_containers]
        samples = [((*key, source), value[k]) for key, value in busiest for k, source in enumerate(SOURCES)]
        return [_gauge("oomguard_container_alloc_bytes_per_second", "Allocation rate per container",
                       ["namespace", "pod", "container", "container_id", "source"], samples)]

    def _cgroup_families(self, subjects: list[Subject], verdicts: dict[str, Verdict]) -> list[Metric]:
        labels = ["cgroup", "namespace", "pod", "container"]
        usage, limit, free, eta, late, severity = [], [], [], [], [], []
        for seen in subjects:
            pod = seen.pod
            key = (seen.cgroup, pod.namespace if pod else "", pod.pod if pod else "",
                   (pod.container or "") if pod else "")
            usage.append((key, seen.usage))
            limit.append((key, seen.limit))
            free.append((key, seen.limit - seen.usage))
            verdict = verdicts.get(seen.cgroup)
            if verdict is None:
                continue
            severity.append((key, SEVERITIES.index(verdict.severity)))
            if verdict.seconds_to_limit is not None:
                eta.append((key, verdict.seconds_to_limit))
            if verdict.eta_interval is not None:
                late.append((key, verdict.eta_interval[1]))
        return [
            _gauge("oomguard_cgroup_memory_working_set_bytes", "Working set of each limiting memory cgroup (usage "
                   "less inactive file cache, as the kubelet counts it for eviction and cAdvisor exports it)",
                   labels, usage),
            _gauge("oomguard_cgroup_memory_usage_bytes", "Deprecated, removed in the next release: use "
                   "oomguard_cgroup_memory_working_set_bytes (this series holds the working set too)", labels, usage),
            _gauge("oomguard_cgroup_memory_limit_bytes", "Effective memory limit", labels, limit),
            _gauge("oomguard_cgroup_memory_headroom_bytes", "Limit minus usage", labels, free),
            _gauge("oomguard_cgroup_forecast_seconds_to_oom", "Seconds until usage reaches the limit at its "
                   "established climb (absent when there is none)", labels, eta),
            _gauge("oomguard_cgroup_forecast_seconds_to_oom_late", "The late end of that forecast's interval: "
                   "what the severity is judged on", labels, late),
            _gauge("oomguard_cgroup_severity", "The detector's verdict: 0 none, 1 warning, 2 critical",
                   labels, severity),
        ]


Samples = Sequence[tuple[tuple[str, ...], float]]


def _gauge(name: str, documentation: str, labels: list[str], samples: Samples) -> Metric:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric([utf8(v) for v in values], value)  # a command may hold bytes no UTF-8 decodes
    return family


def _counter(name: str, documentation: str, labels: list[str], samples: Samples) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, value in samples:
        family.add_metric([utf8(v) for v in values], value)
    return family
