"""The baselines bench/detect.py scores oomguard against behave as their rules say."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "bench" / "baselines"))
from linear_rule import CgroupForecaster

MIB = 1 << 20


def test_linear_rule():
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
