"""The rules bench/detect.py scores oomguard against behave as their PromQL and definitions say."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2] / "bench" / "baselines"))
from rules import LineRule, PredictLinear, Threshold

MIB = 1 << 20
ROW = np.array([0])


def run(rule, series, limit=128 * MIB):
    return [bool(rule.step(ROW, float(t), np.array([float(u)]), np.array([float(limit)]))[0])
            for t, u in enumerate(series)]


def test_line_rule_needs_five_samples_then_extrapolates_30():
    fired = run(LineRule(1), [10 * MIB * t for t in range(1, 7)])
    assert fired == [False, False, False, False, True, True]  # 50 MiB at 10 MiB/s: 7.8 s < 60 s from the 5th
    assert not any(run(LineRule(1), [50 * MIB] * 10))
    assert run(LineRule(1), [125 * MIB]) == [True]  # the floor needs no history


def test_predict_linear_fits_the_range_and_for_delays():
    series = [20 * MIB + MIB * t for t in range(120)]  # 1 MiB/s
    plain = run(PredictLinear(1), series)
    assert plain.index(True) == 49  # 69 MiB + 60 s * 1 MiB/s > 128 MiB (at 68 MiB it only equals it)
    held = run(PredictLinear(1, for_s=60.0), series)
    assert held.index(True) == 109  # one minute later
    spike = [20 * MIB] * 50 + [120 * MIB] + [20 * MIB] * 60
    assert not any(run(PredictLinear(1, for_s=60.0), spike))


def test_threshold():
    assert run(Threshold(1), [100 * MIB, 116 * MIB, 115 * MIB]) == [False, True, False]
