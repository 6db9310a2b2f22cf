"""Run inside a VM guest (tests/vm boots it): cgroup v2 for real, as a kubelet with the systemd driver lays it out.

Never run on the host: the host's memory controller is v1. Each test says what the guest showed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from support import (
    Daemon,
    http_receiver,
    memory_cgroup,
    oom_kills_in,
    pods_tree,
    require,
    start_in,
    wait_for_len,
    wait_until,
)

pytestmark = pytest.mark.kernel
MIB = 1 << 20
V2 = Path("/sys/fs/cgroup")
UID = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
LEAKY_ID = "c0ffee" + "1" * 58
QUIET_ID = "deadbe" + "2" * 58
CONFIRMED = "[oomguard] confirmed on "
POD_SLICE = ("kubepods.slice/kubepods-burstable.slice/"
             f"kubepods-burstable-pod{UID.replace('-', '_')}.slice")


@pytest.fixture(autouse=True)
def _on_cgroup_v2():
    controllers = (V2 / "cgroup.controllers").read_text().split() if (V2 / "cgroup.controllers").exists() else []
    require("memory" in controllers, "not a cgroup v2 host with the memory controller: run through tests/vm")




def guest_policy(tmp_path: Path, receiver_url: str, pods: Path, containers: Path) -> Path:
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{tmp_path / "s"}"\n'
                      f'[metrics]\nlisten = ""\n[alerts]\nurls = ["{receiver_url}"]\nchart = false\n'
                      f'[attribution]\npods_log_dir = "{pods}"\ncontainers_log_dir = "{containers}"\n')
    policy.chmod(0o600)
    return policy


def test_a_systemd_driver_pod_leaks_to_a_v2_oom_kill_alerted_confirmed_and_named(tmp_path, workload):
    pods, containers = pods_tree(tmp_path, UID, LEAKY_ID)
    scope = f"{POD_SLICE}/cri-containerd-{LEAKY_ID}.scope"
    with http_receiver() as receiver, memory_cgroup(128 * MIB, relative=scope) as leaky:
        quiet = leaky.parent / f"cri-containerd-{QUIET_ID}.scope"  # a healthy neighbour in the same pod
        quiet.mkdir()
        (quiet / "memory.max").write_text(str(128 * MIB))
        daemon = Daemon(guest_policy(tmp_path, receiver.url, pods, containers))
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 300)  # bcc compiles under emulation: slow
            neighbour = start_in(quiet, str(workload), "poll-for", "60")
            leaker = start_in(leaky, str(workload), "leak", "400", "100")  # ~4 MiB/s from its first second
            assert leaker.wait(timeout=120) == -9
            daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 30)
            wait_for_len(receiver.payloads, 2, 30)
            assert oom_kills_in(leaky) == 1 and oom_kills_in(quiet) == 0  # memory.events, v2
            assert neighbour.poll() is None
            neighbour.kill()
        finally:
            code, _ = daemon.stop()
    assert code == 0, "\n".join(daemon.seen[-40:])
    titles = [p["title"] for p in receiver.payloads]
    assert titles[0].startswith("[oomguard] pre-OOM ") and titles[1].startswith("[oomguard] confirmed on "), titles
    pre, confirmed = receiver.payloads[0]["message"], receiver.payloads[1]["message"]
    for body in (pre, confirmed):
        assert "namespace/pod: shop/cart-7d9f" in body, body
        assert f"cgroup: /{POD_SLICE}/cri-containerd-{LEAKY_ID}.scope" in body, body
    assert f"pod uid: {UID}" in pre and f"container: {LEAKY_ID} (containerd)" in pre, pre
    # deep sampling on this kernel: the leak's call site is in the workload's own code
    sites = confirmed.split("Allocation call sites", 1)[-1].split("Memory of the cgroup", 1)[0]
    assert "[workload]" in sites.splitlines()[1], confirmed
    assert "of limit 128.0MiB" in pre
    assert not any(QUIET_ID[:12] in t for t in titles)
    print(json.dumps({"alerts": titles}))


def test_a_limit_on_the_pod_names_the_pod_and_each_container_share(tmp_path, workload):
    pods, containers = pods_tree(tmp_path, UID, LEAKY_ID)
    with http_receiver() as receiver, memory_cgroup(160 * MIB, relative=POD_SLICE) as pod:
        (pod / "cgroup.subtree_control").write_text("+memory")
        scopes = [pod / f"cri-containerd-{cid}.scope" for cid in (LEAKY_ID, QUIET_ID)]
        for scope in scopes:
            scope.mkdir()  # no limit of their own: the pod's binds them
        daemon = Daemon(guest_policy(tmp_path, receiver.url, pods, containers))
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 300)
            small = start_in(scopes[1], str(workload), "leak", "30", "60")  # 0.5 MiB/s beside the big one
            big = start_in(scopes[0], str(workload), "leak", "400", "100")
            assert big.wait(timeout=120) == -9 or small.wait(timeout=120) == -9
            daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 30)
            wait_for_len(receiver.payloads, 2, 30)
            assert oom_kills_in(pod) == 1
            small.kill()
        finally:
            code, _ = daemon.stop()
    assert code == 0, "\n".join(daemon.seen[-40:])
    pre = receiver.payloads[0]
    assert pre["title"].startswith("[oomguard] pre-OOM ") and "of limit 160.0MiB" in pre["message"], pre
    assert f"cgroup: /{POD_SLICE}\n" in pre["message"], pre["message"]


def test_the_working_set_is_read_from_v2_memory_stat(tmp_path):
    from oomguard.identity.cgroup import MemoryCgroup, headroom

    with memory_cgroup(64 * MIB) as cgroup:
        # page cache charged to the cgroup: a file written from inside it, then left alone
        writer = start_in(cgroup, "sh", "-c", f"head -c {16 * MIB} /dev/zero > {tmp_path / 'cache'}")
        assert writer.wait(timeout=60) == 0
        stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
        current = int((cgroup / "memory.current").read_text())
        room = headroom(MemoryCgroup(2, "/" + cgroup.name))
    assert room is not None and room.limit_bytes == 64 * MIB and room.limited_at == "/" + cgroup.name
    # usage minus inactive file cache, within what a few pages of churn between the reads can move
    assert abs(room.usage_bytes - (current - int(stat["inactive_file"]))) < MIB, (room, current, stat)


def test_a_global_oom_is_foreseen_for_the_machine_confirmed_and_survived(tmp_path, workload):
    """No memcg limit anywhere: the guest's own memory runs out and the kernel kills machine-wide
    (CONSTRAINT_NONE). The daemon runs with the unit's OOMScoreAdjust=-900 and must outlive it."""
    total = int(next(l for l in Path("/proc/meminfo").read_text().splitlines()
                     if l.startswith("MemTotal:")).split()[1]) * 1024
    pods, containers = pods_tree(tmp_path, UID, LEAKY_ID)
    with http_receiver() as receiver:
        daemon = Daemon(guest_policy(tmp_path, receiver.url, pods, containers),
                        preexec_fn=lambda: Path("/proc/self/oom_score_adj").write_text("-900"))
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 300)
            # twice the guest's memory over 100 s (~60 MiB/s on a 3 GiB guest): the kill comes ~40-50 s in
            hog = subprocess.Popen([str(workload), "leak", str(2 * total // MIB), "100"], stdout=subprocess.DEVNULL)
            assert hog.wait(timeout=240) == -9
            kill = daemon.wait_for(lambda l: l.startswith("OOM KILL"), 30)
            daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 30)
            wait_until(lambda: any(p["title"].startswith(CONFIRMED) for p in receiver.payloads), 30)
            assert daemon.process.poll() is None, "the daemon did not survive the machine's OOM"
        finally:
            code, _ = daemon.stop()
    assert code == 0, "\n".join(daemon.seen[-40:])
    assert f"pid {hog.pid} (ogworkload)" in kill and "CONSTRAINT_NONE" in kill, kill
    titles = [p["title"] for p in receiver.payloads]
    pre = receiver.payloads[0]  # a warning that escalates, or a critical: one alert either way
    confirmed = next(p for p in receiver.payloads if p["title"].startswith(CONFIRMED))
    assert pre["title"].startswith("[oomguard] pre-OOM ") and pre["title"].endswith(": host"), titles
    assert len([t for t in titles if t.startswith("[oomguard] pre-OOM ")]) <= 2, titles  # opened (+ escalated)
    alert_id = pre["message"].split()[1]
    assert f"Confirms pre-OOM alert {alert_id}" in confirmed["message"], confirmed
    lead = float(confirmed["title"].rsplit("foreseen ", 1)[1].split("s ahead")[0])
    assert lead >= 10, confirmed["title"]  # warned well before the kill, not in its last seconds
    print("\nglobal OOM:", json.dumps({"alerts": titles, "kill": kill}))
