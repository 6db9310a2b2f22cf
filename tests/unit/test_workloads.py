"""Workload memory: identity from names, what earlier instances teach, and verdicts withheld inside it."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from oomguard.config import defaults
from oomguard.detection.detector import CRITICAL, WARNING, CgroupDetector
from oomguard.detection.workloads import AGES, FILE, MARGIN, WorkloadMemory
from oomguard.identity.attribution import attribute
from oomguard.identity.pods import PodNames
from oomguard.identity.workload import owner_of_pod, workload_of

MIB = 1 << 20
LIMIT = 256 * MIB


@pytest.mark.parametrize("pod, owner", [
    ("cart-7d9f5c6b8d-x2k4p", "cart"),  # Deployment: pod-template-hash and suffix
    ("cart-5b6c7d8f9-zq2w4", "cart"),  # the next rollout: another hash, the same workload
    ("db-0", "db"), ("db-12", "db"),  # StatefulSet ordinals
    ("backup-29012345-q7zrt", "backup"),  # CronJob: scheduled minute and suffix
    ("node-exporter-8xkqz", "node-exporter"),  # DaemonSet or Job: suffix
    ("my-pod", "my-pod"), ("cart-7d9f", "cart-7d9f"),  # not generated: the whole name
    ("web-abcde", "web-abcde"),  # vowels are never in a generated suffix
])
def test_a_pods_owner_is_its_name_without_the_generated_parts(pod, owner):
    assert owner_of_pod(pod) == owner


def test_workload_keys_by_kind_and_none_without_names():
    pod_cgroup = "/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/" + "ab" * 32
    names = PodNames("shop", "cart-7d9f5c6b8d-x2k4p", "app")
    assert workload_of(pod_cgroup, attribute(pod_cgroup), names, LIMIT) == f"pod shop/cart/app limit {LIMIT}"
    assert workload_of(pod_cgroup, attribute(pod_cgroup), None, LIMIT) is None  # a container with no names
    unit = "/system.slice/nginx.service"
    assert workload_of(unit, attribute(unit), None, LIMIT) == f"unit nginx.service limit {LIMIT}"
    assert workload_of("/batch/job", attribute("/batch/job"), None, LIMIT) == f"cgroup /batch/job limit {LIMIT}"
    assert workload_of("/", attribute("/"), None, LIMIT) is None
    other_limit = workload_of(pod_cgroup, attribute(pod_cgroup), names, 2 * LIMIT)
    assert other_limit != workload_of(pod_cgroup, attribute(pod_cgroup), names, LIMIT)  # a new limit: a new one


def warm_up(t: float) -> int:
    """A container ramping to 80% of its limit in its first 40 s, then holding."""
    return int((0.05 + 0.75 * min(t, 40.0) / 40.0) * LIMIT)


def leak_after_warm_up(t: float) -> int:
    """The same start-up, then on at the same pace: it leaves its workload's envelope at 80%."""
    return int((0.05 + 0.75 * t / 40.0) * LIMIT)


def run_instance(memory: WorkloadMemory, detector: CgroupDetector, cgroup: str, usage, start: float,
                 seconds: int, reasons: list[str] | None = None) -> list[str]:
    """One instance watched each second by the detector and the memory: the severity of each tick (and, into
    `reasons`, the reason of each verdict that speaks)."""
    floor = defaults().alerts.headroom_floor
    severities = []
    for t in range(seconds):
        now = start + t
        u = usage(float(t))
        if u >= LIMIT:
            memory.killed([cgroup])
            detector.restart([cgroup])
            break
        memory.observe([("/", None, 0, 0), (cgroup, "pod shop/web/app", u, LIMIT)], now)
        verdicts, _ = memory.judge([detector.update(cgroup, now, u, LIMIT)], floor, now, wall=now)
        severities.append(verdicts[0].severity)
        if reasons is not None and verdicts[0].warn:
            reasons.append(verdicts[0].reason)
    memory.observe([("/", None, 0, 0)], start + seconds)  # the instance ends: its cgroup is gone
    return severities


