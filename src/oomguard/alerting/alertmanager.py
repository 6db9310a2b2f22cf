"""Alertmanager as an alert route: messages posted to its v2 API (POST /api/v2/alerts).

Labels are what Alertmanager groups and silences by (alertname, namespace,
pod, container, node, severity; plus cgroup). A confirmed or cleared message
also re-posts the pre-OOM alert it closes with endsAt set, which resolves it.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

from ..identity.pods import PodNames

log = logging.getLogger("oomguard")
API_PATH = "/api/v2/alerts"


def labels_for(alertname: str, severity: str, host: str, cgroup: str, pod: PodNames | None) -> dict[str, str]:
    """Labels Alertmanager can group and silence by, spelled as kube-state-metrics spells them."""
    labels = {"alertname": alertname, "severity": severity, "node": host, "cgroup": cgroup}
    if pod is not None:
        labels.update(namespace=pod.namespace, pod=pod.pod, container=pod.container or "")
    return labels


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def postable_alerts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The v2 API's postableAlerts for one message (a messages.Message as a dict)."""
    alerts = []
    if message.get("resolves"):
        closed = message["resolves"]
        alerts.append({"labels": closed["labels"], "startsAt": rfc3339(closed["starts_at"]),
                       "endsAt": rfc3339(message["starts_at"]),
                       "annotations": {"summary": message["title"], "description": message["body"]}})
    if message.get("labels"):
        alerts.append({"labels": message["labels"], "startsAt": rfc3339(message["starts_at"]),
                       "annotations": {"summary": message["title"], "description": message["body"]}})
    return alerts


def send_to_alertmanager(base_url: str, message: dict[str, Any], timeout_s: float = 5.0) -> bool:
    body = json.dumps(postable_alerts(message)).encode()
    request = urllib.request.Request(base_url.rstrip("/") + API_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError) as exc:
        log.debug("alertmanager %s: %s", base_url, exc)
        return False
