"""SIGHUP reconfigures in place: what each section does on reload, and what the running daemon keeps."""

from __future__ import annotations

import logging
import signal
from dataclasses import fields, replace

import numpy as np
import pytest

from oomguard.config import SECTIONS, live_part, load, needs_restart, section_keys
from oomguard.detection.groups import judge
from oomguard.service.daemon import Daemon

from support import CGROUP, MIB, subject

# The reload contract, section by section: which keys a SIGHUP applies and which need a restart.
RESTART_ONLY = {
    "sampling": {"initial_rate", "max_pids"},  # the kernel maps are sized and seeded at load
    "selection": set(),
    "alerts": {"urls", "urls_file", "alertmanager", "alertmanager_resend"},  # senders and spool are made at start
    "detect": set(),
    "metrics": {"listen"},  # the HTTP server is bound at start
    "attribution": set(),
    "state": {"dir"},  # state must not move under a running daemon
    "output": set(),
}


def test_every_key_is_either_live_or_restart_only():
    for section in SECTIONS:
        restart = {name for name, spec in section_keys(section).items() if spec.metadata["restart"]}
        assert restart == RESTART_ONLY[section], section


def leak_until_alert(daemon: Daemon) -> str:
    """Feed the engine a leak until it opens a pre-OOM alert; returns the alert id."""
    for t in range(200):
        seen = [subject(CGROUP, usage=(20 + 4 * t) * MIB, limit=512 * MIB)]
        messages = daemon.engine.observe(seen, judge(daemon.detector, seen, float(t)), float(t))
        if messages:
            return messages[0].alert_id
    raise AssertionError("the leak drew no alert")


def test_sighup_keeps_learnt_history_open_alerts_cooldowns_and_budget(daemon, caplog):
    alert_id = leak_until_alert(daemon)
    engine = daemon.engine
    history = daemon.detector._values.copy()
    giveback = daemon.detector._giveback.copy()
    budget = list(engine.book.recent)
    engine.book.closed_at["/cooling"] = 5.0
    path = daemon.config.source
    with open(path, "a") as policy:
        policy.write('[alerts]\nhorizon = "90s"\nmax_per_hour = 7\n[detect]\nscreen_sigma = 6.0\n')
    with caplog.at_level(logging.INFO):
        daemon.reload()
    assert "policy reloaded" in caplog.text
    assert engine is daemon.engine and engine.book.open[CGROUP].id == alert_id  # the open alert stays
    assert np.array_equal(daemon.detector._values, history)  # every sample learnt stays
    assert np.array_equal(daemon.detector._giveback, giveback)  # and the falls it learnt
    assert list(engine.book.recent) == budget and engine.book.closed_at["/cooling"] == 5.0
    assert engine.book.horizon_s == 90.0 and engine.book.max_per_hour == 7 and daemon.detector.horizon_s == 90.0
    assert all(s.sigma == 6.0 for s in daemon.screens.screens.values())
    # the open alert is still the one a kill confirms
    from support import kill_report

    assert engine.kill(kill_report(pid=99999), 300.0).message.alert_id == alert_id


def test_each_section_applies_live_or_says_it_needs_a_restart(daemon, tmp_path, caplog):
    state = tmp_path / "state"
    pods = tmp_path / "pods"
    changes = {
        "sampling": 'interval = "2s"\ntarget_events_per_sec = 5000\ninitial_rate = 8\nmax_pids = 4096',
        "selection": 'exclude_commands = ["noisy"]',
        "alerts": ('urls = ["json://127.0.0.1:9/x"]\nalertmanager = "http://127.0.0.1:9093"\nhorizon = "30s"\n'
                   'headroom_floor = 0.1\ncooldown = "1m"\nmax_per_hour = 3'),
        "detect": 'window = 300\nmin_span = "8s"\nscreen_sigma = 5.0',
        "metrics": 'listen = "127.0.0.1:1"\ntop_pids = 3\nmax_containers = 9',
        "attribution": f'pods_log_dir = "{pods}"',
        "state": f'dir = "{tmp_path / "elsewhere"}"',
        "output": "top_pids = 2",
    }
    text = "\n".join(f"[{section}]\n{body}" for section, body in changes.items())
    with open(daemon.config.source, "w") as policy:
        policy.write(text + "\n")
    with caplog.at_level(logging.WARNING):
        daemon.reload()
    config = daemon.config
    # live: in force at once
    assert config.sampling.interval == 2.0 and all(c.target_per_s == 5000 for c in daemon.collector.controllers)
    assert daemon.selection.rules.exclude_commands == ("noisy",) and daemon.tracer.filters
    assert config.alerts.horizon == 30.0 and daemon.engine.book.cooldown_s == 60.0
    assert daemon.detector.floor_fraction == 0.1 and daemon.engine.book.max_per_hour == 3
    assert daemon.detector.config.window == 300 and daemon.detector.config.min_span == 8.0
    assert config.metrics.top_pids == 3 and config.metrics.max_containers == 9
    assert daemon.owners.pods.pods_dir == pods
    assert config.output.top_pids == 2
    # restart-only: kept, and each named with the fix
    assert (config.sampling.initial_rate, config.sampling.max_pids) == (64, 16384)
    assert config.alerts.urls == () and config.alerts.alertmanager == ""
    assert config.metrics.listen == "" and config.state.dir == state
    for key in ("[sampling] initial_rate", "[sampling] max_pids", "[alerts] urls", "[alerts] alertmanager",
                "[metrics] listen", "[state] dir"):
        assert f"SIGHUP: {key} changed: needs a restart to apply (systemctl restart oomguard)" in caplog.text, key
    assert "[alerts] horizon changed" not in caplog.text


