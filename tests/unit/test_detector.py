"""The detector on hand-made series: fresh leak, quiet then leak, sawtooth, spikes, batch cycles, warm-up;
the process screen."""

from __future__ import annotations

import numpy as np
import pytest

from oomguard.arrays import match
from oomguard.config import DetectConfig
from oomguard.detection.culprit import name_culprits
from oomguard.detection.detector import (
    CRITICAL,
    HELD,
    WARNING,
    CgroupDetector,
    largest_fall,
    tooth_top,
    watched_since,
    window_ladder,
)
from oomguard.detection.screen import HighWater, PidScreen

MIB = 1 << 20
LIMIT = 512 * MIB


def run(series, config=None, horizon=60.0, warn_horizon=900.0, limit=LIMIT) -> list:
    detector = CgroupDetector(config or DetectConfig(), horizon, warn_horizon, 0.05)
    return [detector.update("/c", float(t), int(u), limit) for t, u in enumerate(series)]


def first(verdicts, severity=None) -> int | None:
    return next((t for t, v in enumerate(verdicts) if v.warn and (severity is None or v.severity == severity)), None)


def kill_time(series, limit=LIMIT) -> int:
    return next(t for t, u in enumerate(series) if u >= limit)


def noisy(values, sigma=MIB, seed=0):
    return np.asarray(values, float) + np.random.default_rng(seed).normal(0, sigma, len(values))


def test_a_container_leaking_from_its_first_second_is_critical_well_ahead():
    series = noisy([10 * MIB + 4 * MIB * t for t in range(200)])  # 4 MiB/s from birth: killed at ~126 s
    verdicts = run(series)
    kill = kill_time(series)
    alerted, critical = first(verdicts), first(verdicts, CRITICAL)
    assert critical is not None and kill - critical >= 0.7 * 60  # critical with >= 70% of the 60 s horizon to spare
    # a 2-minute climb never made a warning: it is younger than warn_horizon / warn_trust (450 s) all its life
    assert alerted == critical and all(v.severity != WARNING for v in verdicts)
    v = verdicts[critical]
    assert v.eta_interval is not None and v.eta_interval[0] <= v.seconds_to_limit <= v.eta_interval[1]
    assert "kept memory climbing 4.0MiB/s" in v.reason


def test_a_slow_leak_is_warned_once_its_climb_is_worth_the_warning_horizon_then_escalates():
    series = noisy([100 * MIB + 0.5 * MIB * t for t in range(1000)])  # 0.5 MiB/s: killed after ~13.7 min
    verdicts = run(series)
    kill, warned, critical = kill_time(series), first(verdicts), first(verdicts, CRITICAL)
    # its ETA is inside warn_horizon (900 s) from the start, but a warning waits for warn_horizon / warn_trust
    # (450 s) of climb: 10 s of climb says nothing about the next 15 minutes
    assert warned is not None and verdicts[warned].severity == WARNING and 450 <= warned <= 460
    # 6 minutes ahead of the kill (the price of waiting for 450 s: 526 s ahead when it waited for 300 s)
    assert kill - warned >= 360
    assert critical is not None and 0.7 * 60 <= kill - critical <= 75


def test_still_to_climb_is_the_rest_of_a_geometric_slow_down_and_infinite_for_a_steady_climb():
    from oomguard.detection.detector import _still_to_climb
    a, q = 100.0, 0.5  # an exponential approach: each third rises q times the one before, a (1-q) first
    d = np.array([[a * (1 - q)], [a * q * (1 - q)], [a * q * q * (1 - q)]])
    assert _still_to_climb(*d)[0] == pytest.approx(a * q**3)  # exactly what is left of the approach
    assert _still_to_climb(np.array([5.0]), np.array([5.0]), np.array([5.0]))[0] == np.inf  # not slowing
    assert _still_to_climb(np.array([5.0]), np.array([6.0]), np.array([7.0]))[0] == np.inf  # speeding up
    assert _still_to_climb(np.array([5.0]), np.array([0.0]), np.array([1.0]))[0] == np.inf  # a pause: not a trend


