"""What bench/detect.py scores against: among many similar leakers the alert should name whoever grew most in
the minute before it, whatever happens after it (a restart after the alert cannot make its answer wrong); a
recorded leak grows from where it left its starting level, not from the recording's start."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from detect import growth_onset
from scenarios import Processes, culprit_at

MIB = 1 << 20


def leakers(restart_at: int) -> Processes:
    """Two processes over 200 s: row 0 leaks 0.5 MiB/s and restarts at `restart_at`, row 1 leaks 0.4 MiB/s."""
    t = np.arange(200, dtype=float)
    fast = np.where(t < restart_at, 0.5 * MIB * t, 0.5 * MIB * (t - restart_at))
    rss = np.vstack([fast, 0.4 * MIB * t])
    zeros = np.zeros_like(rss)
    return Processes(rss, zeros, zeros, culprit=None)


def test_the_top_grower_of_the_minute_before_the_alert_is_the_culprit_whatever_follows():
    p = leakers(restart_at=150)
    assert culprit_at(p, 100) == 0  # it grew 30 MiB in that minute, the other 24
    assert culprit_at(p, 180) == 1  # after its restart it holds 15 MiB of growth, the other 24
    assert culprit_at(p, 10_000) == 1  # past the series: its last minute


def test_a_class_with_one_designated_culprit_keeps_it_at_any_moment():
    p = leakers(restart_at=150)
    p.culprit = 1
    assert [culprit_at(p, s) for s in (0, 100, 180)] == [1, 1, 1]


def test_a_recorded_leak_grows_from_where_it_left_its_quiet_level():
    limit = 256 * MIB
    quiet_then_leak = np.concatenate([np.full(90, 1.0 * MIB), 1.0 * MIB + 6 * MIB * np.arange(1, 43)])
    assert growth_onset(quiet_then_leak, limit) == 89
    # a recording can read 0 on the tick of the kill: the onset is still the end of the quiet
    assert growth_onset(np.append(quiet_then_leak, 0.0), limit) == 89
    from_birth = 45 * MIB + 7 * MIB * np.arange(50)  # a JVM's start-up: no quiet at all
    assert growth_onset(from_birth, limit) == 0
    assert growth_onset(np.full(20, 200.0 * MIB), limit) == 0  # above half the limit from the first sample