@pytest.mark.parametrize("bad", [
    b"[sampling]\ninterval = [1]\n", b"\x00\xff\xfe not text", b"[detect]\nwindow = 12\n",
    b"[detect]\ntrust = inf\n", b"[alerts]\nwarn_horizon = \"30s\"\n", b"not = [toml",
])
def test_a_bad_policy_on_sighup_keeps_the_old_one(daemon, caplog, bad):
    before = daemon.config
    with open(before.source, "wb") as policy:
        policy.write(bad)
    with caplog.at_level(logging.ERROR):
        daemon.reload()
    assert daemon.config is before and "new policy rejected, keeping the old one" in caplog.text


def test_a_policy_file_gone_or_replaced_by_a_fifo_keeps_the_old_one(daemon, caplog):
    import os
    from pathlib import Path

    before = daemon.config
    path = Path(before.source)
    path.unlink()
    os.mkfifo(path)  # reading a FIFO would block the loop forever: refused without opening it
    with caplog.at_level(logging.ERROR):
        daemon.reload()
    assert daemon.config is before and "not a regular file" in caplog.text
    path.unlink()
    path.symlink_to(path)  # a symlink loop
    daemon.reload()
    assert daemon.config is before and "Too many levels of symbolic links" in caplog.text


def test_live_part_keeps_restart_keys_only(tmp_path):
    old = load_text(tmp_path, "[sampling]\n")
    new = load_text(tmp_path, '[sampling]\nmax_pids = 2048\ntarget_events_per_sec = 999\n')
    merged = live_part(old, new)
    assert merged.sampling.max_pids == 16384 and merged.sampling.target_events_per_sec == 999
    assert needs_restart(old, new) == ["[sampling] max_pids"]
    assert needs_restart(old, replace(old)) == []
    assert {f.name for f in fields(merged)} == {f.name for f in fields(new)}


def load_text(tmp_path, text: str):
    path = tmp_path / "p.toml"
    path.write_text(text)
    return load(path)


def test_a_stop_signal_only_sets_flags_the_loop_logs_it(caplog):
    # A handler that logs can re-enter a write the main thread is in the middle of (RuntimeError:
    # reentrant call) and end the daemon with exit code 1 on a plain SIGTERM: it must write nothing.
    import os

    from oomguard.signals import Signals

    previous = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        signals = Signals()
        with caplog.at_level(logging.DEBUG):
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGHUP)
        assert signals.stop and signals.reload and signals.stopped_by == "SIGTERM"
        assert caplog.text == ""
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)



def test_a_service_log_gets_a_summary_and_rate_changes_not_every_tick(daemon):
    import io

    from oomguard.bpf.events import Counters, SourceCounters
    from oomguard.sampling.collector import Tick

    daemon.out = io.StringIO()  # not a terminal: systemd's journal, a container's log
    assert not daemon._ticks_shown()
    empty = np.zeros(0, dtype=np.uint32)

    def tick(rates: tuple[int, int]) -> Tick:
        return Tick(None, Counters(SourceCounters(0, 0), SourceCounters(0, 0), 0), rates, empty, empty, empty)

    for rates in [(1, 1)] * 5 + [(8, 1)] * 5:
        daemon._quiet_lines(tick(rates))
    lines = daemon.out.getvalue().splitlines()
    assert len(lines) == 2, lines  # one summary (the first tick), one line for the rate change
    assert "limited cgroups; sample rates kmalloc 1-in-1" in lines[0] and "kmalloc 1-in-8" in lines[1]
    daemon.config = replace(daemon.config, output=replace(daemon.config.output, ticks="always"))
    assert daemon._ticks_shown()
