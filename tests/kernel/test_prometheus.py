"""The fleet end to end with the real servers operators run (Debian's Prometheus 2.42 and Alertmanager 0.25):
a live daemon scraped by Prometheus with the shipped rules while a pod leaks to its OOM kill; the daemon's
Alertmanager route posting to a real Alertmanager, where the alert opens as a warning and escalates to critical;
the shipped Grafana dashboard's queries run against it.

One scenario (module fixture, ~80 s) and one test per thing it shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import (
    CONTAINER_ID,
    POD_UID,
    Daemon,
    alertmanager,
    free_port,
    get_json,
    http_receiver,
    memory_cgroup,
    metric_samples,
    pods_tree,
    procs_file,
    prometheus,
    require,
)

pytestmark = pytest.mark.kernel
MIB = 1 << 20
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "oomguard-rules.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "oomguard.json"
NODE = socket.gethostname()


@dataclass
class Seen:
    prometheus: str = ""
    metrics_url: str = ""
    scrape: bytes = b""  # one live /metrics page, after the kill
    started: float = 0.0
    leak_started: float = 0.0
    killed_at: float = 0.0
    rule_alert: dict = field(default_factory=dict)  # OomguardOomForecastCritical as Prometheus showed it, firing
    rule_fired_at: float = 0.0
    manager_alert: dict = field(default_factory=dict)  # OomguardPreOOM as Alertmanager's v2 API first listed it
    manager_severities: list = field(default_factory=list)  # the severities it listed active, in order, once each
    active_after_confirmation: list = field(default_factory=list)
    notifications: list = field(default_factory=list)  # what Alertmanager sent its webhook
    daemon_lines: list = field(default_factory=list)
    exit_code: int | None = None


def firing_rule(base: str, name: str) -> dict:
    for alert in get_json(f"{base}/api/v1/alerts")["data"]["alerts"]:
        if alert["labels"]["alertname"] == name and alert["state"] == "firing":
            return alert
    return {}


def manager_alerts(base: str) -> list[dict]:
    return get_json(f"{base}/api/v2/alerts", filter='alertname="OomguardPreOOM"')


@pytest.fixture(scope="module")
def seen(tmp_path_factory, workload) -> Seen:
    require(os.geteuid() == 0, "kernel tests need root: run `make test` as root")
    tmp = tmp_path_factory.mktemp("fleet")
    pods, containers = pods_tree(tmp)
    out = Seen(started=time.time())
    metrics_port = free_port()
    with http_receiver() as hook, alertmanager(tmp / "alertmanager", f"http://127.0.0.1:{hook.port}/") as manager:
        policy = tmp / "policy.toml"
        # horizons scaled down 4x and 15x so that a one-minute leak is first warned, then critical: a
        # warning needs a climb of warn_horizon / [detect] warn_trust = 30 s
        policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{tmp / "s"}"\n'
                          f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
                          f'[alerts]\nalertmanager = "{manager}"\nhorizon = "15s"\nwarn_horizon = "60s"\n'
                          f'[attribution]\npods_log_dir = "{pods}"\ncontainers_log_dir = "{containers}"\n')
        daemon = Daemon(policy)
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 60)
            out.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            with prometheus(tmp / "prometheus", f"127.0.0.1:{metrics_port}", [RULES], {"node": NODE}) as prom:
                out.prometheus = prom
                deadline = time.monotonic() + 30
                while not get_json(f"{prom}/api/v1/query", query='up{job="oomguard"} == 1')["data"]["result"]:
                    assert time.monotonic() < deadline, "Prometheus never scraped the daemon"
                    time.sleep(0.5)
                # 2 MiB/s from its first second into a 128 MiB pod: killed ~60 s in, warned ~30 s in
                relative = f"kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}"
                with memory_cgroup(128 * MIB, relative=relative) as cgroup:
                    procs = procs_file(cgroup)
                    out.leak_started = time.time()
                    leaker = subprocess.Popen([str(workload), "leak", "400", "200"], stdout=subprocess.DEVNULL,
                                              preexec_fn=lambda: procs.write_text(str(os.getpid())))
                    while leaker.poll() is None and time.time() - out.leak_started < 120:
                        if not out.rule_alert and (alert := firing_rule(prom, "OomguardOomForecastCritical")):
                            out.rule_alert, out.rule_fired_at = alert, time.time()
                        listed = manager_alerts(manager)
                        if not out.manager_alert and listed:
                            out.manager_alert = listed[0]
                        for severity in ("warning", "critical"):  # as they escalate, should both be listed
                            if severity not in out.manager_severities and any(
                                    a["labels"]["severity"] == severity for a in listed):
                                out.manager_severities.append(severity)
                        time.sleep(0.5)
                    assert leaker.wait(timeout=30) == -9, "the leaker was not OOM-killed"
                    out.killed_at = time.time()
                daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 10)
                # the confirmation posts the critical alert resolved; Alertmanager flushes the resolution at its
                # next group interval (the warning's resolution, at the escalation, came long before)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and (manager_alerts(manager) or not any(
                        n.get("status") == "resolved" and any(a["labels"]["severity"] == "critical"
                                                              for a in n["alerts"]) for n in hook.payloads)):
                    time.sleep(0.5)
                out.notifications = list(hook.payloads)
                out.active_after_confirmation = manager_alerts(manager)
                time.sleep(3)  # a few more scrapes after the kill, for the dashboard's counters
                with urllib.request.urlopen(out.metrics_url, timeout=5) as response:
                    out.scrape = response.read()
                out.exit_code, _ = daemon.stop()
                out.daemon_lines = daemon.seen
                yield out  # Prometheus stays up for the dashboard's queries over what it stored
        finally:
            daemon.stop()  # a no-op when it already exited


def test_the_pre_oom_alert_reaches_the_real_alertmanager_with_its_labels_and_is_resolved_after_the_kill(seen):
    alert = seen.manager_alert
    assert alert, "Alertmanager never listed OomguardPreOOM during the leak:\n" + "\n".join(seen.daemon_lines[-20:])
    labels = alert["labels"]
    assert labels["namespace"] == "shop" and labels["pod"] == "cart-7d9f" and labels["container"] == "app", labels
    assert labels["severity"] == "warning" and labels["node"] == NODE
    assert labels["cgroup"].endswith(f"pod{POD_UID}/{CONTAINER_ID}"), labels
    assert alert["status"]["state"] == "active"
    assert "pre-OOM" in alert["annotations"]["summary"]
    # after the kill and its confirmation the alert is resolved: gone from the active list, and Alertmanager
    # itself sent its receiver the resolution
    assert seen.active_after_confirmation == []
    # the escalation: Alertmanager listed the warning, then the same alert as critical (severity label follows)
    assert seen.manager_severities == ["warning", "critical"], seen.manager_severities
    escalated = [l for l in seen.daemon_lines if l.startswith("ALERT escalated")]
    opened = [l for l in seen.daemon_lines if l.startswith("ALERT pre-OOM")]
    assert len(opened) == 1 and len(escalated) == 1, opened + escalated
    assert opened[0].split()[2] == escalated[0].split()[2], "the escalation did not keep the alert's id"
    firing = [n for n in seen.notifications if n["status"] == "firing"]
    resolved = [n for n in seen.notifications if n["status"] == "resolved"]
    assert firing and firing[0]["alerts"][0]["labels"]["pod"] == "cart-7d9f", seen.notifications
    assert resolved, seen.notifications
    assert {a["labels"]["alertname"] for n in resolved for a in n["alerts"]} == {"OomguardPreOOM"}
    assert all(a["status"] == "resolved" for n in resolved for a in n["alerts"])
    assert seen.exit_code == 0


def test_the_shipped_forecast_rule_fires_in_prometheus_before_the_kill(seen):
    alert = seen.rule_alert
    assert alert, "OomguardOomForecastCritical never fired in Prometheus during the leak"
    assert alert["labels"]["pod"] == "cart-7d9f" and alert["labels"]["namespace"] == "shop"
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["node"] == NODE
    lead = seen.killed_at - seen.rule_fired_at
    assert lead > 5, f"the rule fired only {lead:.1f}s before the kill"
    # the description's template looked up the forecast itself
    assert re.search(r"Forecast time to OOM: \d+(\.\d+)?s\.", alert["annotations"]["description"]), alert


def test_promtool_accepts_a_live_scrape(seen):
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool not found: `make test` installs Debian's prometheus package")
    assert b"oomguard_cgroup_memory_limit_bytes" in seen.scrape and b"oomguard_oom_kills_total" in seen.scrape
    samples = metric_samples(seen.scrape.decode())
    kills = [(s.labels, s.value) for s in samples["oomguard_container_oom_kills_total"]]
    assert ({"namespace": "shop", "pod": "cart-7d9f", "container": "app", "result": "foreseen"}, 1.0) in kills, kills
    assert samples["oomguard_build_info"][0].value == 1 and samples["oomguard_cgroup_memory_working_set_bytes"]
    done = subprocess.run([promtool, "check", "metrics"], input=seen.scrape, capture_output=True, timeout=30)
    assert done.returncode == 0, (done.stdout + done.stderr).decode()


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


@pytest.mark.parametrize("title, expr", panel_queries(), ids=[f"{t}:{e[:40]}" for t, e in panel_queries()])
def test_every_dashboard_query_returns_series_from_the_real_prometheus(seen, title, expr):
    span = max(10, int(time.time() - seen.started) + 1)
    # as Grafana fills them in for this dashboard on this node over the scenario's time range
    query = (expr.replace("$node", NODE).replace("$__rate_interval", "5s").replace("$__range", f"{span}s"))
    got = get_json(f"{seen.prometheus}/api/v1/query_range", query=query, start=str(seen.started),
                   end=str(time.time()), step="1")
    assert got["status"] == "success", got
    assert got["data"]["result"], f"{title}: {query} returned no series"
