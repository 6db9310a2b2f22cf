"""Rate maths on hand-made snapshots: joins, new PIDs, evicted entries, bad intervals."""

from __future__ import annotations

import numpy as np

from oomguard.arrays import values_for
from oomguard.bpf.events import AllocSnapshot
from oomguard.sampling.rates import RateTracker, interval_rates


def snapshot(t: float, rows: dict[int, tuple[int, int]]) -> AllocSnapshot:
    """rows: pid -> (kmalloc_bytes, page_bytes); samples = bytes // 100, rss = pid * 1000."""
    pids = np.array(sorted(rows), dtype=np.uint32)
    kmalloc = np.array([rows[p][0] for p in pids], dtype=np.uint64)
    page = np.array([rows[p][1] for p in pids], dtype=np.uint64)
    return AllocSnapshot(monotonic_s=t, pid=pids, kmalloc_bytes=kmalloc, kmalloc_samples=kmalloc // 100,
                         page_bytes=page, page_samples=page // 100, rss_bytes=pids.astype(np.int64) * 1000)


def test_values_for_joins_on_keys_in_any_order():
    keys = np.array([30, 10, 20], dtype=np.uint32)
    values = np.array([3, 1, 2])
    assert values_for(keys, values, np.array([10, 20, 40, 30], dtype=np.uint32)).tolist() == [1, 2, 0, 3]
    assert values_for(keys[:0], values[:0], np.array([1], dtype=np.uint32)).tolist() == [0]
    assert values_for(keys, values, np.array([], dtype=np.uint32)).tolist() == []


def test_first_snapshot_has_no_rates():
    assert interval_rates(None, snapshot(1.0, {1: (100, 100)})) is None


def test_rates_over_two_seconds():
    before = snapshot(10.0, {1: (1000, 4096), 2: (0, 0)})
    after = snapshot(12.0, {1: (3000, 12288), 2: (500, 0)})
    rates = interval_rates(before, after)
    assert rates.interval_s == 2.0
    assert rates.pid.tolist() == [1, 2]
    assert rates.kmalloc_bytes_per_s.tolist() == [1000.0, 250.0]
    assert rates.page_bytes_per_s.tolist() == [4096.0, 0.0]
    assert rates.kmalloc_samples.tolist() == [20, 5]
    assert rates.rss_bytes.tolist() == [1000, 2000]


def test_new_pid_counts_from_zero_and_exited_pid_drops_out():
    before = snapshot(0.0, {1: (100, 0), 2: (100, 0)})
    after = snapshot(1.0, {2: (300, 0), 3: (700, 0)})
    rates = interval_rates(before, after)
    assert rates.pid.tolist() == [2, 3]
    assert rates.kmalloc_bytes_per_s.tolist() == [200.0, 700.0]


def test_counter_that_went_down_was_evicted_and_recreated():
    # The LRU map evicted pid 5 and it came back with a fresh entry: its
    # current value is everything it allocated since, not a negative rate.
    rates = interval_rates(snapshot(0.0, {5: (10_000, 0)}), snapshot(1.0, {5: (300, 0)}))
    assert rates.kmalloc_bytes_per_s.tolist() == [300.0]


def test_non_increasing_clock_gives_no_rates():
    same = snapshot(5.0, {1: (1, 1)})
    assert interval_rates(same, same) is None


def test_busiest_orders_by_total_rate_and_leaves_out_the_idle():
    rates = interval_rates(snapshot(0.0, {1: (0, 0), 2: (0, 0), 3: (0, 0), 4: (0, 0)}),
                           snapshot(1.0, {1: (5, 5), 2: (0, 30), 3: (20, 0), 4: (0, 0)}))
    assert rates.pid[rates.busiest(2)].tolist() == [2, 3]
    assert rates.pid[rates.busiest(10)].tolist() == [2, 3, 1]


def test_rss_slope_and_relative_error():
    before = snapshot(0.0, {1: (0, 0)})
    after = snapshot(2.0, {1: (0, 0), 2: (0, 0)})
    after = AllocSnapshot(monotonic_s=2.0, pid=after.pid, kmalloc_bytes=after.kmalloc_bytes,
                          kmalloc_samples=np.array([100, 0], dtype=np.uint64), page_bytes=after.page_bytes,
                          page_samples=after.page_samples, rss_bytes=np.array([5000, 9000], dtype=np.int64))
    rates = interval_rates(before, after)
    assert rates.rss_bytes_per_s.tolist() == [2000.0, 0.0]  # (5000-1000)/2; new pid: no slope yet
    assert rates.relative_error(rates.kmalloc_samples).tolist() == [0.1, float("inf")]


def test_rate_change_mid_interval_gives_the_interval_average():
    # 1 s at 1000 B/s then 1 s at 3000 B/s, read once at the end: 2000 B/s
    rates = interval_rates(snapshot(0.0, {1: (0, 0)}), snapshot(2.0, {1: (4000, 0)}))
    assert rates.kmalloc_bytes_per_s.tolist() == [2000.0]


def test_late_tick_is_averaged_over_its_real_length():
    rates = interval_rates(snapshot(0.0, {1: (0, 0)}), snapshot(3.5, {1: (7000, 0)}))
    assert rates.interval_s == 3.5
    assert rates.kmalloc_bytes_per_s.tolist() == [2000.0]


def test_tracker_reports_exited_pids_and_keeps_only_one_snapshot():
    tracker = RateTracker()
    rates, exited = tracker.update(snapshot(0.0, {1: (0, 0), 2: (0, 0)}), live=np.array([1, 2], dtype=np.uint32))
    assert rates is None and exited.tolist() == []
    rates, exited = tracker.update(snapshot(1.0, {1: (10, 0), 2: (20, 0)}), live=np.array([1], dtype=np.uint32))
    assert exited.tolist() == [2]
    assert rates.kmalloc_bytes_per_s.tolist() == [10.0, 20.0]  # its last interval still counts
    # the caller deleted pid 2 from the maps; a new process reusing pid 2 starts from zero
    rates, exited = tracker.update(snapshot(2.0, {1: (10, 0), 2: (30, 0)}), live=np.array([1, 2], dtype=np.uint32))
    assert rates.kmalloc_bytes_per_s.tolist() == [0.0, 30.0]
    assert exited.tolist() == []


def test_empty_previous_snapshot_counts_everyone_from_zero():
    # every process of the previous tick exited (or none was there)
    rates = interval_rates(snapshot(0.0, {}), snapshot(1.0, {1: (100, 4096)}))
    assert rates.kmalloc_bytes_per_s.tolist() == [100.0]
    assert rates.rss_bytes_per_s.tolist() == [0.0]
    assert interval_rates(snapshot(0.0, {1: (5, 5)}), snapshot(1.0, {})).pid.tolist() == []
