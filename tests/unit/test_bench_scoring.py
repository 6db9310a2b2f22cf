"""bench/detect.py's scoring: each kill confirms its own trace's alert, whatever else is open."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from detect import run
from scenarios import Trace

LIMIT = 100.0


class Scripted:
    """Alerts each row from a given second on (critical)."""

    name = "scripted"

    def __init__(self, rows: int, from_s: dict[int, int]):
        self.from_s = from_s

    def step(self, rows: np.ndarray, now: float, usage: np.ndarray, limit: np.ndarray) -> list[str]:
        return ["critical" if now >= self.from_s.get(r, 10**9) else "" for r in rows.tolist()]


def killed_at(second: int) -> Trace:
    usage = np.linspace(0, LIMIT, second + 1)  # reaches the limit at `second`
    return Trace("leak", usage, int(LIMIT), True, 0)


def test_each_kill_confirms_its_own_alert_not_another_rows():
    # rows 1 and 2 alerted before row 0; row 0 is killed first. Its lead is from its own alert (at 8 s):
    # the bench's kills once carried pid 1, which confirmed row 1's alert (at 0 s) instead
    traces = [killed_at(10), killed_at(20), killed_at(30)]
    outcomes = run(traces, lambda rows: Scripted(rows, {0: 8, 1: 0, 2: 3}), 60)
    assert [o.kill_at for o in outcomes] == [10, 20, 30]
    assert [o.lead_s for o in outcomes] == [2.0, 20.0, 27.0]
    assert [o.critical_lead_s for o in outcomes] == [2.0, 20.0, 27.0]