def test_a_leak_after_a_quiet_spell_is_judged_on_its_own_pace():
    series = noisy([200 * MIB] * 1200 + [200 * MIB + 2 * MIB * k for k in range(1, 200)])
    verdicts = run(series)
    kill, critical = kill_time(series), first(verdicts, CRITICAL)
    assert critical is not None and kill - critical >= 45
    assert first(verdicts) >= 1200  # nothing while it was quiet


def test_a_gc_sawtooth_after_its_first_cycle_never_warns():
    # grows 8 MiB/s from 300 to 460 MiB (90% of the limit), drops back, again and again. Its first climb
    # cannot be told from a leak (nothing can: the drop has not happened yet); after it, never a warning.
    series = noisy([300 * MIB + (t % 20) * 8 * MIB for t in range(1200)], seed=3)
    verdicts = run(series)
    assert [t for t, v in enumerate(verdicts) if v.warn and t >= 20] == []


def test_a_sawtooth_whose_floor_rises_is_a_leak():
    series = [150 * MIB + (t % 20) * 4 * MIB + t * MIB for t in range(1200)]
    kill = kill_time(series)
    critical = first(run(series), CRITICAL)
    assert critical is not None and kill - critical >= 30


def test_a_spike_at_any_age_is_not_a_trend():
    for at in (3, 30, 900):
        series = noisy([100 * MIB] * 1200, seed=at)
        series[at:at + 3] = [200 * MIB, 350 * MIB, 470 * MIB]  # a 3 s climb to 92% and back
        assert first(run(series)) is None, f"spike at {at}s"


def test_a_climb_over_seconds_to_the_limit_is_caught_before_it():
    series = [100 * MIB] * 100 + [100 * MIB + 30 * MIB * k for k in range(1, 20)]  # 14 s to the limit
    critical = first(run(series), CRITICAL)
    assert critical is not None and kill_time(series) - critical >= 5


def test_a_climb_out_of_a_settled_level_is_trusted_further_than_a_start_up():
    climb = [100 * MIB + 10 * MIB * k for k in range(1, 60)]  # 10 MiB/s to the 512 MiB limit: ~41 s
    at_birth, settled = [100 * MIB] + climb, [100 * MIB] * 121 + climb

    def critical_lead(series, verdicts):
        alerted = first(verdicts, CRITICAL)
        assert alerted is not None
        return kill_time(series) - alerted, verdicts[alerted].trend_s

    # at birth the climb is the cgroup's start-up: its ETA must be within trust (3) x the span seen, 12 s
    # in (30 s ahead); out of a level held 2 minutes, within settled_trust (4.5) x the span, 9 s in (33 s)
    assert critical_lead(at_birth, run(at_birth)) == (30, 12.0)
    assert critical_lead(settled, run(settled)) == (33, 9.0)
    # one trust for both: the settled climb alerted 2 s later (a second earlier than at birth: a long
    # window's fit, on every k-th sample, dates the climb's start to within a step)
    same = DetectConfig(settled_trust=3.0)
    assert critical_lead(settled, run(settled, same)) == (31, 12.0)
    # an OOM kill restarts the cgroup's history, and the container's start-up with it
    detector = CgroupDetector(DetectConfig(), 60.0, 900.0, 0.05)
    for t in range(120):
        detector.update("/c", float(t), 100 * MIB, LIMIT)
    detector.restart(["/c"])
    again = [detector.update("/c", 120.0 + t, int(u), LIMIT) for t, u in enumerate(at_birth)]
    assert critical_lead(at_birth, again) == (30, 12.0)


def test_young_cgroups_are_those_born_after_the_first_tick_in_their_first_minute_and_again_after_a_kill():
    detector = CgroupDetector(DetectConfig(), 60.0, 900.0, 0.05)
    usage = np.full(2, 100.0 * MIB)
    detector.update_all(["/old", "/other"], 0.0, usage, np.full(2, LIMIT))  # the daemon's first tick
    assert detector.young(0.0, 0.0) == set()  # there before the daemon: not a new container
    for t in range(1, 62):
        detector.update_all(["/old", "/new"], float(t), usage, np.full(2, LIMIT))
        if t == 1:
            assert detector.young(0.0, 1.0) == {"/new"}
    assert detector.young(0.0, 60.0) == {"/new"} and detector.young(0.0, 61.0) == set()  # its first minute
    detector.restart(["/old"])  # an OOM kill: its container starts again
    detector.update_all(["/old", "/new"], 62.0, usage, np.full(2, LIMIT))
    assert detector.young(0.0, 62.0) == {"/old"}


