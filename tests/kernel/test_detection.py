"""The forecast on real pods under one daemon: a container leaking from its first second is alerted well
before the kernel's kill and confirmed after it, with the leaker named among busier healthy processes;
a healthy sawtooth pod and a spiking pod beside it draw nothing; under a limit on the pod, the leaking
container is named over a sidecar whose sawtooth rises faster half the time."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from support import Daemon, http_receiver, leak_policy, memory_cgroup, set_memory_limit, start_in, wait_for_len

pytestmark = pytest.mark.kernel
MIB = 1 << 20
PODS = {  # name: (pod uid, container id, limit)
    "leaky": ("1a1a1a1a-0000-4000-8000-000000000001", "a1" * 32, 200 * MIB),
    "sawtooth": ("2b2b2b2b-0000-4000-8000-000000000002", "b2" * 32, 256 * MIB),
    "spiky": ("3c3c3c3c-0000-4000-8000-000000000003", "c3" * 32, 256 * MIB),
}




def test_a_pod_leaking_from_birth_is_alerted_ahead_and_healthy_neighbours_are_not(tmp_path, workload):
    w = str(workload)
    with http_receiver() as receiver, memory_cgroup(8 << 30, relative="kubepods/burstable") as burstable:
        daemon = Daemon(leak_policy(tmp_path, tmp_path / "s", f'[alerts]\nurls = ["{receiver.url}"]\n'))
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 60)
            cgroups = {}
            for name, (uid, cid, limit) in PODS.items():  # as a kubelet with the cgroupfs driver makes them
                cgroups[name] = burstable / f"pod{uid}" / cid
                cgroups[name].mkdir(parents=True)
                set_memory_limit(cgroups[name], limit)
            started = time.monotonic()
            # leaky: 4 MiB/s from its first second into 200 MiB, beside two busier healthy processes
            # (page faults on memory it unmaps, kmalloc-heavy syscalls)
            leaker = start_in(cgroups["leaky"], w, "leak", "400", "100")
            busy = [start_in(cgroups["leaky"], w, "fault-for", "90"), start_in(cgroups["leaky"], w, "poll-for", "90")]
            # sawtooth: 60 MiB over 4 s then freed, again and again (peaks at 23% of its limit). A cycle of
            # 5 s or more is not used here: its first climb, from birth, is a leak until the first drop (see
            # README "Detection": the first cycle of a slow sawtooth may draw one alert, cleared later).
            # OPEN: at 120 MiB (47%) a fresh-clone CI run sometimes saw "kept memory climbing 10 MiB/s for
            # 8s" on this pod, which a 4 s cycle sampled every 0.5 s cannot make; cause not found yet.
            saw = start_in(cgroups["sawtooth"], w, "sawtooth", "60", "4", "80")
            # spiky: a steady process, and 3 s spikes to ~80% of the limit at 3 s, 30 s and 60 s of age
            steady = start_in(cgroups["spiky"], w, "poll-for", "90")
            spikes = []
            for at in (3, 30, 60):
                time.sleep(max(0.0, started + at - time.monotonic()))
                spikes.append(start_in(cgroups["spiky"], w, "spike", "200", "1.5", "1.5"))
                assert leaker.poll() is None or at == 60, f"the leaker died before {at}s"
            assert leaker.wait(timeout=60) == -9
            killed_after = time.monotonic() - started
            confirmed = daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 10)
            for p in spikes:  # exit 4: its rise took a second longer than asked (an overloaded machine)
                assert p.wait(timeout=30) == 0, "a spike was not the 3 s spike this test needs (see its stderr)"
            time.sleep(max(0.0, started + 75 - time.monotonic()))  # the neighbours keep running after the kill
            assert saw.poll() is None and steady.poll() is None
            wait_for_len(receiver.payloads, 2)
        finally:
            code, _ = daemon.stop()
            for p in busy:
                p.kill()
    alerts = [p["title"] for p in receiver.payloads]
    assert code == 0, "\n".join(daemon.seen[-30:])
    leaky_id = PODS["leaky"][1][:12]
    wrong = [p["title"] + ": " + p["message"].split("\n")[1] for p in receiver.payloads
             if p["title"].startswith("[oomguard] pre-OOM ") and leaky_id not in p["title"]]
    assert not wrong, wrong
    lead = float(confirmed.split(" foreseen ")[1].split("s ahead")[0])
    print(f"leak from birth killed {killed_after:.0f}s after start; first alert {lead:.0f}s before the kill; "
          f"alerts: {alerts}")
    assert lead >= 10, alerts
    first = receiver.payloads[0]
    assert first["title"].startswith("[oomguard] pre-OOM "), first["title"]
    culprits = first["message"].split("Culprits: ")[1].split("\n")[0]
    assert culprits.startswith(f"pid {leaker.pid} (ogworkload)"), first["message"]
    assert "forecast time to OOM: " in first["message"] and "What to do: " in first["message"]
    # when, absolute and relative (the interval only when its bounds differ)
    assert re.search(r"looks likely at 20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ, in \d+s", first["message"]), first["message"]


def first_alert_about(tmp_path: Path, workload: Path, leaker_argv: tuple[str, ...]) -> tuple[dict, int]:
    """Run `leaker_argv` beside two busier healthy processes (page faults on memory they unmap,
    kmalloc-heavy syscalls) in a 160 MiB cgroup under a daemon: (its first pre-OOM payload, the leaker's pid)."""
    w = str(workload)
    with http_receiver() as receiver, memory_cgroup(160 * MIB) as cgroup:
        daemon = Daemon(leak_policy(tmp_path, tmp_path / "s", f'[alerts]\nurls = ["{receiver.url}"]\nchart = false\n'))
        processes = []
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 60)
            processes += [start_in(cgroup, w, "fault-for", "60"), start_in(cgroup, w, "poll-for", "60")]
            leaker = start_in(cgroup, w, *leaker_argv)
            processes.append(leaker)
            first = first_payload(daemon, receiver, cgroup.name, 45)
        finally:
            stop_all(daemon, processes)
    return first, leaker.pid


