"""bench/detect.py's culprit truth: among many similar leakers the alert should name whoever grew most in the
minute before it, whatever happens after it (a restart after the alert cannot make its answer wrong)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from scenarios import Processes, culprit_at

MIB = 1 << 20


def leakers(restart_at: int) -> Processes:
    """Two processes over 200 s: row 0 leaks 0.5 MiB/s and restarts at `restart_at`, row 1 leaks 0.4 MiB/s."""
    t = np.arange(200, dtype=float)
    fast = np.where(t < restart_at, 0.5 * MIB * t, 0.5 * MIB * (t - restart_at))
    rss = np.vstack([fast, 0.4 * MIB * t])
    zeros = np.zeros_like(rss)
    return Processes(rss, zeros, zeros, culprit=1, culprit_is_top_grower=True)


def test_the_top_grower_of_the_minute_before_the_alert_is_the_culprit_whatever_follows():
    p = leakers(restart_at=150)
    assert culprit_at(p, 100) == 0  # it grew 30 MiB in that minute, the other 24
    assert culprit_at(p, 180) == 1  # after its restart it holds 15 MiB of growth, the other 24
    assert culprit_at(p, 10_000) == 1  # past the series: its last minute


def test_a_class_with_one_designated_culprit_keeps_it_at_any_moment():
    p = leakers(restart_at=150)
    p.culprit_is_top_grower = False
    assert [culprit_at(p, s) for s in (0, 100, 180)] == [1, 1, 1]