def test_a_repeating_batch_job_alerts_only_the_first_time():
    cycle = [100 * MIB] * 600 + [100 * MIB + 10 * MIB * k for k in range(1, 21)] + [300 * MIB] * 60
    verdicts = run(noisy(cycle * 3))
    assert [t for t, v in enumerate(verdicts) if v.warn and t > len(cycle)] == []


def test_a_warm_up_levelling_off_below_the_limit_is_never_alerted():
    t = np.arange(1800)
    # to 450 MiB of 512: at its early pace it would reach the limit in 1-4 minutes (a faster warm-up, tau
    # 30 s, is a leak for all anyone can tell when a leak that fast must be alerted on: it is)
    for tau in (60, 120, 240):
        series = noisy(20 * MIB + 430 * MIB * (1 - np.exp(-t / tau)), seed=tau)
        assert first(run(series)) is None, tau


def test_a_staircase_whose_last_step_reaches_the_limit_is_warned_a_step_ahead():
    # 10% of the limit a minute, in 2 s steps, from 20%: at 90% its pace puts the last step at the
    # horizon's edge (ETA 60 s, its confident bound later), and a climb of 6 min is too young for a warning
    # of the whole warn_horizon: it had no alert before the floor, 1 s ahead. Two steps from the limit
    # (ETA 120 s, a third of its 6 min) it warns.
    t = np.arange(600)
    series = LIMIT * (0.2 + (t // 60) * 0.1 + np.clip((t % 60) / 2, 0, 1) * 0.1)
    verdicts = run(series)
    warned = first(verdicts)
    assert warned is not None and kill_time(series) - warned >= 45
    assert verdicts[warned].severity == WARNING


def test_a_fast_warm_up_with_gc_teeth_is_judged_on_its_whole_climb_not_on_its_last_seconds():
    # tau 12 s to 72% of the limit with 2% GC teeth every 7 s: over its last 9 s the climb looks straight
    # (the teeth hide the slow-down) and reached the limit in 19 s; over its whole life each third rose less
    # than the one before, toward a plateau below the limit. Without that, a critical at 13 s.
    t = np.arange(300)
    series = LIMIT * (0.05 + 0.67 * (1 - np.exp(-t / 12)) + (t % 7) / 7 * 0.02)
    assert first(run(series)) is None


def test_a_leak_after_a_warm_up_is_still_a_leak():
    # the warm-up levels off, then a leak of 1% of the limit a second: the whole climb's thirds no longer
    # each rise less than the one before, so the leak's own windows speak (the same lead as without the rule)
    t = np.arange(300)
    series = LIMIT * (0.05 + 0.35 * (1 - np.exp(-t / 12)) + (t % 7) / 7 * 0.02 + np.maximum(t - 60, 0) * 0.01)
    verdicts = run(series)
    critical = first(verdicts, CRITICAL)
    assert critical is not None and kill_time(series) - critical >= 40


def test_a_climb_slowing_down_toward_a_plateau_above_the_limit_is_still_forecast():
    t = np.arange(600)
    series = noisy(20 * MIB + 700 * MIB * (1 - np.exp(-t / 200)))  # heads for 720 MiB: killed at ~250 s
    verdicts = run(series)
    critical = first(verdicts, CRITICAL)
    assert critical is not None and kill_time(series) - critical >= 30


def test_under_the_floor_is_critical_whatever_the_trend():
    verdicts = run([500 * MIB] * 3)
    assert [v.severity for v in verdicts] == [CRITICAL] * 3 and "under the floor" in verdicts[0].reason


def test_window_ladder_doubles_up_to_the_window():
    assert window_ladder(600) == (5, 10, 20, 40, 80, 160, 320, 600)
    assert window_ladder(30) == (5, 10, 20, 30)


def test_largest_fall_ignores_a_spike_too_brief_to_hold():
    values = np.array([[10, 10, 10, 10, 10, 90, 90, 10, 10, 10, 10, 10],  # held 2 samples: not a fall
                       [10, 50, 50, 50, 50, 50, 50, 20, 20, 20, 20, 20]], float)  # held 6: a fall of 30
    low = np.minimum.accumulate(values[:, ::-1], axis=1)[:, ::-1]
    assert largest_fall(values, low, np.array([12, 12]), HELD).tolist() == [0.0, 30.0]


def test_a_fast_sawtooth_is_known_for_its_whole_fall_and_its_teeth_are_not_alerted():
    # a 6 s tooth of 100 MiB (20% of the limit) peaking at 350 MiB: each rise, seen from its trough, would
    # reach the limit in ~9 s. Only what the cgroup gives back (E) says it is the next tooth.
    t = np.arange(1200)
    series = noisy(250 * MIB + (t % 6) / 6 * 100 * MIB, sigma=MIB / 4)
    assert [t for t, v in enumerate(run(series)) if v.warn and t >= 60] == []  # no tooth after the first minute
    # the fall, 83 MiB from peak to trough, counted (nearly) in full from levels held HELD samples; held 5 (the
    # first design), E was under a third of it and the teeth drew critical alerts all along
    values, low = series[None, :600], np.minimum.accumulate(series[None, :600][:, ::-1], axis=1)[:, ::-1]
    assert largest_fall(values, low, np.array([600]), HELD)[0] >= 75 * MIB
    assert largest_fall(values, low, np.array([600]), 5)[0] < 30 * MIB


def test_screen_flags_a_process_growing_far_above_its_norm():
    screen = PidScreen(alpha=0.1, sigma=4.0, min_growth=MIB)
    pids = np.array([1, 2, 3], dtype=np.uint32)
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert not screen.update(pids, rng.normal(0, 0.1 * MIB, 3)).any()
    flagged = screen.update(pids, np.array([0.0, 20 * MIB, 0.0]))
    assert flagged.tolist() == [False, True, False]
    new = np.array([1, 2, 3, 4], dtype=np.uint32)
    assert not screen.update(new, np.array([0.0, 0.0, 0.0, 50 * MIB]))[3]  # a newcomer has no norm yet


def test_update_all_matches_update_and_a_missing_cgroup_is_forgotten():
    config = DetectConfig(window=40)
    single = {c: CgroupDetector(config, 60, 900, 0.05) for c in ("/a", "/b")}
    batch = CgroupDetector(config, 60, 900, 0.05)
    for t in range(100):  # past twice the window: the ring wraps
        usages = np.array([100 * MIB + 3 * MIB * t, 200 * MIB + (t % 7) * MIB], dtype=np.float64)
        together = batch.update_all(["/a", "/b"], float(t), usages, np.full(2, float(LIMIT)))
        apart = [single[c].update(c, float(t), int(u), LIMIT) for c, u in zip(["/a", "/b"], usages)]
        assert together == apart
    assert len(batch) == 2
    again = batch.update_all(["/b"], 100.0, np.array([200 * MIB], dtype=np.float64), np.array([float(LIMIT)]))
    assert len(batch) == 1 and again[0].cgroup == "/b" and not again[0].warn  # /a forgotten, /b kept its history


def test_a_new_window_keeps_the_latest_history():
    detector = CgroupDetector(DetectConfig(window=40), 60, 900, 0.05)
    for t in range(60):
        detector.update("/a", float(t), 10 * MIB + 3 * MIB * t, LIMIT)
    detector.reconfigure(DetectConfig(window=80), 60, 900, 0.05)
    v = detector.update("/a", 60.0, 10 * MIB + 180 * MIB, 300 * MIB)
    times, values = detector.history("/a")
    assert list(times) == [float(t) for t in range(20, 61)]  # the 40 kept samples and the new one
    assert values[0] == 10 * MIB + 3 * MIB * 20
    assert v.severity == CRITICAL and v.seconds_to_limit == pytest.approx(110 / 3)  # they still carry the climb


def test_subjects_name_the_processes_the_screens_flag(tmp_path):
    from oomguard.detection.groups import subjects
    from oomguard.detection.screen import Screens
    from oomguard.identity.owners import Owners
    from oomguard.identity.pods import PodDirectory
    from oomguard.identity.procfs import Identity, ProcessDirectory
    from oomguard.sampling.rates import Rates

    directory = ProcessDirectory(identify=lambda pid: Identity(f"proc{pid}", None, None))
    owners, screens = Owners(directory, PodDirectory(tmp_path)), Screens(sigma=4.0)
    pids = np.array([10, 11], dtype=np.uint32)
    directory.learn(pids)
    rng = np.random.default_rng(1)

    def rates(page, rss):
        return Rates(1.0, pids, np.zeros(2), np.asarray(page, float), np.ones(2, np.int64), np.ones(2, np.int64),
                     np.full(2, MIB, np.int64), np.asarray(rss, float))

    def tick(now):
        return subjects(now, (1, 1), owners, screens.update(now))

    for _ in range(40):
        tick(rates(rng.normal(MIB, 0.05 * MIB, 2), rng.normal(0, 0.05 * MIB, 2)))
    host = [s for s in tick(rates([MIB, 50 * MIB], [0.0, 40 * MIB])) if s.cgroup == "/"]
    assert host, "processes under no limit are watched against the host's memory"
    notes = host[0].notes
    assert "pid 11 (proc11) RSS +40.0MiB/s, page allocations +50.0MiB/s" in notes and "pid 10" not in notes


def test_a_fast_sawtooth_seen_through_a_stalled_daemon_is_not_a_climb():
    # a 4 s sawtooth (30 MiB/s to 120 MiB) sampled every 0.5 s, but the daemon stalls 4.4 s twice:
    # the samples either side of each stall come from different cycles and rise together
    detector = CgroupDetector(DetectConfig(), 60, 900, 0.05)
    times = [k * 0.5 for k in range(8)] + [7.9, 8.4, 12.9 + 0.2, 13.4]
    times += [times[-1] + 0.5 * k for k in range(1, 60)]
    verdicts = [detector.update("/saw", t, int(((t % 4.0) / 4.0 * 120 + 5) * MIB), 256 * MIB) for t in times]
    assert [round(t, 1) for t, v in zip(times, verdicts) if v.warn] == []
    assert watched_since(np.array([[0.0, 1.0, 2.0, 6.0, 7.0]]), np.array([5]), 2.5).tolist() == [3]
    assert watched_since(np.array([[0.0, 1.0, 2.0, 3.0, 4.0]]), np.array([5]), 2.5).tolist() == [0]


def climb_marks(levels: list[list[float]], pids=(1, 2)) -> HighWater:
    """A HighWater fed one RSS level per pid and tick (bytes), 1 s apart."""
    marks, pid = HighWater(), np.array(pids, dtype=np.uint32)
    for level in levels:
        marks.update(pid, np.asarray(level, float), 1.0, match(marks.pid, pid))
    return marks


def test_a_sidecar_sawtooth_mid_rise_raises_no_mark_so_the_pods_leaker_is_named_first():
    # pid 1 saws with a 60 s period (rises 2 MiB/s, gives back 118 MiB), pid 2 leaks 0.5 MiB/s; the alert
    # lands at the top of the sawtooth's 5th rise, 59 s into it
    saw = [(20 + 2 * (t % 60)) * MIB for t in range(299)]
    leak = [(20 + 0.5 * t) * MIB for t in range(299)]
    growth = climb_marks([[s, k] for s, k in zip(saw, leak, strict=True)]).growth()
    assert growth[0] < 100 and growth[1] == pytest.approx(0.5 * MIB)  # bytes/s: its first rise, decayed
    average = np.zeros(2)  # what ranked them before: a ~20-tick average of RSS growth
    for t in range(1, 299):
        average += 0.05 * (np.array([saw[t] - saw[t - 1], leak[t] - leak[t - 1]]) - average)
    assert average[0] > 3 * average[1], average / MIB  # ... put the sawtooth first
    assert name_culprits(np.array([1, 2]), growth, np.zeros(2), np.zeros(2))[0].pid == 2


def test_a_process_that_starts_leaking_late_is_named_by_its_rss_within_seconds():
    # pid 2 held 50 MiB for 150 s, then leaks 4 MiB/s; pid 1 (a sidecar) allocates and frees 30 MiB/s of
    # pages. Five ticks into the leak the cgroup climbs 6 MiB/s (the leak and the sidecar's tooth): the
    # leaker's mark rises at 1 - 0.9^5 = 41% of its pace (MARK_ALPHA 0.1), over RSS_SHARE (25%) of that climb,
    # so RSS growth names it; at 0.05 it was 23% (0.9 MiB/s < 1.5): the page rates spoke, naming the sidecar
    levels = [[20 * MIB, 50 * MIB]] * 150 + [[20 * MIB, (50 + 4 * k) * MIB] for k in range(1, 6)]
    growth = climb_marks(levels).growth()
    assert growth[1] == pytest.approx(0.41 * 4 * MIB, rel=0.01) and growth[0] == 0.0
    named = name_culprits(np.array([1, 2]), growth, np.array([30.0 * MIB, 4.0 * MIB]), np.zeros(2), climb=6 * MIB)
    assert [(c.pid, c.signal) for c in named] == [(2, "RSS growth")]


def test_a_young_process_is_judged_on_its_whole_life_and_a_new_pid_starts_from_zero():
    marks = climb_marks([[(10 + 3 * t) * MIB] for t in range(6)], pids=(7,))
    assert marks.growth()[0] == pytest.approx(3.0 * MIB)  # 5 rises; an unbiased EWMA would say ~0.7 MiB/s
    marks.update(np.array([8], dtype=np.uint32), np.array([500.0 * MIB]), 1.0, match(marks.pid, np.array([8])))
    assert marks.growth().tolist() == [0.0]  # pid 7 gone; pid 8's first RSS is its mark, not a rise
    marks.update(np.array([8], dtype=np.uint32), np.array([501.0 * MIB]), 2.0, match(marks.pid, np.array([8])))
    assert marks.growth()[0] == pytest.approx(0.5 * MIB)  # a 2 s tick: bytes per second


def test_a_process_regrowing_below_its_old_mark_counts_no_growth_until_it_passes_it():
    # the price of the mark, on purpose: memory given back and taken again is not new demand
    levels = [[(100 - 50 * (t >= 10) + 2 * max(t - 10, 0)) * MIB] for t in range(60)]
    growth = climb_marks(levels[:30], pids=(3,)).growth()
    assert growth[0] < 0.5 * MIB  # at 30 s: back to 90 of its 100 MiB mark
    growth = climb_marks(levels, pids=(3,)).growth()
    assert growth[0] > MIB  # past the mark at 35 s, rising 2 MiB/s


def reference_watched_since(times, count, max_gap):
    """The straightforward per-row search the detector's one-row version must agree with."""
    width = times.shape[1]
    gaps = np.diff(times, axis=1) > max_gap
    gaps &= np.arange(1, width)[None, :] > (width - count)[:, None]
    last = width - 2 - np.argmax(gaps[:, ::-1], axis=1)
    return np.where(gaps.any(axis=1), last + 1, 0)


def test_the_kept_envelope_and_the_watched_columns_kept_up_to_date_equal_their_plain_computation():
    rng = np.random.default_rng(7)
    detector = CgroupDetector(DetectConfig(window=20, min_span=5.0), 60.0, 900.0, 0.05)
    alive, now = {"/a", "/b"}, 0.0
    for tick in range(400):  # 20 buffer wraps, with cgroups coming and going, restarts, starved ticks
        now += 5.0 if rng.random() < 0.03 else 1.0
        if rng.random() < 0.05:
            alive.add(f"/n{tick}")
        if rng.random() < 0.04 and len(alive) > 1:
            alive.discard(sorted(alive)[int(rng.integers(len(alive)))])
        if rng.random() < 0.03:
            detector.restart([sorted(alive)[0]])
        if tick == 200:
            detector.reconfigure(DetectConfig(window=30, min_span=5.0), 60.0, 900.0, 0.05)
        cgroups = sorted(alive)
        detector.update_all(cgroups, now, rng.uniform(0, 100 * MIB, len(cgroups)), np.full(len(cgroups), LIMIT))
        values, times = detector._window(detector._values), detector._window(detector._times)
        plain = np.minimum.accumulate(values[:, ::-1], axis=1)[:, ::-1]
        assert np.array_equal(detector._window(detector._low), plain), tick
        assert np.array_equal(watched_since(times, detector._count, 2.5),
                              reference_watched_since(times, detector._count, 2.5)), tick


def test_a_jump_to_the_limit_in_10s_is_critical_more_than_half_of_it_ahead():
    # 200 MiB held for 2 minutes, then the limit (512 MiB) in 10 s: a trend once it has climbed min_span (4 s)
    series = [200 * MIB] * 120 + [200 * MIB + (LIMIT - 200 * MIB) * k / 10 for k in range(1, 13)]
    kill = kill_time(series)
    assert kill - first(run(series)[:kill], CRITICAL) == 6  # 6 s in 10
    # with min_span 5 s, 5 s ahead: the 10-sample window, reaching back before the jump, is fitted from where
    # L starts climbing. Fitted over its flat half too (the ladder before), its first third did not climb
    # and the jump was critical 3 s ahead.
    assert kill - first(run(series, DetectConfig(min_span=5.0))[:kill], CRITICAL) == 5


def convex_teeth(seconds: float, tall: float = 0.6, period: float = 5.0, floor_rise: float = 0.0,
                 limit: int = 256 * MIB) -> tuple[list[float], list[int]]:
    """An allocator doubling its buffers: each tooth rises slowly and then fast to `tall` of the limit in
    `period` s and frees it all; sampled every 0.5 s. `floor_rise`: bytes/s its troughs climb (a leak under it)."""
    times = [k * 0.5 for k in range(int(seconds * 2))]
    shape = [(np.exp(3 * (t % period) / period) - 1) / (np.exp(3) - 1) for t in times]
    return times, [int(tall * s * limit + 4 * MIB + floor_rise * t) for s, t in zip(shape, times, strict=True)]


def test_a_tooth_no_higher_than_the_teeth_before_it_is_not_a_trend_however_fast_it_rises():
    # Each tooth's last second is most of its rise: the level held HELD samples before its top is a third of
    # it, so what the cgroup is known to give back (57.6 MiB) undercounts the 154 MiB tooth, and each tooth,
    # seen from its trough, climbed 22 MiB/s to "OOM in 7s": a critical on every tooth. Its teeth reach the
    # same height and give it all back: that is its own envelope.
    times, usage = convex_teeth(600)
    detector = CgroupDetector(DetectConfig(), 60, 900, 0.05)
    verdicts = [detector.update("/saw", t, u, 256 * MIB) for t, u in zip(times, usage, strict=True)]
    assert [t for t, v in zip(times, verdicts, strict=True) if v.warn and t >= 12] == []
    values = np.array([usage[:100]], float)
    low = np.minimum.accumulate(values[:, ::-1], axis=1)[:, ::-1]
    top = tooth_top(values, low, np.array([100]))[0]
    assert max(usage[:100]) < top < 1.2 * max(usage[:100])  # the teeth's height, plus TOOTH_MARGIN of it
    assert tooth_top(values[:, :8], low[:, :8], np.array([8]))[0] == -np.inf  # one tooth is no pattern yet


def test_a_leak_under_the_teeth_or_after_them_still_speaks():
    # the same teeth over troughs rising 0.6 MiB/s: each tooth tops the last, and the cgroup is killed at ~270 s
    times, usage = convex_teeth(400, tall=0.35, floor_rise=0.6 * MIB)
    detector = CgroupDetector(DetectConfig(), 60, 900, 0.05)
    verdicts = [detector.update("/saw", t, u, 256 * MIB) for t, u in zip(times, usage, strict=True)]
    kill = next(t for t, u in zip(times, usage, strict=True) if u >= 256 * MIB)
    critical = next(t for t, v in zip(times, verdicts, strict=True) if v.severity == CRITICAL and t >= 12)
    assert kill - critical >= 30, (kill, critical)
    # two minutes of teeth, then they stop at their trough and a leak of 3 MiB/s starts: judged as any leak
    times, usage = convex_teeth(120)
    times += [120 + 0.5 * k for k in range(1, 200)]
    usage += [int(4 * MIB + 3 * MIB * 0.5 * k) for k in range(1, 200)]
    detector = CgroupDetector(DetectConfig(), 60, 900, 0.05)
    verdicts = [detector.update("/saw", t, u, 256 * MIB) for t, u in zip(times, usage, strict=True)]
    kill = next(t for t, u in zip(times, usage, strict=True) if u >= 256 * MIB)
    critical = next(t for t, v in zip(times, verdicts, strict=True) if v.severity == CRITICAL and t >= 120)
    assert kill - critical >= 0.7 * 60 * 0.5, (kill, critical)
