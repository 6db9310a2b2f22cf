"""bench/detect.py's forced-alert verdict: a benign climb is forced when it is still its leak twin at the
moment that twin needs its critical alert, and not otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from detect import alert_forced
from scenarios import Trace, _ramp, fill_then_flat

MIB = 1 << 20
LIMIT = 512 * MIB


def fill(rate: float, end: float, base: float = 0.0) -> Trace:
    return Trace("fill", np.zeros(10), LIMIT, False, params=_ramp(0, end, base, rate))


def test_a_fast_fill_is_forced_a_slow_or_short_one_is_not():
    # 10 MiB/s: its twin is killed at 51.2 s and needs its critical by 51.2 - 0.7 x 51.2 = 15.4 s
    assert alert_forced(fill(10 * MIB, end=16.0), 60) is True
    assert alert_forced(fill(10 * MIB, end=15.0), 60) is False  # it stopped before: a detector could wait
    # the whole horizon asks for more: 51.2 s ahead, at 0 s, so even a 1 s climb is forced
    assert alert_forced(fill(10 * MIB, end=1.0), 60, share=1.0) is True
    # 2 MiB/s from 112 MiB: twin killed at 200 s, critical needed by 200 - 42 = 158 s
    assert alert_forced(fill(2 * MIB, end=159.0, base=112 * MIB), 60) is True
    assert alert_forced(fill(2 * MIB, end=150.0, base=112 * MIB), 60) is False


def test_a_twin_outside_the_oom_classes_is_not_counted_and_no_ramp_is_not_judged():
    assert alert_forced(fill(0.4 * MIB, end=1e6), 60) is False  # slower than any OOM class's leak
    assert alert_forced(fill(0.6 * MIB, end=1e6), 60) is False  # 853 s to the limit: past the classes' 10 min
    assert alert_forced(Trace("flat", np.zeros(10), LIMIT, False), 60) is None


def test_the_generated_fill_carries_its_first_climb():
    t = fill_then_flat(np.random.default_rng(7))
    p = t.params
    end = int(p["ramp_end"])
    expected = p["ramp_base"] + p["ramp_rate"] * end
    # the series (noise aside: 0.2-1% of the limit, at least 0.5 MiB) is the ramp at its end
    assert t.usage[end] == pytest.approx(expected, abs=5 * max(0.01 * t.limit, 0.5 * MIB))


def test_a_class_median_whose_interval_holds_the_target_is_too_noisy_to_judge():
    from detect import ClassScore, median_interval, verdicts

    steady = [0.8] * 12
    assert median_interval(steady) == (0.8, 0.8)
    # sudden jumps: a third of them short (bounded by min_span), the rest near trust's ceiling
    mixed = [0.4, 0.5, 0.5, 0.6, 0.65, 0.68, 0.72, 0.75, 0.76, 0.77, 0.8, 0.8]
    low, high = median_interval(mixed)
    assert low < 0.70 < high and low <= float(np.median(mixed)) <= high

    def judged(shares):
        score = ClassScore(len(shares), recall=1.0, critical_share=float(np.median(shares)),
                           share_interval=median_interval(shares))
        return [m for m in verdicts("t", {"oomguard": {"jumps": score}}, []) if "critical lead" in m]

    assert judged(steady) == []
    assert judged([0.5] * 12) == ["jumps: critical lead 50.0% of achievable (missed)"]
    noisy = (f"jumps: critical lead 70.0% of achievable (too noisy to judge: its 90% interval "
             f"{low:.0%}-{high:.0%} holds 70%)")
    assert judged(mixed) == [noisy]


def test_each_class_draws_from_a_stream_of_its_own_so_a_new_class_changes_no_other():
    from scenarios import BENIGN_CLASSES, STREAMS, alloc_free_churn, fresh_leak, medium_leak, suite

    traces = {t.name: t for t in suite(range(5, 6), 1, 1)}
    # the streams of the classes there before medium_leak are where they were: 0 for the first OOM class,
    # 17 for the last benign one
    for make, stream in ((fresh_leak, 0), (alloc_free_churn, 17)):
        alone = make(np.random.default_rng([5, stream]))
        assert np.array_equal(traces[alone.name].usage, alone.usage), alone.name
    assert STREAMS[-1] is medium_leak and len(STREAMS) == len(set(STREAMS)) and alloc_free_churn in BENIGN_CLASSES
    medium = traces["leak over 10-30 min, from birth"]
    killed = np.flatnonzero(medium.usage >= medium.limit)[0]
    assert medium.oom and 590 <= killed <= 1810, killed  # killed 10-30 min after its start


def test_false_criticals_are_split_by_what_forced_them_and_the_floor_counts_every_forced_run():
    from detect import Outcome, forced

    day = np.zeros(86400)  # each benign run one day long: the floor is forced runs per day
    runs = [
        (Trace("fill", day, LIMIT, False, params=_ramp(0, 16.0, 0.0, 10 * MIB)), 1),  # forced at 70%
        (Trace("fill", day, LIMIT, False, params=_ramp(0, 1.0, 0.0, 10 * MIB)), 2),  # only at the horizon
        (Trace("warm-up", day, LIMIT, False), 1),  # no straight first climb: neither
        (Trace("fill", day, LIMIT, False, params=_ramp(0, 17.0, 0.0, 10 * MIB)), 0),  # forced, not alerted
        (Trace("fill", day, LIMIT, False, params=_ramp(0, 10.0, 0.0, 0.4 * MIB)), 0),  # too slow: not forced
        (Trace("leak", day, LIMIT, True), 3),  # an OOM run: not benign, not counted
    ]
    outcomes = [Outcome(t, None, false_criticals=n) for t, n in runs]
    f = forced(outcomes, 60)
    assert (f.runs, f.twins, f.at_target, f.at_horizon) == (5, 4, 2, 3)
    assert f.floor_per_day == pytest.approx(2 / 5)
    assert (f.alerted, f.alerted_at_target, f.alerted_at_horizon) == (3, 1, 1)
    assert str(f) == "3 runs: 1 of them needed for 70%, 1 more for the whole horizon, 1 neither"
