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

log = logging.getLogger("oomguard")
API_PATH = "/api/v2/alerts"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def postable_alerts(message: dict) -> list[dict]:
    """The v2 API's postableAlerts for one message (see alerts.Message)."""
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


def send_to_alertmanager(base_url: str, message: dict, timeout_s: float = 5.0) -> bool:
    body = json.dumps(postable_alerts(message)).encode()
    request = urllib.request.Request(base_url.rstrip("/") + API_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError) as exc:
        log.debug("alertmanager %s: %s", base_url, exc)
        return False
