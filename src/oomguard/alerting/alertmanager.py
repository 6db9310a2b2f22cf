"""Alertmanager as an alert route: messages posted to its v2 API (POST /api/v2/alerts).

Labels are what Alertmanager groups and silences by (alertname, namespace,
pod, container, node, severity; plus cgroup). A confirmed or cleared message
also re-posts the pre-OOM alert it closes with endsAt set, which resolves it.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any

from ..identity.pods import PodNames
from ..text import utf8

log = logging.getLogger("oomguard")
API_PATH = "/api/v2/alerts"


def labels_for(alertname: str, severity: str, host: str, cgroup: str, pod: PodNames | None) -> dict[str, str]:
    """Labels Alertmanager can group and silence by, spelled as kube-state-metrics spells them."""
    labels = {"alertname": alertname, "severity": severity, "node": host, "cgroup": cgroup}
    if pod is not None:
        labels.update(namespace=pod.namespace, pod=pod.pod, container=pod.container or "")
    return {name: utf8(value) for name, value in labels.items()}  # a cgroup may hold bytes no UTF-8 decodes


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def annotations_of(message: dict[str, Any]) -> dict[str, str]:
    """summary, description and (when there is one) runbook_url, as Prometheus alerting rules spell them."""
    out = {"summary": message["title"], "description": message["body"]}
    if message.get("runbook"):
        out["runbook_url"] = message["runbook"]
    return out


def postable_alerts(message: dict[str, Any], ends_after: float | None = None,
                    now: float | None = None) -> list[dict[str, Any]]:
    """The v2 API's postableAlerts for one message (a messages.Message as a dict). An open alert ends
    `ends_after` seconds from `now` unless posted again (the client's part of Alertmanager's contract: it
    re-posts while the alert is active); a confirmed or cleared one ends when the message was made."""
    alerts = []
    if message.get("resolves"):
        closed = message["resolves"]
        alerts.append({"labels": closed["labels"], "startsAt": rfc3339(closed["starts_at"]),
                       "endsAt": rfc3339(message["starts_at"]), "annotations": annotations_of(message)})
    if message.get("labels"):
        alert = {"labels": message["labels"], "startsAt": rfc3339(message["starts_at"]),
                 "annotations": annotations_of(message)}
        if message.get("ends_at"):
            alert["endsAt"] = rfc3339(message["ends_at"])
        elif ends_after is not None:
            alert["endsAt"] = rfc3339((time.time() if now is None else now) + ends_after)
        alerts.append(alert)
    return alerts


def split_credentials(base_url: str) -> tuple[str, dict[str, str]]:
    """(URL without user:password@, the Authorization header they make): urllib would take them for a host."""
    parts = urllib.parse.urlsplit(base_url)
    if parts.username is None:
        return base_url, {}
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    token = base64.b64encode(f"{urllib.parse.unquote(parts.username)}:"
                             f"{urllib.parse.unquote(parts.password or '')}".encode()).decode()
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc)), {"Authorization": f"Basic {token}"}


def send_to_alertmanager(base_url: str, message: dict[str, Any], timeout_s: float = 10.0,
                         ends_after: float | None = None) -> bool:
    url, headers = split_credentials(base_url)
    body = json.dumps(postable_alerts(message, ends_after)).encode()
    request = urllib.request.Request(url.rstrip("/") + API_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("alertmanager at %s: %s", url, getattr(exc, "reason", exc))
        return False


def send_test_alert(base_url: str, host: str, title: str, body: str) -> bool:
    """A test alert that resolves itself after a minute, so it shows in Alertmanager and then goes."""
    now = time.time()
    return send_to_alertmanager(base_url, {
        "title": title, "body": body, "starts_at": now, "ends_at": now + 60,
        "labels": {"alertname": "OomguardTestAlert", "severity": "none", "node": host}})
