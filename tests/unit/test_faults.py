"""Faults as inputs (no root needed): bad spool files, slow and hanging receivers, unwritable spools, secrets in
logs, modes under any umask, alerts across a reboot, hostile names, malformed policies thrown at every door."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from oomguard.alerting import store
from oomguard.alerting.outbox import Outbox, receiver_key, receivers_for
from oomguard.cli import main
from oomguard.config import ConfigError, from_mapping
from oomguard.files import atomic_write
from oomguard.kills.report import KillReport
from oomguard.service.daemon import prepare_state_dir
from oomguard.text import printable, redact, scrub
from oomguard.views.console import oom_line
from oomguard.views.table import ProcessRow, format_rows
from oomguard.views.top import render

from support import HttpReceiver, engine, http_receiver, kill_report, message, subject, verdict, wait_until

# -- delivery -------------------------------------------------------------------------------------------


def test_bad_spool_files_are_quarantined_and_delivery_goes_on(tmp_path, caplog):
    with http_receiver() as receiver:
        spool = tmp_path / "spool" / receiver_key(receiver.url)
        spool.mkdir(parents=True)  # found at start: left by a crash, a full disk, an older version
        (spool / "0000000000000001.json").write_text("{truncated")
        (spool / "0000000000000002.json").write_text(json.dumps({"alert_id": "x", "kind": "pre-OOM", "body": "b"}))
        (spool / "0000000000000003.json").write_text("[]")
        outbox = Outbox(tmp_path / "spool", receivers_for((receiver.url,)), backoff_first_s=0.05)
        outbox.start()
        try:
            outbox.put(message(9))
            wait_until(lambda: len(receiver.payloads) == 1)
        finally:
            assert outbox.stop(2.0)
    assert receiver.payloads[0]["title"] == "[oomguard] alert 9"
    assert sorted(p.name for p in (spool / "quarantine").iterdir()) == [
        "0000000000000001.json", "0000000000000002.json", "0000000000000003.json"]
    assert outbox.counts.quarantined == 3 and "delivery goes on behind it" in caplog.text


def test_a_slow_receiver_gets_bounded_duplicates_and_nothing_waits_behind_forever(tmp_path):
    """It stores each message but answers after 1.5 s; the attempt deadline is 0.5 s."""
    slow = HttpReceiver(delay_s=1.5)
    slow.start()
    outbox = Outbox(tmp_path / "spool", receivers_for((slow.url,)), backoff_first_s=0.2, backoff_max_s=0.4,
                    attempt_s=0.5)
    outbox.start()
    try:
        for i in range(3):
            outbox.put(message(i))
        time.sleep(4.0)
        started = time.monotonic()
        stopped = outbox.stop(2.0)
        stop_s = time.monotonic() - started
    finally:
        slow.stop()
    copies = [p["title"] for p in slow.payloads]
    attempts = outbox.counts.failed_attempts + outbox.counts.delivered
    assert stopped and stop_s < 2.5, stop_s
    assert copies and copies.count("[oomguard] alert 0") <= attempts, (copies, attempts)
    assert len(copies) <= attempts  # at most one copy per attempt
    assert outbox.counts.timed_out >= 1 and outbox.pending() >= 1  # what was not confirmed stays spooled


def test_a_hanging_receiver_never_holds_up_stop(tmp_path):
    hanging = HttpReceiver(hang=True)
    hanging.start()
    outbox = Outbox(tmp_path / "spool", receivers_for((hanging.url,)), attempt_s=30.0)
    outbox.start()
    try:
        outbox.put(message(1))
        wait_until(lambda: hanging.payloads)
        started = time.monotonic()
        outbox.stop(1.0)
        assert time.monotonic() - started < 1.5
        assert outbox.pending() == 1  # kept for the next start
    finally:
        hanging.stop()


def test_a_500_is_retried_until_taken(tmp_path):
    failing = HttpReceiver(status=500)
    failing.start()
    outbox = Outbox(tmp_path / "spool", receivers_for((failing.url,)), backoff_first_s=0.05, backoff_max_s=0.1)
    outbox.start()
    try:
        outbox.put(message(1))
        wait_until(lambda: len(failing.payloads) >= 3)
        failing.status = 200
        wait_until(lambda: outbox.pending() == 0)
    finally:
        outbox.stop()
        failing.stop()
    assert outbox.counts.delivered == 1 and outbox.counts.failed_attempts >= 2


def test_an_unwritable_spool_still_delivers_from_memory(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool directory should be")
    with http_receiver() as receiver:
        outbox = Outbox(blocker / "spool", receivers_for((receiver.url,)), backoff_first_s=0.05)
        outbox.start()
        try:
            outbox.put(message(1))  # must not raise
            wait_until(lambda: receiver.payloads)
        finally:
            outbox.stop()
    assert receiver.payloads[0]["title"] == "[oomguard] alert 1"
    assert outbox.counts.spool_failures >= 1 and "cannot use the alert spool" in caplog.text


def test_the_spool_is_bounded_by_count_and_by_age(tmp_path, caplog):
    down = HttpReceiver()  # nothing listens
    now = [1000.0]
    outbox = Outbox(tmp_path / "spool", receivers_for((down.url,)), max_files=3, max_age_s=60.0,
                    backoff_first_s=0.05, backoff_max_s=0.05, clock=lambda: now[0])
    for i in range(5):
        outbox.put(message(i))
    spool = tmp_path / "spool" / receiver_key(down.url)
    assert len(list(spool.glob("*.json"))) == 3 and outbox.counts.dropped_full == 2
    now[0] += 120  # two minutes later: everything is past max_age_s
    outbox.start()
    try:
        wait_until(lambda: outbox.pending() == 0)
    finally:
        outbox.stop()
    assert outbox.counts.dropped_old == 3 and "dropped unsent" in caplog.text


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crash is the test
def test_a_dead_sender_is_restarted(tmp_path, caplog):
    with http_receiver() as receiver:
        outbox = Outbox(tmp_path / "spool", receivers_for((receiver.url,)))
        original = outbox._next
        calls = {"n": 0}

        def crash_once(name):
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("a bug in the sender loop")
            return original(name)

        outbox._next = crash_once
        outbox.start()
        try:
            wait_until(lambda: not next(iter(outbox._threads.values())).is_alive())
            outbox.put(message(1))
            outbox.supervise()
            wait_until(lambda: receiver.payloads)
        finally:
            outbox.stop()
    assert outbox.counts.sender_restarts == 1 and "died; restarted it" in caplog.text


def test_alertmanager_basic_auth_and_test_alert(tmp_path, capsys):
    with http_receiver() as receiver:
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[alerts]\nalertmanager = "http://oomguard:s3cret@127.0.0.1:{receiver.port}"\n')
        policy.chmod(0o600)
        assert main(["test-alert", "-c", str(policy)]) == 0
        out = capsys.readouterr().out
    assert f"ok     alertmanager http://127.0.0.1:{receiver.port}/…" in out and "s3cret" not in out
    assert receiver.paths == ["/api/v2/alerts"]
    assert receiver.headers[0]["Authorization"] == "Basic b29tZ3VhcmQ6czNjcmV0"  # oomguard:s3cret
    (alert,) = receiver.payloads[0]
    assert alert["labels"]["alertname"] == "OomguardTestAlert" and alert["endsAt"] > alert["startsAt"]


# -- secrets ----------------------------------------------------------------------------------------------


def test_secrets_are_never_logged_even_verbose(tmp_path):
    """apprise logs the URLs it posts to at DEBUG; -v must not let that through."""
    with http_receiver() as receiver:
        url = f"json://hookuser:TOPSECRET@127.0.0.1:{receiver.port}/alerts?token=ALSOSECRET"
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[alerts]\nurls = ["{url}"]\nalertmanager = "http://am:AMSECRET@127.0.0.1:9"\n')
        policy.chmod(0o600)
        run = subprocess.run([sys.executable, "-m", "oomguard.cli", "-v", "test-alert", "-c", str(policy)],
                             capture_output=True, text=True, timeout=60)
    output = run.stdout + run.stderr
    assert receiver.payloads, output  # it was sent...
    for secret in ("TOPSECRET", "ALSOSECRET", "AMSECRET"):
        assert secret not in output, output  # ...and nothing shows how


def test_redact_and_scrub():
    assert redact("mailto:user:pass@host") == "(unparsable URL)"  # no // : nothing of it is shown
    assert redact("bad scheme://user:pw@h.example.com/x") == "scheme://h.example.com/…"
    assert "pw" not in scrub("posting to http://user:pw@am.example:9093/api failed")
    assert scrub("x slack://A/B/C y", ("slack://A/B/C",)) == "x slack://… y"


def test_an_invalid_alertmanager_url_is_not_echoed_with_its_password(tmp_path, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text('[alerts]\nalertmanager = "ftp://admin:HUNTER2@am.example.com"\n')
    policy.chmod(0o600)
    assert main(["check-config", "-c", str(policy)]) == 2
    assert "HUNTER2" not in capsys.readouterr().err


def test_state_files_are_root_only_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        state = tmp_path / "state"
        state.mkdir(mode=0o755)
        prepare_state_dir(state)
        atomic_write(state / "alerts.json", "{}")
        outbox = Outbox(state / "spool", receivers_for(("json://127.0.0.1:9/x",)))
        outbox.put(message(1))
    finally:
        os.umask(old)
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "alerts.json").stat().st_mode & 0o777 == 0o600
    (spooled,) = (state / "spool").rglob("*.json")
    assert spooled.stat().st_mode & 0o777 == 0o600 and spooled.parent.stat().st_mode & 0o777 == 0o700


# -- alert state across restarts and reboots -----------------------------------------------------------------


def test_an_alert_from_an_earlier_boot_is_closed_not_confirmed_by_a_later_kill(tmp_path):
    path = tmp_path / "alerts.json"
    before = engine()
    before.book.boot_id = "boot-1"
    opened = before.warn(verdict(), subject(), now=900_000.0)
    store.save(before.book, path)
    after = engine()
    after.book.boot_id = "boot-2"  # the machine rebooted: monotonic times restarted from zero
    closed = after.restored(store.load(after.book, path), now=50.0)
    assert [m.kind for m in closed] == ["cleared"] and closed[0].alert_id == opened.alert_id
    assert "machine restarted" in closed[0].body and closed[0].resolves is not None
    assert not after.book.open and after.book.tallies.false_alarms == 0
    outcome = after.kill(kill_report(), now=60.0)
    assert not outcome.foreseen and outcome.lead_s is None  # no negative lead from another boot's clock
    # the same boot (a daemon restart): the alert is resumed and confirms
    again = engine()
    again.book.boot_id = "boot-1"
    store.save(before.book, path)
    assert again.restored(store.load(again.book, path), 900_010.0) == []
    assert again.kill(kill_report(), 900_020.0).lead_s == pytest.approx(20.0)


def test_alert_state_in_a_directory_or_garbage_is_moved_aside(tmp_path):
    path = tmp_path / "alerts.json"
    path.mkdir()
    assert store.load(engine().book, path) == []
    assert not path.exists() and list(tmp_path.glob("alerts.json.corrupt-*"))


# -- hostile names ---------------------------------------------------------------------------------------------


HOSTILE = "x\nOOM KILL pid 1 [/]\x1b[31m[bold]"


def test_hostile_names_cannot_forge_lines_or_break_the_terminal():
    row = ProcessRow(1, HOSTILE, f"owner {HOSTILE}", f"/{HOSTILE}", 1.0, 1.0, 1, 0.0, 0.1)
    lines = format_rows([row])
    assert len(lines) == 2 and "\n" not in lines[1] and "\x1b" not in lines[1]
    report = kill_report(comm=HOSTILE)
    line = oom_line(report)
    assert "\n" not in line and "\\n" in line and "\x1b" not in line
    console = Console(record=True, width=300)
    console.print(render([row], HOSTILE, lambda r: None))  # rich markup in a name: shown, not parsed
    text = console.export_text()
    assert "[/]" in text and "[bold]" in text
    assert printable("ok é ü") == "ok é ü"  # non-ASCII names stay readable
    assert isinstance(report, KillReport)


# -- malformed policies, at every door ------------------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                    st.text(max_size=20), st.binary(max_size=5).map(lambda b: b.decode("latin-1")))
VALUES = st.recursive(SCALARS.filter(lambda v: v is not None),
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=3), max_leaves=6)
KEYS = st.sampled_from(["interval", "target_events_per_sec", "max_pids", "urls", "urls_file", "horizon",
                        "window", "min_span", "trust", "warn_horizon", "screen_sigma", "listen", "dir", "blocks",
                        "include_cgroups", "pods_log_dir", "top_pids", "alertmanager", "bogus"])
SECTIONS = st.sampled_from(["sampling", "selection", "alerts", "detect", "metrics", "attribution", "state",
                            "output", "nope"])
POLICIES = st.dictionaries(SECTIONS, st.dictionaries(KEYS, VALUES, max_size=4) | VALUES, max_size=4)


@settings(max_examples=400, deadline=None)
@given(POLICIES)
def test_any_policy_is_accepted_or_refused_with_a_config_error(data):
    try:
        from_mapping(data, "generated")
    except ConfigError as exc:
        assert exc.cause.startswith("generated: ") and exc.fix


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_check_config_never_tracebacks(tmp_path, capsys, raw):
    policy = tmp_path / "policy.toml"
    policy.write_bytes(raw)
    policy.chmod(0o600)
    assert main(["check-config", "-c", str(policy)]) in (0, 2)
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_sighup_survives_generated_policies(daemon):
    """The daemon's reload, fed generated policies: it never raises; a bad one keeps the old policy."""
    import tomli_w

    policy = Path(daemon.config.source)
    good = daemon.config

    @settings(max_examples=200, deadline=None)
    @given(POLICIES)
    def reload(data):
        try:
            text = tomli_w.dumps({k: v for k, v in data.items() if isinstance(v, dict)})
        except (TypeError, ValueError):
            text = "not = [toml"
        policy.write_text(text)
        daemon.reload()  # must not raise, whatever the file says
        assert daemon.config.state.dir == good.state.dir  # never moved by a reload

    reload()


def test_check_config_refuses_urls_apprise_cannot_send_to(tmp_path, capsys):
    policy = tmp_path / "policy.toml"
    policy.write_text('[alerts]\nurls = ["bogus://token@x", "json://127.0.0.1:9/ok"]\n')
    policy.chmod(0o600)
    assert main(["check-config", "-c", str(policy)]) == 2
    err = capsys.readouterr().err
    assert "apprise does not understand bogus://" in err and "token" not in err and "fix:" in err