def test_a_warm_up_seen_twice_before_is_not_paged_and_a_leak_leaving_it_is():
    config = defaults()
    memory = WorkloadMemory()
    memory.observe([("/", None, 0, 0)], 0.0)  # the daemon's first tick: later cgroups are watched from birth
    detector = CgroupDetector.for_policy(config)
    first = run_instance(memory, detector, "/pod-a", warm_up, 10.0, 120)
    assert CRITICAL in first  # alone, a warm-up is a leak until it stops (the forced floor)
    second = run_instance(memory, detector, "/pod-b", warm_up, 200.0, 120)
    assert CRITICAL in second  # one earlier instance is not yet a pattern
    shape = memory.shapes["pod shop/web/app"]
    assert shape.instances == 2 and shape.peak == pytest.approx(0.8, abs=0.01)
    assert shape.by_age[AGES.index(20.0)] == pytest.approx(0.05 + 0.75 * 20 / 40, abs=0.01)
    third = run_instance(memory, detector, "/pod-c", warm_up, 400.0, 120)
    assert set(third) == {""}  # inside what two earlier instances did: nothing
    reasons: list[str] = []
    leak = run_instance(memory, detector, "/pod-d", leak_after_warm_up, 600.0, 120, reasons)
    assert CRITICAL in leak
    first_critical = leak.index(CRITICAL)
    assert 40 < first_critical < 54, leak  # from where it left the envelope (80% + margin, at ~42 s), to its kill
    # the alert says how far it is beyond what the workload's earlier instances did
    assert re.search(r"; \d+\.\dMiB above what any of its 3 earlier instances had reached by \d+s old "
                     r"\(80% of its limit; peak 80%\)$", reasons[0]), reasons[0]
    assert memory.shapes["pod shop/web/app"].killed == 1 and memory.shapes["pod shop/web/app"].instances == 3


def test_an_instance_that_was_killed_teaches_nothing_and_a_normal_near_the_limit_is_a_daily_warning():
    memory = WorkloadMemory()
    memory.observe([], 0.0)
    detector = CgroupDetector.for_policy(defaults())
    for i in range(3):
        run_instance(memory, detector, f"/leak-{i}", leak_after_warm_up, 100.0 * (i + 1), 90)
    shape = memory.shapes["pod shop/web/app"]
    assert shape.instances == 0 and shape.killed == 3 and shape.peak == 0.0  # a leak never becomes normal
    near = WorkloadMemory()
    near.observe([], 0.0)

    def close_to_the_limit(t: float) -> int:
        return int(min(0.05 + 0.9 * t / 40.0, 0.97) * LIMIT)

    for i in range(2):
        run_instance(near, detector, f"/near-{i}", close_to_the_limit, 100.0 * (i + 1), 60)
    # its own starts end within the floor: a standing risk, warned of once a day for the workload, never paged
    # per instance
    reasons: list[str] = []
    third = run_instance(near, detector, "/near-3", close_to_the_limit, 500.0, 60, reasons)
    assert third.count(WARNING) == 1 and CRITICAL not in third, third
    assert reasons == [("kept memory climbing 5.8MiB/s for 12s, more than the 0B it is known to give back; its 2 "
                       "earlier instances level off at 97% of its limit: a standing risk, said once a day; a higher "
                       "limit ends it")]
    assert set(run_instance(near, detector, "/near-4", close_to_the_limit, 600.0, 60)) == {""}  # the same day
    assert run_instance(near, detector, "/near-5", close_to_the_limit, 600.0 + 86400, 60).count(WARNING) == 1
    # a climb past its envelope is still judged at once, critical
    reasons = []
    past = run_instance(near, detector, "/near-6", lambda t: int(min(0.05 + 0.9 * t / 40.0, 1.0) * LIMIT),
                        500.0 + 86400 * 2, 60, reasons)
    assert CRITICAL in past and "above what any of its 5 earlier instances had reached by" in reasons[-1], reasons


def test_an_instance_already_running_at_the_first_tick_teaches_its_peak_not_its_ages():
    memory = WorkloadMemory()
    memory.observe([("/old", "w", 100 * MIB, LIMIT)], 0.0)
    memory.observe([("/old", "w", 150 * MIB, LIMIT)], 1.0)
    memory.observe([], 2.0)
    shape = memory.shapes["w"]
    assert shape.instances == 1 and shape.by_age == [-1.0] * len(AGES) and shape.peak == pytest.approx(150 / 256)
    assert shape.allowed(5.0) == shape.peak  # no start-up seen: the peak is the envelope


