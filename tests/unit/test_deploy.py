"""The Kubernetes manifests validate offline against the API schemas, and agree with the policy and the unit."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from oomguard.config import from_mapping

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(KUBERNETES.rglob("*.yaml"))
KUBERNETES_VERSION = "1.30"
CRDS = ("ServiceMonitor", "PrometheusRule")


def documents():
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path.name, document


def by_kind(kind: str) -> dict:
    (found,) = [d for _, d in documents() if d["kind"] == kind]
    return found


@pytest.mark.parametrize("name, document", list(documents()), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_validates(name, document):
    if document["kind"] in CRDS:  # the Prometheus Operator's: checked against their schemas, vendored
        schema = json.loads((Path(__file__).parent / "schemas" / f"{document['kind'].lower()}.json").read_text())
        jsonschema.validate(document, schema)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_a_broken_manifest_is_caught():
    daemonset = by_kind("DaemonSet")
    daemonset["spec"]["template"]["spec"]["hostPID"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, KUBERNETES_VERSION, strict=True)


def test_the_prometheus_rule_carries_the_rule_files_groups():
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "oomguard-rules.yaml").read_text())
    assert by_kind("PrometheusRule")["spec"]["groups"] == rules["groups"]


def test_the_service_monitor_labels_each_series_with_its_node():
    (endpoint,) = by_kind("ServiceMonitor")["spec"]["endpoints"]
    assert {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"} \
        in endpoint["relabelings"]


def test_the_grafana_dashboard_filters_every_query_by_node_through_its_variables():
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "oomguard.json").read_text())
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "node"]
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        for target in panel["targets"]:
            assert 'node=~"$node"' in target["expr"], (panel["title"], target["expr"])
    # what the issue asked the dashboard to show, each by its metric
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in ("oomguard_container_alloc_bytes_per_second", "oomguard_cgroup_forecast_seconds_to_oom",
                   "oomguard_cgroup_memory_headroom_bytes", "oomguard_sample_rate", "oomguard_events_seen_total",
                   "oomguard_events_sampled_total", "oomguard_oom_kills_total",
                   "oomguard_alert_lead_time_seconds_bucket",
                   "process_cpu_seconds_total", "process_resident_memory_bytes"):
        assert metric in exprs, metric


def test_the_configmap_policy_is_valid():
    policy = tomllib.loads(by_kind("ConfigMap")["data"]["config.toml"])
    config = from_mapping(policy, "configmap")
    assert config.metrics.listen == "0.0.0.0:9843"
    assert config.alerts.urls_file == "/etc/oomguard/secret/urls"


def test_kubectl_apply_on_the_directory_works_on_a_bare_cluster_and_never_overwrites_a_secret():
    """`kubectl apply -f deploy/kubernetes/` applies its files in name order, not into subdirectories."""
    applied = [d for path in sorted(KUBERNETES.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    kinds = [d["kind"] for d in applied]
    assert kinds[0] == "Namespace", kinds  # before anything namespaced in it
    assert kinds.index("ConfigMap") < kinds.index("DaemonSet") and kinds.index("ServiceAccount") < kinds.index(
        "DaemonSet")
    assert not set(kinds) & set(CRDS), "CRDs' kinds fail on a cluster without the Prometheus Operator"
    assert "Secret" not in kinds, "re-applying would overwrite the real Secret with the placeholder"
    assert {d["kind"] for _, d in documents()} >= {"Secret", *CRDS}  # still shipped, in their subdirectories


def test_the_image_is_the_packages_version_and_the_probes_ask_the_loop():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (container,) = by_kind("DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ghcr.io/oomguard/oomguard:{version}"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in by_kind("DaemonSet")["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/dev/kmsg"]]["hostPath"] == {"path": "/dev/kmsg", "type": "CharDevice"}  # for SYSLOG


def test_daemonset_has_the_units_capabilities_not_privileged_and_read_only_mounts():
    spec = by_kind("DaemonSet")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    security = container["securityContext"]
    unit = (ROOT / "systemd" / "oomguard.service").read_text()
    unit_caps = set(re.search(r"^CapabilityBoundingSet=(.*)$", unit, re.M).group(1).split())
    assert {f"CAP_{c}" for c in security["capabilities"]["add"]} == unit_caps
    assert security["capabilities"]["drop"] == ["ALL"] and security["privileged"] is False
    assert spec["hostPID"] is True
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for path in ("/sys/kernel/tracing", "/sys/fs/cgroup", "/var/log/pods", "/lib/modules", "/usr/src"):
        assert mounts[path]["readOnly"] is True, path
    assert container["ports"][0]["containerPort"] == 9843


def unit_settings() -> dict[str, str]:
    text = (ROOT / "systemd" / "oomguard.service").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def seconds(value: str) -> float:
    return float(value[:-3]) * 60 if value.endswith("min") else float(value.rstrip("s"))


def test_a_start_that_keeps_failing_is_stopped_not_retried_forever():
    unit = unit_settings()
    burst, window = int(unit["StartLimitBurst"]), seconds(unit["StartLimitIntervalSec"])
    restart = seconds(unit["RestartSec"])
    failing_start_s = 3.3  # measured: a start that dies after compiling its programs
    # every failed start within one window counts, so the limit is reached and the loop stops
    assert burst * (restart + failing_start_s) < window
    assert unit["Restart"] == "on-failure" and burst <= 10


def test_the_watchdog_protects_itself_on_both_platforms():
    unit = unit_settings()
    assert -1000 < int(unit["OOMScoreAdjust"]) <= -500  # last in line, never unkillable
    assert unit["MemoryHigh"].endswith("M") and unit["MemoryMax"] == "512M"
    assert int(unit["CPUWeight"]) > 100 and int(unit["Nice"]) < 0
    daemonset = by_kind("DaemonSet")["spec"]["template"]["spec"]
    assert daemonset["priorityClassName"] == "system-node-critical"
    (container,) = daemonset["containers"]
    resources = container["resources"]
    assert resources["requests"] == resources["limits"]  # Guaranteed QoS: oom_score_adj -997
    assert resources["limits"]["memory"] == "512Mi"  # the unit's MemoryMax