def first_payload(daemon: Daemon, receiver, key: str, within: float) -> dict:
    """The first pre-OOM payload about `key` (in its title or message), after the daemon logs its alert within
    `within` s. Other tests' cgroups may alert meanwhile: only this one's payload counts."""
    daemon.wait_for(lambda l: l.startswith("ALERT pre-OOM") and key in l, within)
    deadline = time.monotonic() + 10
    while not (ours := [p for p in receiver.payloads if key in p["title"] + p["message"]]):
        assert time.monotonic() < deadline, [p["title"] for p in receiver.payloads]
        time.sleep(0.2)
    return ours[0]


def stop_all(daemon: Daemon, processes: list) -> None:
    daemon.stop()
    for p in processes:
        p.kill()
        p.wait()


def culprits_of(message: dict) -> str:
    return message["message"].split("Culprits: ")[1].split("\n")[0]


def test_a_memfd_writer_among_busier_processes_is_named_by_the_shared_memory_it_holds(tmp_path, workload):
    # 4 MiB/s written into a memfd with write(): the cgroup is charged, the writer's RSS stays flat
    first, writer = first_alert_about(tmp_path, workload, ("memfd", "200", "50"))
    culprits = culprits_of(first)
    print(culprits)
    assert culprits.startswith(f"pid {writer} (ogworkload)"), first["message"]
    share = int(culprits.split("% of shared memory held (memfd/tmpfs) (")[0].rsplit(" ", 1)[1])
    assert share >= 95, culprits


def test_pipes_never_closed_are_named_by_the_descriptors_their_process_opens(tmp_path, workload):
    # 3 MiB/s of 16 KiB pipe buffers, never read or closed (128 fds a MiB, ~380 a second): kernel memory, no
    # RSS. The daemon counts each process's descriptors when its container starts under it (in its first
    # minute) or when the climb is first seen; the alert names the process by how many it opened since
    first, leaker = first_alert_about(tmp_path, workload, ("pipes", "200", "66"))
    culprits = culprits_of(first)
    print(culprits)
    assert culprits.startswith(f"pid {leaker} (ogworkload)"), first["message"]
    named = culprits.split(", pid ")[0]
    assert "% of files and sockets opened since the climb or container began (+" in named, culprits
    per_second = int(named.rsplit("(+", 1)[1].split("/s)")[0].replace(",", ""))
    assert 150 <= per_second <= 600, culprits  # ~380 a second, as the workload opens them


def test_a_limit_on_the_pod_names_the_leaking_container_not_its_sawing_sidecar(tmp_path, workload):
    # The limit is on the pod, its two containers have none (as Kubernetes sets a pod-level limit). The
    # sidecar saws: 80 MiB over 10 s, freed, again - half the time its RSS rises faster than the leak. The
    # app is quiet for 25 s, then leaks 3 MiB/s until the pod's limit kills it.
    w, uid = str(workload), "4d4d4d4d-0000-4000-8000-000000000004"
    app, sidecar = "d4" * 32, "e5" * 32
    with http_receiver() as receiver, memory_cgroup(300 * MIB, relative=f"kubepods/burstable/pod{uid}") as pod:
        daemon = Daemon(leak_policy(tmp_path, tmp_path / "s", f'[alerts]\nurls = ["{receiver.url}"]\nchart = false\n'))
        processes = []
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 60)
            if (pod / "cgroup.subtree_control").exists():  # v2: the containers get the controller, as kubelet's do
                (pod / "cgroup.subtree_control").write_text("+memory")
            for container in (app, sidecar):
                (pod / container).mkdir()
            processes.append(start_in(pod / sidecar, w, "sawtooth", "80", "10", "180"))
            leaker = start_in(pod / app, w, "leak", "500", "166", "25")
            processes.append(leaker)
            first = first_payload(daemon, receiver, uid, 150)
        finally:
            stop_all(daemon, processes)
    message = first["message"]
    print(message)
    culprits = culprits_of(first)
    assert culprits.startswith(f"pid {leaker.pid} (ogworkload)") and "% of RSS growth (" in culprits, message
    containers = message.split("Containers under this limit: ")[1].split("\n")[0]
    top, share = containers.split(", ")[0].rsplit(" ", 1)
    assert top == app[:12] and int(share.rstrip("%")) >= 80, containers
    # the alert is the pod's: not its busiest container's (the sidecar allocates most)
    assert first["title"].endswith(f": pod uid {uid} (limit on the pod, 2 containers growing)"), first["title"]
    assert "container: several, each with its share above" in message, message
