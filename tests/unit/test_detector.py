"""The detector on hand-made series: leak, sawtooth, warm-up, sudden jump, batch cycles; the process screen."""

from __future__ import annotations

import numpy as np

from oomguard.config import DetectConfig
from oomguard.detection.detector import CgroupDetector, _envelopes
from oomguard.detection.screen import PidScreen

MIB = 1 << 20
LIMIT = 512 * MIB


def run(series, config=None, horizon=60.0) -> list:
    detector = CgroupDetector(config or DetectConfig(), horizon, 0.05)
    return [detector.update("/c", float(t), int(u), LIMIT) for t, u in enumerate(series)]


def first_warning(forecasts) -> int | None:
    return next((t for t, f in enumerate(forecasts) if f.warn), None)


def test_linear_leak_after_a_quiet_start_warns_early():
    series = [100 * MIB] * 60 + [100 * MIB + 2 * MIB * k for k in range(1, 250)]
    forecasts = run(series)
    kill = next(t for t, u in enumerate(series) if u >= LIMIT)
    warned = first_warning(forecasts)
    # 2 MiB/s into 412 MiB of headroom: warned as soon as the limit is within the 60 s horizon
    assert warned is not None and 55 <= kill - warned <= 62
    assert "peaks rising" in forecasts[warned].reason


def test_gc_sawtooth_near_its_limit_never_warns():
    # grows 8 MiB/s from 300 to 460 MiB (90% of the limit), drops back, again and again, with noise
    rng = np.random.default_rng(3)
    series = [300 * MIB + (t % 20) * 8 * MIB + rng.integers(0, 2 * MIB) for t in range(3600)]
    assert first_warning(run(series)) is None


def test_a_sawtooth_whose_floor_rises_is_a_leak():
    series = [150 * MIB + (t % 20) * 4 * MIB + t * MIB for t in range(1200)]
    kill = next(t for t, u in enumerate(series) if u >= LIMIT)
    warned = first_warning(run(series))
    assert warned is not None and warned < kill - 30
    assert "peaks rising" in run(series)[warned].reason


def test_no_anomaly_warning_during_warm_up():
    # a sudden climb in the first seconds: only the floor can speak
    series = [50 * MIB + 20 * MIB * t for t in range(25)]
    forecasts = run(series, DetectConfig(warmup=30))
    warned = first_warning(forecasts)
    assert warned is not None and "floor" in forecasts[warned].reason
    assert all(not f.warn for f in forecasts if f.usage < 0.95 * LIMIT)


def test_sudden_jump_is_caught_before_the_limit():
    series = [100 * MIB] * 100 + [100 * MIB + 80 * MIB * k for k in range(1, 6)]
    warned = first_warning(run(series))
    assert warned is not None and series[warned] < LIMIT


def test_a_repeating_batch_job_is_learnt_not_alerted():
    cycle = [100 * MIB] * 60 + [100 * MIB + 10 * MIB * k for k in range(1, 21)] + [300 * MIB] * 20
    forecasts = run(cycle * 30)  # an hour of the same job
    alerts_after_first_cycles = [t for t, f in enumerate(forecasts) if f.warn and t > 3 * len(cycle)]
    assert alerts_after_first_cycles == []


def envelope(times, values, blocks):
    slope, r2, peak = _envelopes(times[None, :], values[None, :], blocks)
    return float(slope[0]), float(r2[0]), float(peak[0])


def test_envelope_uses_the_peaks():
    t = np.arange(60, dtype=float)
    sawtooth = (t % 10) * 10.0
    slope, _, peak = envelope(t, sawtooth, 6)
    assert abs(slope) < 1e-9 and peak == 90.0
    slope, r2, _ = envelope(t, sawtooth + 2 * t, 6)
    assert abs(slope - 2.0) < 0.2 and r2 > 0.95


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


def test_update_all_matches_update_and_forget_frees_rows():
    config = DetectConfig(warmup=5, window=24, blocks=4)
    single = CgroupDetector(config, 60, 0.05)
    batch = CgroupDetector(config, 60, 0.05)
    for t in range(40):
        usages = np.array([100 * MIB + 3 * MIB * t, 200 * MIB + (t % 7) * MIB], dtype=np.float64)
        together = batch.update_all(["/a", "/b"], float(t), usages, np.full(2, float(LIMIT)))
        apart = [single.update(c, float(t), int(u), LIMIT) for c, u in zip(["/a", "/b"], usages)]
        assert together == apart
    assert len(batch) == 2
    batch.forget(["/a"])
    assert len(batch) == 1
    again = batch.update_all(["/b"], 40.0, np.array([200 * MIB], dtype=np.float64), np.array([float(LIMIT)]))
    assert again[0].cgroup == "/b" and again[0].reason == "no OOM in sight"  # /b kept its history


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
