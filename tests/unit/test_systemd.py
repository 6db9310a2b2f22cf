"""sd_notify over a real datagram socket, watchdog pacing, journald formatting, and the status file."""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest

from oomguard.errors import OomguardError
from oomguard.service.status import format_status, is_alive, read_status, write_status
from oomguard.service.systemd import JournalFormatter, WatchdogPinger, notify


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield server
    server.close()


def test_notify_sends_one_datagram(notify_socket):
    assert notify("READY=1")
    assert notify_socket.recv(100) == b"READY=1"


def test_notify_is_a_no_op_outside_systemd(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_watchdog_pings_at_a_quarter_of_the_period(notify_socket, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    now = [100.0]
    pinger = WatchdogPinger(clock=lambda: now[0])
    assert pinger.period_s == 1.0
    pinger.ping()
    assert notify_socket.recv(100) == b"WATCHDOG=1"
    now[0] = 100.5
    pinger.ping()  # too soon: nothing sent
    now[0] = 101.0
    pinger.ping()
    assert notify_socket.recv(100) == b"WATCHDOG=1"
    notify_socket.settimeout(0.05)
    with pytest.raises(socket.timeout):
        notify_socket.recv(100)


def test_watchdog_for_another_pid_is_off(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert WatchdogPinger().period_s is None


def test_journal_priority_prefix():
    record = logging.LogRecord("oomguard", logging.WARNING, __file__, 1, "map full key=%s", ("v",), None)
    assert JournalFormatter("%(message)s").format(record) == "<4>map full key=v"


def test_status_round_trip_and_liveness(tmp_path):
    status = {"pid": os.getpid(), "started": time.time() - 60, "updated": time.time(), "policy": "p.toml",
              "interval_s": 1.0, "sample_rates": [8, 2], "events_per_s": [160000.0, 900.0], "ringbuf_drops": 0,
              "processes": 42, "kills_seen": 1,
              "top": [{"pid": 7, "command": "java", "owner": "host", "cgroup": "/", "kmalloc_bytes_per_s": 10.0,
                       "page_bytes_per_s": 4096.0, "rss_bytes": 1 << 20, "rss_bytes_per_s": 0.0, "error": 0.1}]}
    write_status(tmp_path / "state", status)
    assert read_status(tmp_path / "state") == status
    assert is_alive(status)
    text = format_status(status)
    assert "oomguard running: pid" in text and "kmalloc 1-in-8, page 1-in-2" in text
    row = next(line for line in text.splitlines() if "java" in line)
    assert row.split() == ["7", "java", "10B", "4.0KiB", "1.0MiB", "host"]  # units, as `run` and `top` print
    assert not is_alive({**status, "updated": time.time() - 10})  # stale
    assert not is_alive({**status, "pid": 2**22 + 12345})  # no such process
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["status.json"]  # no temporary left behind
    with pytest.raises(OomguardError, match="not running"):
        read_status(tmp_path / "absent")
