"""Alertmanager's client contract, against the real Alertmanager: an open alert is re-posted while it stands, so
Alertmanager never resolves it by itself; it resolves when oomguard closes it, within one re-post."""

from __future__ import annotations

import time

import pytest

from oomguard.alerting.alertmanager import send_to_alertmanager
from oomguard.alerting.outbox import Outbox, receivers_for

from support import alertmanager, engine, get_json, http_receiver, subject, verdict

pytestmark = pytest.mark.kernel  # a real server from the distribution: must not skip under CI
RESEND_S = 2.0
RESOLVE_TIMEOUT_S = 5


def active(base: str, cgroup: str) -> bool:
    found = get_json(f"{base}/api/v2/alerts", filter=f'cgroup="{cgroup}"')
    return any(a["status"]["state"] == "active" for a in found)


def test_an_open_alert_fires_past_resolve_timeout_until_oomguard_clears_it(tmp_path):
    with http_receiver() as hook, alertmanager(tmp_path / "am", hook.url.replace("json://", "http://"),
                                               resolve_timeout=f"{RESOLVE_TIMEOUT_S}s") as base:
        outbox = Outbox(tmp_path / "spool", receivers_for((), base, None, RESEND_S), backoff_first_s=0.2)
        outbox.start()
        try:
            alerts = engine()
            alerts.wall_clock = time.time
            opened = alerts.warn(verdict(eta=30.0), subject("/kubepods/held"), time.monotonic())
            outbox.put(opened)
            # The old client: posted once, never again (no endsAt): Alertmanager resolves it by itself.
            assert send_to_alertmanager(base, {"title": "once", "body": "", "starts_at": time.time(),
                                               "labels": {"alertname": "OomguardPreOOM", "cgroup": "/posted-once"}})
            started, states = time.monotonic(), []
            while time.monotonic() - started < 60:  # twelve resolve_timeouts
                for refresh in alerts.refresh(time.monotonic(), RESEND_S):
                    outbox.put(refresh)
                states.append((time.monotonic() - started, active(base, "/kubepods/held"),
                               active(base, "/posted-once")))
                time.sleep(0.5)
            (cleared,) = alerts.expire(time.monotonic(), live_cgroups=set())
            outbox.put(cleared)
            closed_at = time.monotonic()
            while active(base, "/kubepods/held") and time.monotonic() - closed_at < 30:
                time.sleep(0.1)
            resolved_after = time.monotonic() - closed_at
        finally:
            outbox.stop()
    held = [s for t, s, _ in states if t > 1.0]  # after the first post has landed
    once = [(t, s) for t, _, s in states]
    print(f"held firing in {sum(held)}/{len(held)} polls over 60 s; the post-once alert resolved by itself at "
          f"{next((t for t, s in once if not s and t > 1), None)} s; resolved {resolved_after:.1f} s after clearing")
    assert all(held), "Alertmanager resolved the open alert while oomguard still held it open"
    assert not once[-1][1] and any(s for _, s in once), "the control alert should fire, then resolve by itself"
    assert resolved_after <= RESEND_S + 1.0
    assert cleared.kind == "cleared" and cleared.resolves is not None
