"""The Prometheus exporter: values and bounded cardinality, from fake ticks and from the live daemon."""

from __future__ import annotations

import numpy as np
from prometheus_client import generate_latest

from oomguard.alerting.lifecycle import Tallies
from oomguard.bpf.events import Counters, SourceCounters
from oomguard.config import MetricsConfig
from oomguard.detection.detector import Verdict
from oomguard.identity.attribution import attribute
from oomguard.identity.owners import Owner
from oomguard.identity.pods import PodNames
from oomguard.sampling.rates import Rates
from oomguard.service.metrics import Exporter, Figures

from support import CGROUP, metric_samples, subject

MIB = 1 << 20




def fake_rates(count: int) -> Rates:
    pids = np.arange(1000, 1000 + count, dtype=np.uint32)
    return Rates(interval_s=1.0, pid=pids, kmalloc_bytes_per_s=np.linspace(1, 100, count),
                 page_bytes_per_s=np.full(count, 4096.0), kmalloc_samples=np.ones(count, np.int64),
                 page_samples=np.ones(count, np.int64), rss_bytes=np.full(count, MIB, np.int64),
                 rss_bytes_per_s=np.zeros(count))


def owner_of(pid: int) -> Owner:
    container = pid % 50  # 50 containers
    return Owner(f"proc{pid}", None, attribute(f"/kubepods/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/{container:064x}"),
                 PodNames("shop", f"pod{container}", "app"))


def update(exporter: Exporter, rates: Rates) -> dict:
    exporter.update(Figures(
        rates=rates, owner_of=owner_of, subjects=[subject()],
        verdicts={CGROUP: Verdict(CGROUP, 100 * MIB, 128 * MIB, MIB, 28.0, "critical", (20.0, 35.0))},
        sample_rates=(32, 4), counters=Counters(SourceCounters(1000, 31), SourceCounters(50, 12), 0),
        processes=len(rates.pid), tallies=Tallies(3, 1, 2, [12.0]), open_alerts=1, backlog=4, dropped=7))
    return metric_samples(generate_latest(exporter.registry).decode())


def test_values_names_and_labels():
    exporter = Exporter(MetricsConfig(listen="", top_pids=5, max_containers=10))
    got = update(exporter, fake_rates(100))
    assert {s.labels["source"]: s.value for s in got["oomguard_sample_rate"]} == {"kmalloc": 32, "page": 4}
    assert {s.labels["source"]: s.value for s in got["oomguard_events_seen_total"]} == {"kmalloc": 1000, "page": 50}
    assert {s.labels["result"]: s.value for s in got["oomguard_oom_kills_total"]} == {"foreseen": 3, "unforeseen": 1}
    assert got["oomguard_false_alarms_total"][0].value == 2
    assert got["oomguard_alert_backlog_messages"][0].value == 4
    assert got["oomguard_alert_dropped_messages_total"][0].value == 7
    top = got["oomguard_process_alloc_bytes_per_second"]
    assert len(top) == 10  # 5 processes x 2 sources
    busiest = max((s for s in top if s.labels["source"] == "kmalloc"), key=lambda s: s.value)
    assert busiest.value == 100.0
    assert busiest.labels == {"pid": "1099", "command": "proc1099", "namespace": "shop", "pod": "pod49",
                              "container": "app", "source": "kmalloc"}
    (eta,) = got["oomguard_cgroup_forecast_seconds_to_oom"]
    assert eta.value == 28.0 and eta.labels == {"cgroup": CGROUP, "namespace": "shop", "pod": "cart-7d9f",
                                                 "container": "app"}
    assert got["oomguard_cgroup_forecast_seconds_to_oom_late"][0].value == 35.0
    assert got["oomguard_cgroup_severity"][0].value == 2  # critical
    assert got["oomguard_cgroup_memory_limit_bytes"][0].value == 128 * MIB
    assert len(got["oomguard_container_alloc_bytes_per_second"]) == 20  # 10 containers (the cap) x 2 sources
    assert got["process_resident_memory_bytes"][0].value > 0  # the daemon's own


def test_pid_churn_does_not_grow_the_series():
    exporter = Exporter(MetricsConfig(listen="", top_pids=20, max_containers=1000))
    counts = []
    for tick in range(5):  # 10,000 different processes each tick
        rates = fake_rates(10_000)
        rates = Rates(**{**rates.__dict__, "pid": rates.pid + tick * 10_000})
        counts.append(len(update(exporter, rates)["oomguard_process_alloc_bytes_per_second"]))
    assert counts == [40] * 5


def test_working_set_build_info_and_kills_by_where_bounded():
    from oomguard import __version__

    exporter = Exporter(MetricsConfig(listen="", top_pids=5, max_containers=2))
    exporter.count_kill("shop", "cart-7d9f", "app", foreseen=True)
    exporter.count_kill("shop", "cart-7d9f", "app", foreseen=True)
    exporter.count_kill("", "", "", foreseen=False)
    got = update(exporter, fake_rates(10))
    assert got["oomguard_cgroup_memory_working_set_bytes"][0].value == 100 * MIB
    assert got["oomguard_cgroup_memory_usage_bytes"][0].value == 100 * MIB  # deprecated, same value
    assert [(s.labels, s.value) for s in got["oomguard_build_info"]] == [({"version": __version__}, 1.0)]
    kills = {tuple(s.labels[k] for k in ("namespace", "pod", "container", "result")): s.value
             for s in got["oomguard_container_oom_kills_total"]}
    assert kills == {("shop", "cart-7d9f", "app", "foreseen"): 2.0, ("", "", "", "unforeseen"): 1.0}
    for pod in range(5):  # more places than max_containers: the oldest go
        exporter.count_kill("shop", f"p{pod}", "app", foreseen=False)
    got = update(exporter, fake_rates(10))
    assert [s.labels["pod"] for s in got["oomguard_container_oom_kills_total"]] == ["p3", "p4"]
    text = generate_latest(exporter.registry).decode()
    assert "# HELP oomguard_cgroup_memory_usage_bytes Deprecated" in text
