"""The watchdog survives the pressure it reports: run as the unit runs it (MemoryMax, OOMScoreAdjust), it lives
through a neighbour's OOM kill, alerts, confirms, and never needs more memory than the unit grants it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from support import Daemon, http_receiver, leak_to_kill, memory_cgroup, oom_kills_in, procs_file, wait_for_len

pytestmark = pytest.mark.kernel
MIB = 1 << 20
UNIT = Path(__file__).parents[2] / "systemd" / "oomguard.service"


def unit_setting(name: str) -> str:
    for line in UNIT.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"the unit sets no {name}")


def size(value: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def has_sys_resource() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE
    return False


def peak_usage(path: Path) -> int:
    for name in ("memory.max_usage_in_bytes", "memory.peak"):  # v1, v2 (5.19+)
        if (path / name).exists():
            return int((path / name).read_text())
    raise AssertionError("no peak usage file in this memory cgroup")


def test_the_daemon_lives_under_its_unit_limits_through_a_neighbours_oom_kill(tmp_path, workload):
    cap, adjust = size(unit_setting("MemoryMax")), int(unit_setting("OOMScoreAdjust"))

    def as_the_unit_runs_it(procs: Path) -> None:
        procs.write_text(str(os.getpid()))
        # a negative score needs CAP_SYS_RESOURCE; systemd, too, ignores the refusal in a container
        with contextlib.suppress(PermissionError):
            Path("/proc/self/oom_score_adj").write_text(str(adjust))

    with http_receiver() as receiver, memory_cgroup(cap) as home:
        procs = procs_file(home)
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{tmp_path}/s"\n'
                          f'[alerts]\nurls = ["{receiver.url}"]\n')
        policy.chmod(0o600)
        daemon = Daemon(policy, preexec_fn=lambda: as_the_unit_runs_it(procs))
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 60)
            applied = int(Path(f"/proc/{daemon.process.pid}/oom_score_adj").read_text())
            assert applied == adjust or not has_sys_resource(), applied
            leak_to_kill(daemon, workload)
            wait_for_len(receiver.payloads, 2)
            peak, alive = peak_usage(home), daemon.process.poll() is None
        finally:
            code, _ = daemon.stop()
        own_kills = oom_kills_in(home)
    print(f"daemon peak {peak / MIB:.1f} MiB under MemoryMax {cap / MIB:.0f} MiB, oom_score_adj {applied} "
          f"(the unit's {adjust}{'' if applied == adjust else ': refused here, no CAP_SYS_RESOURCE'})")
    assert alive and code == 0 and own_kills == 0, "\n".join(daemon.seen[-20:])
    assert len(receiver.payloads) == 2 and peak < cap