def test_what_is_learnt_survives_a_restart_and_a_bad_file_is_set_aside(tmp_path, caplog):
    memory = WorkloadMemory()
    memory.observe([], 0.0)
    for i, cgroup in enumerate(("/a", "/b")):
        for t in range(50):
            memory.observe([(cgroup, "w", warm_up(t), LIMIT)], 100.0 * i + t)
        memory.observe([], 100.0 * i + 60)
    memory.save(tmp_path)
    again = WorkloadMemory()
    again.load(tmp_path)
    assert again.shapes == memory.shapes and not again.changed
    (tmp_path / FILE).write_text('{"version": 1, "workloads": {"w": {"instances": "two"}}}')
    fresh = WorkloadMemory()
    fresh.load(tmp_path)
    assert fresh.shapes == {} and not (tmp_path / FILE).exists()
    assert [p.name.startswith(f"{FILE}.bad-") for p in tmp_path.iterdir()] == [True]
    assert "is not of the shape oomguard writes" in caplog.text and "learnt afresh" in caplog.text
    (tmp_path / FILE).write_text("{not json")
    WorkloadMemory().load(tmp_path)
    assert "unreadable" in caplog.text


def test_the_number_of_workloads_is_capped_least_recently_seen_first():
    memory = WorkloadMemory(max_workloads=3)
    memory.observe([], 0.0)
    for i in range(5):
        memory.observe([(f"/c{i}", f"w{i}", MIB, LIMIT)], float(i))
        memory.observe([], float(i) + 0.5)
    assert list(memory.shapes) == ["w2", "w3", "w4"]
    assert len(json.dumps({k: vars(v) for k, v in memory.shapes.items()})) < 3 * 200  # a few floats each


def test_the_margin_is_a_share_of_the_limit():
    assert 0 < MARGIN <= 0.1


def test_replicas_still_running_past_their_start_up_teach_the_next_rollout():
    # two replicas of a Deployment start together and run for weeks: neither ends, yet once past their
    # start-up (AGES[-1]) they teach it; a third replica of the next rollout is then not paged for the same
    # warm-up, and a leak in it still is
    memory = WorkloadMemory()
    memory.observe([], 0.0)
    detector = CgroupDetector.for_policy(defaults())
    floor = defaults().alerts.headroom_floor
    replicas = ["/rs-a", "/rs-b"]
    first_rollout = []
    for t in range(int(AGES[-1]) + 2):
        now = 10.0 + t
        seen = [(c, "pod shop/web/app", warm_up(float(t)), LIMIT) for c in replicas]
        memory.observe(seen, now)
        verdicts, _ = memory.judge([detector.update_all(replicas, now, np.array([float(warm_up(float(t)))] * 2),
                                                        np.array([float(LIMIT)] * 2))][0], floor, now, wall=now)
        first_rollout += [v.severity for v in verdicts]
    assert CRITICAL in first_rollout  # first instances: a leak until they stop (the forced floor)
    shape = memory.shapes["pod shop/web/app"]
    assert shape.instances == 2 and shape.peak == pytest.approx(0.8, abs=0.01) and set(memory.live) == set(replicas)
    start = 10.0 + AGES[-1] + 2

    def beside_the_replicas(t: float, usage, new: str = "/rs-c") -> str:
        """A new replica (and the two old ones, holding) at second t of its life: its severity."""
        now = start + t
        cgroups = [*replicas, new]
        levels = [warm_up(1000.0), warm_up(1000.0), usage(t)]
        memory.observe([(c, "pod shop/web/app", u, LIMIT) for c, u in zip(cgroups, levels, strict=True)], now)
        verdicts, _ = memory.judge(detector.update_all(cgroups, now, np.array(levels, float),
                                                       np.full(3, float(LIMIT))), floor, now, wall=now)
        return verdicts[2].severity

    assert {beside_the_replicas(float(t), warm_up) for t in range(120)} == {""}
    memory.observe([(c, "pod shop/web/app", warm_up(1000.0), LIMIT) for c in replicas], start + 200)  # it ended
    start += 300
    leak = [beside_the_replicas(float(t), leak_after_warm_up, "/rs-d") for t in range(52)]  # killed at ~53 s
    assert CRITICAL in leak and leak.index(CRITICAL) > 40, leak
    assert memory.shapes["pod shop/web/app"].instances == 3  # the old replicas counted once, the third on its end
