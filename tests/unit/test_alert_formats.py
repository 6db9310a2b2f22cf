"""Names in alerts arrive byte for byte and render as nothing: plain where the receiver takes text, code
spans where it renders Markdown, HTML-escaped (by apprise) in email. Real apprise to real local receivers."""

from __future__ import annotations

import html
import re
from dataclasses import asdict

import markdown as commonmark  # Python-Markdown, apprise's own dependency: a real renderer
import pytest

from oomguard.alerting.outbox import apprise_sender, renders_markdown
from oomguard.text import code_span, markdown, printable

from support import engine as book
from support import http_receiver, smtp_server, subject, wait_for_len
from support import verdict as forecast

HOSTILE = ["my_pod-7d9f_x", "a*b*c ~d~ _e_", "<b>bold</b> & <!channel>", "@here @everyone <@U123>",
           "x`y``z", "`edge`", "[link](http://evil.example)", "new\nline", "\\back\\slash"]


def message_with(name: str):
    alerts = book()
    return alerts.warn(forecast(), subject(command=name), now=0.0)


@pytest.mark.parametrize("name", HOSTILE)
def test_plain_text_keeps_every_name_as_it_is(name):
    message = message_with(name)
    assert f"command: {printable(name)}\n" in message.body


@pytest.mark.parametrize("name", HOSTILE)
def test_markdown_shows_every_name_literally_in_a_code_span(name):
    message = message_with(name)
    rendered = commonmark.markdown(message.markdown_body)
    (line,) = [line for line in rendered.splitlines() if "command:" in line]
    # exactly one code element holding exactly the name; nothing else from it became markup
    assert re.findall(r"<code>(.*?)</code>", line) == [html.escape(printable(name).strip(), quote=False)], line
    assert not re.search(r"<(em|strong|a|del|b)\b", line), line


def test_our_own_words_are_escaped_in_markdown():
    assert commonmark.markdown(markdown("growing *fast* at _5_ MiB/s [x]")) == "<p>growing *fast* at _5_ MiB/s [x]</p>"
    message = message_with("java")
    assert message.markdown_title.startswith("[oomguard]") is False  # its brackets are escaped
    assert commonmark.markdown(message.markdown_title).startswith("<p>[oomguard] pre-OOM ")


def test_code_span_fences_outgrow_any_backtick_run():
    assert code_span("a`b") == "``a`b``" and code_span("``") == "``` `` ```" and code_span("") == ""


def test_receivers_get_the_form_they_render():
    assert not renders_markdown("json://127.0.0.1:1/x") and not renders_markdown("mailto://127.0.0.1?to=a@b")
    assert not renders_markdown("slack://T1234ABCD/B1234ABCD/abcdefghijklmnopqrstuvwx/")
    assert renders_markdown("mmost://127.0.0.1:1/abcdefghijk") and renders_markdown("discord://1234/abcdefg")


NAME = "my_pod*x <!channel> @here `q`"


def test_a_json_receiver_gets_the_name_byte_for_byte():
    with http_receiver() as receiver:
        assert apprise_sender(receiver.url)(asdict(message_with(NAME)))
        wait_for_len(receiver.payloads, 1)
    assert f"command: {NAME}\n" in receiver.payloads[0]["message"]


def test_email_gets_the_name_intact_as_text_and_html_escaped_as_html():
    with smtp_server() as (mailbox, url):
        assert apprise_sender(url)(asdict(message_with(NAME)))  # apprise sends our text as text/plain
        assert apprise_sender(url + "&format=html")(asdict(message_with(NAME)))  # a user's choice: apprise escapes
    text, rich = mailbox.messages
    assert text.get_body(("html", "plain")).get_content_type() == "text/plain"
    assert f"command: {NAME}\n" in text.get_body(("plain",)).get_content().replace("\r\n", "\n")
    part = rich.get_body(("html",))
    assert part is not None and part.get_content_type() == "text/html"
    content = part.get_content()
    assert "<!channel>" not in content and "&lt;!channel&gt;" in content  # escaped in the markup...
    assert f"command: {NAME}<br/>" in html.unescape(content).replace("\xa0", " ")  # ...and intact once shown


def test_a_markdown_receiver_gets_a_code_span_that_renders_to_the_name():
    with http_receiver() as receiver:
        url = f"mmost://127.0.0.1:{receiver.port}/abcdefghijk"  # Mattermost's webhook, served locally
        assert apprise_sender(url)(asdict(message_with(NAME)))
        wait_for_len(receiver.payloads, 1)
    text = receiver.payloads[0]["text"]
    assert receiver.paths == ["/hooks/abcdefghijk"]
    rendered = commonmark.markdown(text)
    assert f"<code>{html.escape(NAME, quote=False)}</code>" in rendered, rendered
