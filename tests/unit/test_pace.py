"""The ticks' pace: when a tick is late, by how much, and why (service/pace.py)."""

from __future__ import annotations

from oomguard.service.pace import CPU_BUSY, SLOW_STAGE, THROTTLED, Pace, Stopwatch, why_late


def test_a_late_tick_is_blamed_on_the_quota_a_slow_stage_or_a_busy_cpu():
    assert why_late(1.0, 0.6, "delivery", 0.9)[0] == THROTTLED  # the quota held it: raising it is the fix
    assert "raise the unit's CPUQuota" in why_late(1.0, 0.6, "", 0.0)[1]
    assert why_late(1.0, 0.1, "naming stacks", 0.8) == (SLOW_STAGE, "slow stage: naming stacks took 0.80s")
    assert why_late(1.0, 0.0, "delivery", 0.2)[0] == CPU_BUSY


def test_ticks_on_time_are_not_late_and_a_late_one_is_counted_with_its_gap_and_cause():
    pace = Pace(interval_s=1.0)
    assert pace.started(10.0, 10.05, 1000.0, 0.0) is None  # 50 ms behind: on time
    assert pace.started(11.0, 11.2, 1001.2, 0.0) is None  # under a quarter of an interval
    pace.took("detection", 0.01)
    pace.took("an OOM kill's handling", 1.9)
    late = pace.started(12.0, 14.0, 1004.0, 0.0)
    assert late is not None and late.by_s == 2.0 and round(late.gap_s, 3) == 2.8 and late.reason == SLOW_STAGE
    assert "an OOM kill's handling took 1.90s" in late.why
    late = pace.started(15.0, 15.5, 1005.5, 0.4)  # 0.4 s of quota wait since the tick before
    assert late is not None and late.reason == THROTTLED
    status = pace.status()
    assert status["count"] == 4 and status["late"] == 2 and status["late_max_s"] == 2.0
    assert round(status["gap_max_s"], 3) == 2.8 and status["by_reason"] == {SLOW_STAGE: 1, THROTTLED: 1}
    assert status["last_late"]["reason"] == THROTTLED and status["last_late"]["at"] == 1005.5


def test_unreadable_throttling_is_not_blamed():
    pace = Pace(interval_s=0.5)
    pace.started(0.0, 0.0, 0.0, None)
    late = pace.started(0.5, 1.5, 1.0, None)
    assert late is not None and late.reason == CPU_BUSY


def test_the_stopwatch_names_the_slowest_stage():
    watch = Stopwatch()
    watch.laps = {"reading the maps": 0.01, "delivery": 0.3}
    assert watch.slowest() == ("delivery", 0.3)
    watch.lap("x")
    assert "x" in watch.laps and watch.laps["x"] >= 0


def test_status_says_how_late_ticks_were_and_how_fast_alerts_arrived():
    from oomguard.service.status import format_status

    pace = Pace(interval_s=1.0)
    pace.started(0.0, 0.0, 0.0, 0.0)
    pace.started(1.0, 2.5, 1_700_000_002.5, 1.2)
    status = {"pid": 1, "started": 1.0, "updated": 2.0, "interval_s": 1.0, "policy": "p", "sample_rates": [1, 1],
              "events_per_s": [0, 0], "ringbuf_drops": 0, "processes": 1, "kills_seen": 0,
              "ticks": pace.status(), "delivery": {"delivered": 3, "latest_s": 0.31, "slowest_s": 1.72},
              "workloads": {"learnt": 4, "live": 2, "withheld": 1}}
    shown = format_status(status, 3.0)
    assert "ticks: 1 of 2 late (most 1.50s); widest gap between two 2.50s (interval 1s)" in shown
    assert "1.50s late: throttled: the daemon's CPU quota held it back 1.20s" in shown
    assert "delivery: 3 messages delivered; from decision to receiver: latest 0.31s, slowest 1.72s" in shown
    assert "workloads: 4 learnt from earlier instances, 2 instances watched; 1 verdicts withheld" in shown
    assert "not of the shape" in format_status(status | {"ticks": {"late": "x"}}, 3.0)


def test_the_daemons_cpu_cgroup_and_its_quota_wait_are_read_for_v1_and_v2(tmp_path):
    from oomguard.identity.cgroup import cpu_stat_path, keyed_ints, throttled_s

    v1 = "4:memory:/a\n3:cpu,cpuacct:/system.slice/oomguard.service\n0::/\n"
    assert cpu_stat_path(v1, tmp_path) == tmp_path / "cpu,cpuacct/system.slice/oomguard.service/cpu.stat"
    assert cpu_stat_path("0::/kubepods/pod1/c1\n", tmp_path) == tmp_path / "kubepods/pod1/c1/cpu.stat"
    assert cpu_stat_path("garbage", tmp_path) is None
    stat = tmp_path / "cpu.stat"
    stat.write_text("nr_periods 40\nnr_throttled 12\nthrottled_time 2500000000\n")
    assert throttled_s(keyed_ints(stat)) == 2.5
    stat.write_text("usage_usec 100\nnr_throttled 3\nthrottled_usec 750000\n")
    assert throttled_s(keyed_ints(stat)) == 0.75


def test_health_says_a_stuck_loop_is_unhealthy():
    pace = Pace(interval_s=1.0)
    assert pace.health(5.0) == (True, "starting: no tick yet")
    pace.started(10.0, 10.0, 0.0, None)
    ok, why = pace.health(24.0)
    assert ok and why.startswith("last tick 14.0s ago")
    ok, why = pace.health(26.0)
    assert not ok and "no tick for 16s (more than 15s): the watching loop is stuck" in why
    assert not Pace(interval_s=10.0, _last_start=0.0).health(51.0)[0] and Pace(10.0, _last_start=0.0).health(49.0)[0]


def test_healthz_is_served_beside_the_metrics():
    import urllib.error
    import urllib.request

    from oomguard.config import MetricsConfig
    from oomguard.service.metrics import Exporter

    from support import free_port

    state = [(True, "last tick 0.5s ago")]
    port = free_port()
    exporter = Exporter(MetricsConfig(listen=f"127.0.0.1:{port}", top_pids=5, max_containers=10),
                        health=lambda: state[0])
    assert exporter.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status == 200 and answer.read() == b"ok: last tick 0.5s ago\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            assert b"process_cpu_seconds_total" in answer.read()
        state[0] = (False, "no tick for 40s")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
            raise AssertionError("a stuck loop answered 200")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and exc.read() == b"unhealthy: no tick for 40s\n"
    finally:
        exporter.stop()
