"""The BPF programs on the running kernel: sampling maths, page/RSS accounting, OOM events, detach."""

from __future__ import annotations

import ctypes
import json
import math
import os
import subprocess
import time

import numpy as np
import pytest

from oomguard.bpf.events import RSS_MEMBERS, SOURCE_KMALLOC, SOURCE_PAGE, SOURCES, compile_flags
from oomguard.bpf.tracer import BPF_SOURCE

from support import memory_cgroup, procs_file

pytestmark = pytest.mark.kernel
MIB = 1 << 20
POLL_CALLS = 200_000



def child_row(tracer, pid: int) -> dict:
    snap = tracer.snapshot()
    hit = np.flatnonzero(snap.pid == pid)
    assert len(hit) == 1, f"pid {pid} not in the allocation map"
    i = hit[0]
    return {
        "kmalloc_bytes": int(snap.kmalloc_bytes[i]),
        "kmalloc_samples": int(snap.kmalloc_samples[i]),
        "page_bytes": int(snap.page_bytes[i]),
        "page_samples": int(snap.page_samples[i]),
        "rss_bytes": int(snap.rss_bytes[i]),
    }


def run_polls(tracer, workload, calls: int) -> dict:
    child = subprocess.Popen([str(workload), "poll", str(calls)])
    assert child.wait(timeout=60) == 0
    return child_row(tracer, child.pid)


def test_one_declaration_of_every_struct_and_constant(tracer):
    """Structs live only in the C source (read through bcc's types); shared constants only in events.py."""
    source = BPF_SOURCE.read_text()
    for flag in compile_flags(16):
        name = flag[2:].split("=")[0]
        assert f"#define {name}" not in source, f"{name} is defined in oomguard.c too: it must come as -D{name}"
    bpf = tracer._bpf
    # the map leaf as bcc generated it from the C source, with the sizes the constants give: one entry per
    # process, shared by every CPU (its size does not grow with the CPU count)
    assert ctypes.sizeof(bpf[b"pids"].Leaf) == 2 * 8 * len(SOURCES) + 8 * len(RSS_MEMBERS) + 8  # + exited
    values = tracer._pids.values
    assert values["bytes"].shape[1:] == values["samples"].shape[1:] == (len(SOURCES),)
    assert values["rss"].shape[1:] == (len(RSS_MEMBERS),)
    for gone in (b"allocs", b"rss"):  # one per-PID map, read once a tick
        with pytest.raises(KeyError):
            bpf[gone]


def test_a_tracked_process_that_exits_leaves_its_name_once(tracer, workload):
    tracer.set_sample_rate(SOURCE_PAGE, 1)
    tracer.departed()  # whatever exited before this test
    spikes = [subprocess.Popen([str(workload), "spike", "8", "0.01", "0.01"]) for _ in range(3)]
    for spike in spikes:
        assert spike.wait(timeout=10) == 0
    time.sleep(0.1)
    departed = tracer.departed()
    assert {s.pid: departed[s.pid].command for s in spikes if s.pid in departed} == \
        {s.pid: "ogworkload" for s in spikes}
    again = tracer.departed()
    assert not {s.pid for s in spikes} & set(again)  # read once, then gone: the map holds one tick's exits


def test_sample_rate_is_read_back_from_the_array_map(tracer):
    tracer.set_sample_rate(SOURCE_KMALLOC, 37)
    assert tracer.sample_rate(SOURCE_KMALLOC) == 37
    tracer.set_sample_rate(SOURCE_KMALLOC, 1)
    assert tracer.sample_rate(SOURCE_KMALLOC) == 1
    with pytest.raises(ValueError):
        tracer.set_sample_rate(SOURCE_KMALLOC, 0)


def test_kmalloc_estimate_is_unbiased_at_n_1_10_100(tracer, workload):
    # Unsampled: every kmalloc of the child is counted, one per poll() plus
    # what exec and libc start-up allocate.
    tracer.set_sample_rate(SOURCE_KMALLOC, 1)
    # A gap drawn under an earlier N (up to 2N - 1 events per CPU) runs out first: spend it, on every CPU.
    for cpu in range(os.cpu_count() or 1):
        subprocess.run(["taskset", "-c", str(cpu), str(workload), "poll", "2000"], check=True, timeout=30)
    exact = run_polls(tracer, workload, POLL_CALLS)
    assert POLL_CALLS <= exact["kmalloc_samples"] <= POLL_CALLS + 5_000
    bytes_per_event = exact["kmalloc_bytes"] / exact["kmalloc_samples"]
    assert 256 <= bytes_per_event <= 1024  # the poll_list of ~34 pollfds

    for n in (10, 100):
        tracer.set_sample_rate(SOURCE_KMALLOC, n)
        estimate = run_polls(tracer, workload, POLL_CALLS)
        events = exact["kmalloc_samples"]
        # Each event is sampled with probability ~1/N, so the estimate's
        # relative standard deviation is at most sqrt((N-1)/events)
        # (uniform gaps are more regular than Bernoulli draws). Allow 5 sigma.
        tolerance = 5 * math.sqrt((n - 1) / events)
        relative_error = abs(estimate["kmalloc_bytes"] - exact["kmalloc_bytes"]) / exact["kmalloc_bytes"]
        assert relative_error < tolerance, (n, estimate, exact)
        expected_samples = events / n
        assert abs(estimate["kmalloc_samples"] - expected_samples) < 5 * math.sqrt(expected_samples) + 5
    tracer.set_sample_rate(SOURCE_KMALLOC, 1)


