"""The sampling controller on synthetic loads: steady state, bursts, bounds, zero events."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from oomguard.sampling.controller import MAX_N, SampleRateController

TARGET = 20_000


def drive(controller: SampleRateController, events_per_s: list[float], interval_s: float = 1.0) -> list[int]:
    """N in force during each interval (the decision applies from the next)."""
    history = []
    for rate in events_per_s:
        history.append(controller.n)
        controller.update(seen=int(rate * interval_s), interval_s=interval_s)
    return history


def sampled_per_s(events_per_s: list[float], ns: list[int]) -> np.ndarray:
    return np.array(events_per_s) / np.array(ns)


def test_steady_load_settles_and_never_moves_again():
    controller = SampleRateController(TARGET, initial_n=1)
    load = [2_000_000.0] * 30
    ns = drive(controller, load)
    assert ns[1] == 100  # one interval to get there
    assert set(ns[1:]) == {100}
    assert np.all(np.abs(sampled_per_s(load, ns)[1:] / TARGET - 1) <= 0.2)


def test_steady_load_with_noise_does_not_oscillate():
    rng = np.random.default_rng(7)
    controller = SampleRateController(TARGET, initial_n=1)
    load = list(1_000_000 * (1 + 0.08 * rng.standard_normal(200)))
    ns = drive(controller, load)
    changes = sum(1 for a, b in itertools.pairwise(ns[2:]) if a != b)
    assert changes == 0, ns
    error = sampled_per_s(load, ns)[2:] / TARGET - 1
    # the load's own 8% noise passes through; the controller adds none
    assert abs(error.mean()) < 0.05
    assert np.mean(np.abs(error) <= 0.2) >= 0.95


def test_hundredfold_burst_is_absorbed_within_two_intervals_and_recovers():
    controller = SampleRateController(TARGET, initial_n=1)
    load = [50_000.0] * 10 + [5_000_000.0] * 10 + [50_000.0] * 20
    ns = drive(controller, load)
    before = ns[9]
    assert before == 3  # 50k/s -> ceil(2.5)
    burst_sampled = sampled_per_s(load, ns)[10:20]
    assert np.all(burst_sampled[2:] <= TARGET * 1.2)  # held from the second burst interval on
    assert ns[11] == 250
    # recovery: back to the pre-burst N within a few intervals, never below it
    after = ns[20:]
    assert min(after) == before
    assert after.index(before) <= 6
    assert all(a >= b for a, b in itertools.pairwise(after))  # monotone descent: no undershoot


def test_bounds():
    controller = SampleRateController(TARGET, initial_n=1, max_n=1000)
    assert drive(controller, [1e9, 1e9])[1] == 1000
    controller = SampleRateController(TARGET, initial_n=MAX_N * 4)
    assert controller.n == MAX_N
    with pytest.raises(ValueError):
        SampleRateController(0)


def test_zero_events_relax_n_to_one_and_no_time_changes_nothing():
    controller = SampleRateController(TARGET, initial_n=4096)
    ns = drive(controller, [0.0] * 12)
    assert ns[-1] == 1
    assert ns == sorted(ns, reverse=True)
    decision = controller.update(seen=10**9, interval_s=0.0)
    assert not decision.changed and decision.n == 1


def test_decisions_explain_themselves():
    controller = SampleRateController(1000, initial_n=1)
    decision = controller.update(seen=500_000, interval_s=1.0)
    assert decision.changed and decision.n == 500
    assert decision.reason == "N 1 -> 500: 500,000 sampled/s vs target 1,000 at 500,000 events/s"
    assert controller.update(seen=500_000, interval_s=1.0).reason == "within target band"


def test_late_tick_uses_the_real_interval():
    controller = SampleRateController(1000, initial_n=1)
    # 3 s of 10k events/s arriving in one late tick is 10k/s, not 30k/s
    assert controller.update(seen=30_000, interval_s=3.0).n == 10
