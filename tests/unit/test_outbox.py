"""Delivery through apprise to a real local SMTP server and HTTP receiver; outages lose nothing."""

from __future__ import annotations

import time

import apprise

from oomguard.alerting.messages import Message
from oomguard.alerting.outbox import Outbox, receivers_for, redact, send_with_apprise
from oomguard.cli import main

from support import HttpReceiver, http_receiver, message, smtp_server, wait_until


def test_email_arrives_with_subject_and_body(tmp_path):
    with smtp_server() as (mailbox, url):
        outbox = Outbox(tmp_path / "spool", receivers_for((url,)))
        outbox.start()
        try:
            outbox.put(Message("a1", "pre-OOM", "[oomguard] pre-OOM on node-1: shop/cart", "pid: 42\ncommand: java\n"))
            wait_until(lambda: mailbox.messages)
        finally:
            outbox.stop()
    assert mailbox.subjects() == ["[oomguard] pre-OOM on node-1: shop/cart"]
    assert "pid: 42\ncommand: java" in mailbox.body(0)
    assert outbox.pending() == 0


def test_json_payloads_arrive_in_order(tmp_path):
    with http_receiver() as receiver:
        outbox = Outbox(tmp_path / "spool", receivers_for((receiver.url,)))
        outbox.start()
        try:
            for i in range(5):
                outbox.put(message(i))
            wait_until(lambda: len(receiver.payloads) == 5)
        finally:
            outbox.stop()
    assert [p["title"] for p in receiver.payloads] == [f"[oomguard] alert {i}" for i in range(5)]
    assert receiver.payloads[0]["message"].startswith("body 0")


def test_outage_and_restart_lose_nothing_and_duplicate_nothing(tmp_path):
    receiver = HttpReceiver()  # down for now: nothing listens on its port
    spool = tmp_path / "spool"
    first = Outbox(spool, receivers_for((receiver.url,)), backoff_first_s=0.05, backoff_max_s=0.2)
    first.start()
    for i in range(3):
        first.put(message(i))
    time.sleep(0.5)  # a few failed attempts
    first.stop()  # the daemon stops...
    assert first.pending() == 3
    # ...and starts again
    second = Outbox(spool, receivers_for((receiver.url,)), backoff_first_s=0.05, backoff_max_s=0.2)
    second.start()
    second.put(message(3))
    receiver.start()  # the receiver comes back
    try:
        wait_until(lambda: len(receiver.payloads) == 4)
        time.sleep(0.5)  # nothing more comes
    finally:
        second.stop()
        receiver.stop()
    assert [p["title"] for p in receiver.payloads] == [f"[oomguard] alert {i}" for i in range(4)]
    assert second.pending() == 0


def test_each_receiver_gets_everything_even_when_another_is_down(tmp_path):
    up, down = HttpReceiver(), HttpReceiver()
    up.start()
    outbox = Outbox(tmp_path / "spool", receivers_for((up.url, down.url)), backoff_first_s=0.05, backoff_max_s=0.1)
    outbox.start()
    try:
        outbox.put(message(0))
        wait_until(lambda: len(up.payloads) == 1)
        # the up receiver's copy goes once its answer is in (a moment after it stored the payload);
        # the down receiver's copy stays
        wait_until(lambda: outbox.pending() == 1)
        time.sleep(0.3)
        assert outbox.pending() == 1  # still waiting for the other
        down.start()
        wait_until(lambda: len(down.payloads) == 1)
    finally:
        outbox.stop()
        up.stop()
        down.stop()


def test_slack_url_parses_and_the_message_builds_without_network():
    notifier = apprise.Apprise()
    assert notifier.add("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#alerts")
    plugin = notifier[0]
    assert (plugin.service_name == "Slack" and "#alerts" in plugin.url(privacy=False)) or "alerts" in plugin.url()
    assert not notifier.add("slack://not-enough")


def test_redact_hides_credentials():
    assert redact("mailto://user:secret@smtp.example.com:587?to=a@b") == "mailto://smtp.example.com:587/…"
    assert "TOKEN" not in redact("slack://TOKENA/TOKENB/TOKENC/#c")


def test_send_reports_failure_for_a_dead_receiver_and_a_bad_url():
    message = {"title": "t", "body": "b"}
    assert not send_with_apprise(HttpReceiver().url, message, as_markdown=False)
    assert not send_with_apprise("nonsense://x", message, as_markdown=False)


def test_test_alert_command(tmp_path, capsys):
    dead = HttpReceiver()
    with http_receiver() as receiver:
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[alerts]\nurls = ["{receiver.url}"]\n')
        policy.chmod(0o600)
        assert main(["test-alert", "-c", str(policy)]) == 0
        assert "ok" in capsys.readouterr().out
        assert receiver.payloads and "test alert" in receiver.payloads[0]["title"]
        policy.write_text(f'[alerts]\nurls = ["{receiver.url}", "{dead.url}"]\n')
        assert main(["test-alert", "-c", str(policy)]) == 1
        out = capsys.readouterr().out
        assert "FAILED json://127.0.0.1" in out
