"""Run inside a VM guest with 16 or more vCPUs (tests/vm boots it): the per-PID map's kernel memory and the
bytes a tick copies at 10,000 PIDs, against the CPU-count model bench/tick_cost.py prints on a small machine.

The model (README, Performance 2): oomguard's per-process slots (an mmap'ed array, the pid -> slot hash and
the queue of free slots) cost ~156 B x max_pids and a tick copies 72 B x PIDs, with no CPU term; the per-CPU
layout before them costs ~184 B + 32 B x CPUs per slot and copies (40 + 32 x CPUs) B per PID. Sizes, not
timings: the guest is emulated.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from support import require

pytestmark = pytest.mark.kernel
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
MAX_PIDS, LIVE = 16_384, 10_000
OURS_PER_SLOT_2CPU = 156  # bytes of kernel memory per max_pids slot, measured on the 2-CPU host
PERCPU_BASE_PER_SLOT_2CPU = 184


def test_map_memory_and_bytes_per_tick_do_not_grow_with_cpus():
    cpus = os.cpu_count() or 1
    require(cpus >= 16, f"{cpus} CPUs: this test needs a guest with 16 or more (tests/vm boots one)")
    from tick_cost import FIRST_FAKE_PID, PerCpu, Shared, memlock

    from oomguard.bpf.tracer import Tracer

    fake = np.arange(FIRST_FAKE_PID, FIRST_FAKE_PID + LIVE, dtype=np.uint32)
    with Tracer(max_pids=MAX_PIDS) as tracer:
        ours, before = Shared(tracer), PerCpu(MAX_PIDS)
        try:
            assert before.cpus == cpus
            ours.fill(fake, 1)
            before.fill(fake, 1)
            read_ours, read_before = ours.read(), before.read()
            assert len(read_ours.pid) >= LIVE and len(read_before.pid) >= LIVE
            figures = {
                "cpus": cpus,
                "ours_bytes_per_tick": LIVE * ours.bytes_per_pid(cpus),
                "percpu_bytes_per_tick": LIVE * before.bytes_per_pid(cpus),
                "ours_map_bytes": sum(memlock(fd) for fd in ours.fds()),
                "percpu_map_bytes": sum(memlock(fd) for fd in before.fds()),
            }
            ours.forget(fake)
            before.forget(fake)
        finally:
            before.close()
    print("\nfigures:", json.dumps(figures))
    # oomguard: what a tick copies and what the map holds have no CPU term
    assert figures["ours_bytes_per_tick"] == LIVE * 72, figures
    assert abs(figures["ours_map_bytes"] / MAX_PIDS - OURS_PER_SLOT_2CPU) < 0.1 * OURS_PER_SLOT_2CPU, figures
    # the per-CPU layout: its CPU term is real, and the model's figure for this CPU count holds
    model = (PERCPU_BASE_PER_SLOT_2CPU + before.per_cpu_value * cpus) * MAX_PIDS
    assert abs(figures["percpu_map_bytes"] - model) < 0.15 * model, (figures, model)
    assert figures["percpu_bytes_per_tick"] == LIVE * (40 + before.per_cpu_value * cpus), figures