def test_counters_follow_the_sample_rate(tracer, workload):
    tracer.set_sample_rate(SOURCE_KMALLOC, 50)
    before = tracer.counters()
    run_polls(tracer, workload, POLL_CALLS)
    after = tracer.counters()
    tracer.set_sample_rate(SOURCE_KMALLOC, 1)
    seen = after.kmalloc.seen - before.kmalloc.seen
    sampled = after.kmalloc.sampled - before.kmalloc.sampled
    assert seen >= POLL_CALLS
    assert abs(sampled - seen / 50) < 5 * math.sqrt(seen / 50)
    assert after.ringbuf_drops == 0


def test_heap_leak_shows_page_and_rss_growth(tracer, workload):
    tracer.set_sample_rate(SOURCE_PAGE, 1)
    child = subprocess.Popen([str(workload), "leak", "64", "0.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "leaked"
        row = child_row(tracer, child.pid)
    finally:
        child.kill()
        child.wait()
    assert row["page_bytes"] >= 64 * MIB
    assert row["page_bytes"] < 200 * MIB
    assert 64 * MIB <= row["rss_bytes"] < 100 * MIB


def test_real_oom_kill_arrives_on_the_ring_buffer(tracer, workload):
    tracer.poll_oom_kills(0)  # drain anything older
    with memory_cgroup(64 * MIB) as cgroup:
        procs = procs_file(cgroup)
        child = subprocess.Popen(
            [str(workload), "hog", "500"],
            preexec_fn=lambda: procs.write_text(str(os.getpid())),  # in the cgroup before exec
        )
        assert child.wait(timeout=30) == -9, "the hog should have been OOM-killed"
        kills = []
        deadline = time.monotonic() + 1.0
        while not kills and time.monotonic() < deadline:
            kills = [k for k in tracer.poll_oom_kills(100) if k.victim_pid == child.pid]
        received_ns = time.monotonic_ns()
    assert kills, "no oom:mark_victim event within 1 s"
    kill = kills[0]
    assert kill.victim_comm == "ogworkload"
    assert kill.trigger_pid == child.pid and kill.trigger_comm == "ogworkload"
    assert 32 * MIB <= kill.rss_bytes <= 80 * MIB
    assert kill.total_vm_kb * 1024 >= 32 * MIB
    assert kill.victim_uid == 0
    assert 0 < received_ns - kill.timestamp_ns < 1_000_000_000
    assert kill.cgroup_id > 0


def bpftool_prog_ids() -> set[int]:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], check=True, capture_output=True, text=True).stdout
    return {prog["id"] for prog in json.loads(out)}


def test_close_leaves_no_program_loaded():
    from oomguard.bpf.tracer import Tracer

    before = bpftool_prog_ids()
    tracer = Tracer()
    try:
        ours = set(tracer.program_ids())
        assert len(ours) == 5  # kmalloc, mm_page_alloc, rss_stat, sched_process_exit, mark_victim
        assert ours <= bpftool_prog_ids()
        assert not ours & before
    finally:
        tracer.close()
    # The kernel frees a detached raw-tracepoint program after an RCU grace
    # period, a few milliseconds later: wait for it, but not for long.
    deadline = time.monotonic() + 2
    while ours & bpftool_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not ours & bpftool_prog_ids()
    tracer.close()  # idempotent


def test_a_full_slot_table_counts_what_it_loses_and_reuses_freed_slots(workload):
    """With every slot taken, a new process is counted as untracked (not recorded, nothing corrupted); once
    the exited are freed, their slots are taken again, and a process's figures stay its own."""
    from oomguard.bpf.tracer import Tracer

    with Tracer(max_pids=64) as small:
        small.set_sample_rate(SOURCE_PAGE, 1)
        small.set_sample_rate(SOURCE_KMALLOC, 1)
        spawn = subprocess.run([str(workload), "spawn", "200"], timeout=60)  # 200 processes, one after another
        assert spawn.returncode == 0
        full = small.snapshot()
        assert len(full) == 64 and len(np.unique(full.pid)) == 64  # every slot taken, one pid each
        assert small.untracked() > 0  # the rest were counted, not recorded
        small.forget_pids(full.pid[full.exited])
        freed = int(full.exited.sum())
        assert freed >= 32, freed  # most of those 64 were spawn's children, gone by now
        row = run_polls(small, workload, POLL_CALLS)  # a new process gets a freed slot, and only its own figures
        assert POLL_CALLS * 0.9 <= row["kmalloc_samples"] <= POLL_CALLS * 1.5, row
        assert len(small.snapshot()) <= 64
