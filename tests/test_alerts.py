"""The alert lifecycle on a fake clock, the forecast rule, and inert text."""

from __future__ import annotations

import pytest

from oomguard.alerts import CLEARED, CONFIRMED, PRE_OOM, UNFORESEEN, AlertBook, Subject
from oomguard.attribution import PodNames, attribute
from oomguard.events import OomKill
from oomguard.forecast import CgroupForecaster, Forecast
from oomguard.kills import KillReport
from oomguard.kmsg import KernelOomRecord
from oomguard.text import inert

UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CID = "ab" * 32
CGROUP = f"/kubepods/burstable/pod{UID}/{CID}"
MIB = 1 << 20


def subject(cgroup=CGROUP, pids=(100,), command="java") -> Subject:
    return Subject(cgroup=cgroup, pids=tuple(pids), command=command, attribution=attribute(cgroup),
                   pod=PodNames("shop", "cart-7d9f", "app"), kmalloc_bytes_per_s=2048.0,
                   page_bytes_per_s=8 * MIB, rss_bytes=100 * MIB, sample_rates=(32, 4))


def forecast(cgroup=CGROUP, eta=20.0) -> Forecast:
    return Forecast(cgroup, 100 * MIB, 128 * MIB, 1.4 * MIB, eta, True, "usage growing 1.4 MiB/s reaches the limit")


def kill_report(pid=100, cgroup=CGROUP, comm="java") -> KillReport:
    kill = OomKill(timestamp_ns=1, victim_pid=pid, victim_comm=comm, victim_uid=0, total_vm_kb=1, anon_rss_kb=131072,
                   file_rss_kb=0, shmem_rss_kb=0, oom_score_adj=0, trigger_pid=pid, trigger_comm=comm, cgroup_id=1)
    record = KernelOomRecord(1, "CONSTRAINT_MEMCG", cgroup, cgroup, comm, pid, 0)
    return KillReport(kill, record, attribute(cgroup), PodNames("shop", "cart-7d9f", "app"), 128 * MIB, None)


def book(**kw) -> AlertBook:
    return AlertBook(horizon_s=kw.get("horizon", 60), cooldown_s=kw.get("cooldown", 300),
                     max_per_hour=kw.get("max_per_hour", 30), host="node-1")


def test_pre_oom_then_confirmed_with_lead_time():
    alerts = book()
    pre = alerts.warn(forecast(), subject(), now=1000.0)
    assert pre.kind == PRE_OOM and pre.namespace == "shop"
    for part in ("host: node-1", "pid: 100", "command: java", f"container: {CID}", f"pod uid: {UID}",
                 "namespace/pod: shop/cart-7d9f", f"cgroup: {CGROUP}", "allocation rate: kmalloc 2.0KiB/s, pages 8.0MiB/s",
                 "RSS: 100.0MiB", "cgroup usage: 100.0MiB of limit 128.0MiB", "forecast time to OOM: 20s",
                 "sample rate in force: kmalloc 1-in-32, page 1-in-4", "Why: usage growing"):
        assert part in pre.body, part
    confirmed = alerts.kill(kill_report(), now=1017.0)
    assert confirmed.kind == CONFIRMED and confirmed.alert_id == pre.alert_id
    assert f"Confirms pre-OOM alert {pre.alert_id}" in confirmed.body and "Lead time: 17s" in confirmed.body
    assert alerts.tallies.foreseen == 1 and alerts.tallies.lead_times_s == [17.0]
    assert not alerts.open


def test_kill_matched_by_cgroup_when_the_pid_is_new():
    alerts = book()
    pre = alerts.warn(forecast(), subject(pids=(100,)), now=0.0)
    assert alerts.kill(kill_report(pid=555), now=5.0).alert_id == pre.alert_id


