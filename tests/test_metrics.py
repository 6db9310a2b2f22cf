"""The Prometheus exporter: values and bounded cardinality, from fake ticks and from the live daemon."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cgroups import memory_cgroup, procs_file
from oomguard.alerts import Tallies
from oomguard.config import MetricsConfig
from oomguard.events import Counters, SourceCounters
from oomguard.forecast import Forecast
from oomguard.guard import Observation
from oomguard.metrics import Exporter, Owner
from oomguard.rates import Rates
from receivers import free_port
from test_alerts import CGROUP, subject
from test_daemon import Daemon

MIB = 1 << 20


def samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def fake_rates(count: int) -> Rates:
    pids = np.arange(1000, 1000 + count, dtype=np.uint32)
    return Rates(interval_s=1.0, pid=pids, kmalloc_bytes_per_s=np.linspace(1, 100, count),
                 page_bytes_per_s=np.full(count, 4096.0), kmalloc_samples=np.ones(count, np.int64),
                 page_samples=np.ones(count, np.int64), rss_bytes=np.full(count, MIB, np.int64),
                 rss_bytes_per_s=np.zeros(count))


def owner_of(pid: int) -> Owner:
    container = pid % 50  # 50 containers
    return Owner(f"proc{pid}", "shop", f"pod{container}", "app", f"{container:064x}")


def update(exporter: Exporter, rates: Rates) -> dict:
    exporter.update(rates=rates, owner_of=owner_of,
                    observations=[Observation(CGROUP, 100 * MIB, 128 * MIB, subject())],
                    forecasts={CGROUP: Forecast(CGROUP, 100 * MIB, 128 * MIB, MIB, 28.0, True, "x")},
                    sample_rates=(32, 4), counters=Counters(SourceCounters(1000, 31), SourceCounters(50, 12), 0),
                    processes=len(rates.pid), tallies=Tallies(3, 1, 2, [12.0]), open_alerts=1)
    return samples(generate_latest(exporter.registry).decode())


def test_values_names_and_labels():
    exporter = Exporter(MetricsConfig(listen="", top_pids=5, max_containers=10))
    got = update(exporter, fake_rates(100))
    assert {s.labels["source"]: s.value for s in got["oomguard_sample_rate"]} == {"kmalloc": 32, "page": 4}
    assert {s.labels["source"]: s.value for s in got["oomguard_events_seen_total"]} == {"kmalloc": 1000, "page": 50}
    assert {s.labels["result"]: s.value for s in got["oomguard_oom_kills_total"]} == {"foreseen": 3, "unforeseen": 1}
    assert got["oomguard_false_alarms_total"][0].value == 2
    top = got["oomguard_process_alloc_bytes_per_second"]
    assert len(top) == 10  # 5 processes x 2 sources
    busiest = max((s for s in top if s.labels["source"] == "kmalloc"), key=lambda s: s.value)
    assert busiest.value == 100.0
    assert busiest.labels == {"pid": "1099", "command": "proc1099", "namespace": "shop", "pod": "pod49",
                              "container": "app", "source": "kmalloc"}
    (eta,) = got["oomguard_cgroup_forecast_seconds_to_oom"]
    assert eta.value == 28.0 and eta.labels == {"cgroup": CGROUP, "namespace": "shop", "pod": "cart-7d9f",
                                                 "container": "app"}
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


@pytest.mark.kernel
def test_scrape_the_live_daemon_while_a_process_allocates_and_pids_churn(tmp_path, workload):
    port = free_port()
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\ninitial_rate = 1\n[output]\ntop_pids = 0\n'
                      f'[metrics]\nlisten = "127.0.0.1:{port}"\ntop_pids = 10\n[state]\ndir = "{tmp_path / "s"}"\n')
    daemon = Daemon(policy)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        daemon.wait_for(lambda l: "metrics on http://" in l, 30)
        with memory_cgroup(512 * MIB) as cgroup:
            procs = procs_file(cgroup)
            leaker = subprocess.Popen([str(workload), "leak", "200", "20"], stdout=subprocess.DEVNULL,
                                      preexec_fn=lambda: procs.write_text(str(os.getpid())))
            try:
                time.sleep(3)
                got = samples(urllib.request.urlopen(url, timeout=5).read().decode())
            finally:
                leaker.kill()
                leaker.wait()
        page = [s for s in got["oomguard_process_alloc_bytes_per_second"]
                if s.labels["pid"] == str(leaker.pid) and s.labels["source"] == "page"]
        assert page and 3 * MIB < page[0].value < 40 * MIB, page  # ~10 MiB/s
        limits = {s.labels["cgroup"]: s.value for s in got["oomguard_cgroup_memory_limit_bytes"]}
        assert any(path.endswith(cgroup.name) and value == 512 * MIB for path, value in limits.items()), limits
        assert sum(s.value for s in got["oomguard_events_seen_total"]) > 0
        assert got["oomguard_tick_duration_seconds_count"][0].value > 0

        churn = subprocess.run([str(workload), "spawn", "10000"], timeout=120)
        assert churn.returncode == 0
        time.sleep(1.5)
        got = samples(urllib.request.urlopen(url, timeout=5).read().decode())
        assert len(got["oomguard_process_alloc_bytes_per_second"]) <= 2 * 10
        assert len(got.get("oomguard_process_rss_bytes", [])) <= 10
        total_series = sum(len(v) for v in got.values())
        assert total_series < 200, total_series
    finally:
        code, _ = daemon.stop()
    assert code == 0
