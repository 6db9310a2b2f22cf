"""Alertmanager's v2 API as an alert route: payloads valid against its schema, resolution on clear."""

from __future__ import annotations

from dataclasses import asdict

import jsonschema

from oomguard.alerting.alertmanager import postable_alerts

from support import engine as book
from support import kill_report, subject
from support import verdict as forecast

# postableAlerts from Alertmanager's api/v2/openapi.yaml
LABEL_SET = {"type": "object", "additionalProperties": {"type": "string"}}
POSTABLE_ALERTS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["labels"],
        "properties": {
            "labels": LABEL_SET,
            "annotations": LABEL_SET,
            "startsAt": {"type": "string", "format": "date-time"},
            "endsAt": {"type": "string", "format": "date-time"},
            "generatorURL": {"type": "string", "format": "uri"},
        },
        "additionalProperties": False,
    },
}
CHECKER = jsonschema.Draft7Validator(POSTABLE_ALERTS, format_checker=jsonschema.FormatChecker())


def test_every_lifecycle_message_is_a_valid_postable_alert_list():
    alerts = book()
    pre = alerts.warn(forecast(), subject(), now=0.0)
    confirmed = alerts.kill(kill_report(), now=5.0).message
    unforeseen = alerts.kill(kill_report(pid=9, cgroup="/other"), now=6.0).message
    alerts.warn(forecast("/b"), subject("/b"), now=400.0)
    cleared = alerts.expire(1000.0, set())[0]
    for message in (pre, confirmed, unforeseen, cleared):
        payload = postable_alerts(asdict(message))
        CHECKER.validate(payload)
        assert payload
    labels = postable_alerts(asdict(pre))[0]["labels"]
    assert labels == {"alertname": "OomguardPreOOM", "severity": "critical", "node": "node-1",
                      "cgroup": subject().cgroup, "namespace": "shop", "pod": "cart-7d9f", "container": "app"}
    resolved, kill = postable_alerts(asdict(confirmed))
    assert resolved["labels"] == labels and "endsAt" in resolved  # the pre-OOM alert resolves
    assert kill["labels"]["alertname"] == "OomguardOOMKill" and "endsAt" not in kill
    assert postable_alerts(asdict(unforeseen))[0]["labels"]["alertname"] == "OomguardUnforeseenOOMKill"
    (clear,) = postable_alerts(asdict(cleared))
    assert clear["labels"]["alertname"] == "OomguardPreOOM" and clear["endsAt"] > clear["startsAt"]


def test_open_alerts_are_re_posted_each_resend_to_alertmanager_alone_and_end_beyond_the_next():
    from oomguard.alerting.alertmanager import rfc3339
    from oomguard.alerting.outbox import takes

    alerts = book()
    pre = alerts.warn(forecast(), subject(), now=100.0)
    assert alerts.refresh(150.0, 100.0) == []  # posted 50 s ago: not due
    (again,) = alerts.refresh(200.0, 100.0)
    assert alerts.refresh(250.0, 100.0) == []  # posted again at 200
    assert (again.kind, again.alert_id, again.labels, again.starts_at) == ("refresh", pre.alert_id, pre.labels,
                                                                           pre.starts_at)
    assert again.title == pre.title and again.body == pre.body
    (posted,) = postable_alerts(asdict(again), ends_after=150.0, now=1_000.0)
    CHECKER.validate([posted])
    assert posted["endsAt"] == rfc3339(1_150.0) and posted["startsAt"] == rfc3339(pre.starts_at)
    assert takes("alertmanager http://am:9093", "refresh") and not takes("slack://a/b/c", "refresh")
    assert takes("slack://a/b/c", "pre-OOM")
    alerts.kill(kill_report(), now=260.0)
    assert alerts.refresh(400.0, 100.0) == []  # closed: never re-posted
