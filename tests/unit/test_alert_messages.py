"""Messages a person on call can act on: each kind's title is true of itself, says what and where; the body says
why, then what to do, with the runbook link and absolute times; internal figures come after, under Details.
Rendered through real apprise to local receivers: JSON, email (text and HTML) and a Markdown webhook."""

from __future__ import annotations

import html
import re
from dataclasses import asdict

import markdown as commonmark
import pytest

from oomguard.alerting.alertmanager import postable_alerts
from oomguard.alerting.messages import eta_text
from oomguard.alerting.outbox import apprise_sender

from support import MIB, http_receiver, kill_report, smtp_server, subject, wait_for_len
from support import engine as book
from support import verdict as forecast

RUNBOOK = "https://wiki.example.com/oomguard-runbook"
UTC = re.compile(r"\b20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ\b")


def every_kind():
    """(kind, title prefix, message) for each kind of message, from one engine with a runbook."""
    alerts = book()
    alerts.runbook = RUNBOOK
    warning = alerts.warn(forecast(eta=300.0), subject(), now=0.0)
    escalated = alerts.warn(forecast(eta=20.0), subject(), now=10.0)
    confirmed = alerts.kill(kill_report(), now=30.0).message
    unforeseen = alerts.kill(kill_report(pid=9, cgroup="/kubepods/other"), now=40.0).message
    alerts.warn(forecast("/kubepods/b"), subject("/kubepods/b"), now=1000.0)
    (cleared,) = alerts.expire(2000.0, set())
    return [("pre-oom", "[oomguard] pre-OOM warning on node-1: OOM in ~300s: ", warning),
            ("pre-oom", "[oomguard] pre-OOM escalated to critical on node-1: OOM in ~20s: ", escalated),
            ("confirmed", "[oomguard] confirmed on node-1: OOM kill of java foreseen 30s ahead", confirmed),
            ("unforeseen", "[oomguard] unforeseen OOM kill on node-1: java (", unforeseen),
            ("cleared", "[oomguard] cleared on node-1: ", cleared)]


KINDS = every_kind()


@pytest.mark.parametrize("anchor, title, message", KINDS, ids=[m.kind for _, _, m in KINDS])
def test_each_kind_says_what_where_what_to_do_when_and_links_its_runbook(anchor, title, message):
    assert message.title.startswith(title), message.title
    head, _, details = message.body.partition("\nDetails:\n")
    assert details, message.body  # internal figures under their own heading...
    assert "What to do: " in head and f"Runbook: {RUNBOOK}#{anchor}" in head
    assert UTC.search(head), head  # absolute times, as people and receivers read them
    assert "sample rate" not in head and "pod uid" not in head and "monotonic" not in head  # ...not up front
    assert message.runbook == f"{RUNBOOK}#{anchor}"
    assert "OOM in" not in message.title or message.kind != "cleared"


def test_the_cleared_title_is_whose_alert_not_its_old_forecast():
    _, _, cleared = KINDS[-1]
    assert cleared.title == "[oomguard] cleared on node-1: cgroup /kubepods/b"
    assert "false alarm" in cleared.body and "OOM in" in cleared.body.partition("Details:")[2]


def test_the_pre_oom_next_step_names_the_limit_ten_more_minutes_need_or_says_only_a_fix_helps():
    _, _, warning = KINDS[0]  # 1.4 MiB/s into 128 MiB: 10 more minutes need 940 MiB, over twice the limit
    assert warning.body.count("What to do: find what grows: the processes below, and its call sites with "
                              "`oomguard status --alert alert0001` on node-1. No sensible limit holds this climb "
                              "(10 more minutes of this climb need 940.0MiB, the limit is 128.0MiB).") == 1
    alerts = book()
    slow = forecast(eta=300.0)
    slow = type(slow)(**{**slow.__dict__, "slope_bytes_per_s": 0.05 * MIB})  # 30 MiB more in 10 min
    message = alerts.warn(slow, subject(), now=0.0)
    assert ("What to do: if this growth is expected, raise the memory limit (now 128.0MiB; 10 more minutes of "
            "this climb need 130.0MiB); if not, find what grows") in message.body


def test_a_range_is_given_only_when_it_is_one():
    assert eta_text(forecast(eta=56.0)) == "56s (between 45s and 70s)"
    same = forecast(eta=56.0)
    same = type(same)(**{**same.__dict__, "eta_interval": (56.2, 55.9)})
    assert eta_text(same) == "56s"


def test_alertmanager_gets_the_runbook_as_an_annotation():
    for _, _, message in KINDS:
        for posted in postable_alerts(asdict(message), ends_after=150.0):
            assert posted["annotations"]["runbook_url"] == message.runbook


def test_json_email_and_markdown_receivers_get_title_next_step_times_and_runbook():
    messages = [asdict(m) for _, _, m in KINDS]
    with http_receiver() as receiver:
        for message in messages:
            assert apprise_sender(receiver.url)(message)
        wait_for_len(receiver.payloads, len(messages))
    for got, (anchor, title, _) in zip(receiver.payloads, KINDS, strict=True):
        assert got["title"].startswith(title) and "What to do: " in got["message"]
        assert f"{RUNBOOK}#{anchor}" in got["message"] and UTC.search(got["message"])
    with smtp_server() as (mailbox, url):
        for message in messages:
            assert apprise_sender(url)(message) and apprise_sender(url + "&format=html")(message)
    for i, (anchor, title, _) in enumerate(KINDS):
        text, rich = mailbox.messages[2 * i], mailbox.messages[2 * i + 1]
        assert text["Subject"].startswith(title[:40]) and rich["Subject"].startswith(title[:40])
        plain_body = text.get_body(("plain",)).get_content()
        shown = html.unescape(rich.get_body(("html",)).get_content()).replace("\xa0", " ")
        for body in (plain_body, shown):
            assert "What to do: " in body and f"{RUNBOOK}#{anchor}" in body and UTC.search(body)
    with http_receiver() as receiver:  # a Markdown webhook (Mattermost's, Slack-compatible), served locally
        for message in messages:
            assert apprise_sender(f"mmost://127.0.0.1:{receiver.port}/abcdefghijk")(message)
        wait_for_len(receiver.payloads, len(messages))
    for got, (anchor, _, _) in zip(receiver.payloads, KINDS, strict=True):
        rendered = commonmark.markdown(got["text"])
        assert "What to do: " in rendered and f"{RUNBOOK}#{anchor}" in html.unescape(rendered)