def test_unforeseen_kill():
    alerts = book()
    message = alerts.kill(kill_report(), now=0.0, last_seen=(subject(), 127 * MIB, 128 * MIB))
    assert message.kind == UNFORESEEN and "No pre-OOM alert foresaw this kill" in message.body
    assert f"container: {CID}" in message.body and "limit hit: 128.0MiB" in message.body
    assert "allocation rate (last tick): kmalloc 2.0KiB/s, pages 8.0MiB/s" in message.body
    assert "cgroup usage (last tick): 127.0MiB of limit 128.0MiB" in message.body
    assert alerts.tallies.unforeseen == 1
    assert "not observed before the kill" in alerts.kill(kill_report(pid=5, cgroup="/x"), now=1.0).body


def test_cleared_after_the_horizon_and_when_the_processes_are_gone():
    alerts = book(horizon=60)
    pre = alerts.warn(forecast(), subject(), now=0.0)
    alerts.warn(forecast(), subject(), now=30.0)  # still warning at 30 s: the horizon counts from here
    assert alerts.expire(80.0, {CGROUP}) == []
    cleared = alerts.expire(91.0, {CGROUP})
    assert [m.kind for m in cleared] == [CLEARED] and cleared[0].alert_id == pre.alert_id
    assert "false alarm" in cleared[0].body and alerts.tallies.false_alarms == 1
    other = book()
    other.warn(forecast("/other"), subject("/other"), now=0.0)
    gone = other.expire(1.0, set())
    assert "exited without an OOM kill" in gone[0].body


def test_a_hundred_forks_in_one_container_give_one_alert():
    alerts = book()
    messages = [alerts.warn(forecast(), subject(pids=(1000 + i,)), now=float(i)) for i in range(100)]
    assert sum(m is not None for m in messages) == 1
    assert len(alerts.open[CGROUP].pids) == 100


def test_cooldown_and_rate_limit():
    alerts = book(cooldown=300, max_per_hour=2)
    alerts.warn(forecast(), subject(), now=0.0)
    alerts.kill(kill_report(), now=10.0)
    assert alerts.warn(forecast(), subject(), now=100.0) is None  # cooling down
    assert alerts.warn(forecast(), subject(), now=311.0) is not None
    assert alerts.warn(forecast("/b"), subject("/b"), now=312.0) is None  # third in the hour: limited
    assert alerts.suppressed == 1
    assert alerts.warn(forecast("/b"), subject("/b"), now=3700.0) is not None  # an hour later


def test_state_survives_a_restart(tmp_path):
    alerts = book()
    pre = alerts.warn(forecast(), subject(), now=0.0)
    alerts.kill(kill_report(pid=7, cgroup="/elsewhere"), now=1.0)
    alerts.save(tmp_path / "alerts.json")
    resumed = book()
    resumed.load(tmp_path / "alerts.json")
    assert resumed.tallies.unforeseen == 1
    assert resumed.kill(kill_report(), now=9.0).alert_id == pre.alert_id


def test_process_names_cannot_inject_markup():
    alerts = book()
    pre = alerts.warn(forecast(), subject(command="<@channel> *x* [a](http://e)"), now=0.0)
    assert "<@channel>" not in pre.body and "＜＠channel＞" in pre.body and "[a](" not in pre.body
    assert inert("evil\x1b[31m\nline") == "evil［31mline"


def test_forecast_rule():
    f = CgroupForecaster(horizon_s=30, floor_fraction=0.05, min_samples=5)
    results = [f.update("/c", float(t), usage=10 * MIB * t, limit=128 * MIB) for t in range(1, 7)]
    assert not any(r.warn for r in results[:4])  # warm-up: 5 samples first
    assert results[4].slope_bytes_per_s == pytest.approx(10 * MIB)
    assert results[4].seconds_to_limit == pytest.approx(7.8, abs=0.1) and results[4].warn
    flat = CgroupForecaster(30, 0.05, min_samples=3)
    assert not [flat.update("/f", float(t), 50 * MIB, 128 * MIB) for t in range(5)][-1].warn
    full = CgroupForecaster(30, 0.05)
    first = full.update("/g", 0.0, 125 * MIB, 128 * MIB)
    assert first.warn and "under the 5% floor" in first.reason  # the floor needs no history
