"""Deep sampling on the real kernel: a program leaking through one named function among other allocating
ones is alerted with that function first in the critical alert and the confirmation; a program leaking
kernel memory (pipe buffers) is attributed to the kernel call site; `status --alert` prints the report."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bcc import BPF

from oomguard.bpf.events import SOURCE_PAGE
from oomguard.evidence.symbols import Symbolizer

from support import Daemon, http_receiver, leak_policy, memory_cgroup, start_in, wait_for_len

pytestmark = pytest.mark.kernel
MIB = 1 << 20
SITE_LINE = re.compile(r"^\s+(\d+)% (\S+)\s+(.+)$")


def sites_in(body: str) -> list[tuple[int, str]]:
    """(share %, site) of the message's call-site section, in its order."""
    section = body.split("Allocation call sites", 1)[1].split("Memory of the cgroup", 1)[0]
    return [(int(m.group(1)), m.group(3)) for line in section.splitlines() if (m := SITE_LINE.match(line))]


def run_to_kill(tmp_path: Path, argv: list[str], limit: int) -> tuple[list[dict], Path, str]:
    """Run argv in a fresh limited cgroup under a daemon until the kernel kills it: (the payloads, the
    policy, the daemon's output)."""
    with http_receiver() as receiver, memory_cgroup(limit) as cgroup:
        policy = leak_policy(tmp_path, tmp_path / "s", f'[alerts]\nurls = ["{receiver.url}"]\nchart = false\n')
        daemon = Daemon(policy)
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 60)
            leaker = start_in(cgroup, *argv)
            assert leaker.wait(timeout=120) == -9, "the kernel did not kill the leaker"
            daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 15)
            wait_for_len(receiver.payloads, 2, 10)
        finally:
            daemon.stop()
        return list(receiver.payloads), policy, "\n".join(daemon.seen)


def critical_and_confirmed(payloads: list[dict]) -> tuple[dict, dict]:
    critical = [p for p in payloads if re.match(r"\[oomguard\] pre-OOM (critical|escalated to critical)",
                                                p["title"])]
    confirmed = [p for p in payloads if p["title"].startswith("[oomguard] confirmed")]
    assert critical and confirmed, [p["title"] for p in payloads]
    return critical[0], confirmed[0]


def test_the_leaking_function_is_named_first_in_the_critical_alert_and_the_confirmation(tmp_path, callsites):
    # 4 MiB/s through leak_in_parse_cache() into 160 MiB, beside an 8 MiB table filled once and 256 KiB
    # mapped and unmapped per MiB leaked
    payloads, policy, output = run_to_kill(tmp_path, [str(callsites), "pages", "400", "100"], 160 * MIB)
    critical, confirmed = critical_and_confirmed(payloads)
    for message in (critical, confirmed):
        sites = sites_in(message["message"])
        assert sites and sites[0][1].startswith("leak_in_parse_cache [callsites]"), (message["message"], output[-3000:])
        assert sites[0][0] >= 60, sites  # the churn allocates a quarter as much
    print(critical["message"].split("\n\n")[-1])  # the evidence section, for the log
    alert_id = critical["message"].split()[1]
    assert confirmed["message"].count(alert_id) >= 1
    assert "Memory of the cgroup: anon " in confirmed["message"]
    # the full report went with it as an attachment, and stays for `status --alert`
    attached = {a["filename"]: base64.b64decode(a["base64"]).decode() for a in confirmed.get("attachments", [])}
    assert f"{alert_id}.txt" in attached, confirmed.keys()
    status = subprocess.run([sys.executable, "-m", "oomguard.cli", "status", "-c", str(policy), "--alert", alert_id],
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert f"oomguard evidence for alert {alert_id}" in status.stdout
    lines = status.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if "%" in line and "[callsites]" in line)
    assert "leak_in_parse_cache [callsites]" in lines[first] and "main [callsites]" in "\n".join(lines[first:first + 6])
    assert re.search(r"smaps_rollup of pid \d+ \(ogcallsites\), the heaviest allocator: Rss ", status.stdout)
    missing = subprocess.run([sys.executable, "-m", "oomguard.cli", "status", "-c", str(policy), "--alert", "0bad"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no evidence saved for alert '0bad'" in missing.stderr


def test_kernel_memory_is_attributed_to_the_kernel_call_site(tmp_path, callsites):
    # 1 MiB of pipe buffers a step, 3 MiB/s, into 128 MiB: memory the process does not map
    payloads, _, output = run_to_kill(tmp_path, [str(callsites), "pipes", "400", "133"], 128 * MIB)
    critical, confirmed = critical_and_confirmed(payloads)
    for message in (critical, confirmed):
        sites = sites_in(message["message"])
        # pipe_write on 6.1, anon_pipe_write on 6.18: the kernel's own name for the site
        assert sites and re.match(r"kernel: (anon_)?pipe_write <- ", sites[0][1]), (message["message"], output[-3000:])
        assert sites[0][0] >= 80, sites


def rss_anon_kib() -> int:
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("RssAnon:"))
    return int(line.split()[1])


def test_only_suspects_are_deep_sampled_and_their_stacks_are_named_outside_this_process(tracer, callsites, workload):
    suspect = subprocess.Popen([str(callsites), "pages", "40", "4"], stdout=subprocess.DEVNULL)
    other = subprocess.Popen([str(workload), "leak", "40", "4"], stdout=subprocess.DEVNULL)
    names = Symbolizer()  # stacks are named in its child, while the process lives
    before = rss_anon_kib()
    try:
        tracer.set_deep_pids({suspect.pid: 1})
        time.sleep(3)
        sites = tracer.deep_sites()
        named = names.name([(suspect.pid, s.user_stack, s.kernel_stack) for s in sites if s.kernel_stack])
        child = names.helper._child
        assert child is not None and names.running and names.failure == ""
    finally:
        names.close()
        tracer.set_deep_pids({})
        for p in (suspect, other):
            p.kill()
            p.wait()
    assert {s.pid for s in sites} == {suspect.pid}, "a process outside the set was deep-sampled"
    page_bytes = sum(s.bytes for s in sites if s.source == SOURCE_PAGE)
    assert 20 * MIB < page_bytes < 80 * MIB, page_bytes  # ~30 MiB touched in 3 s, weighted estimate
    # every sample keeps its stacks (no shared stack map whose taken buckets refuse a second stack)
    walked = sum(s.bytes for s in sites if s.user_stack and s.kernel_stack)
    assert walked >= 0.99 * sum(s.bytes for s in sites), [(s.user_stack[:2], s.kernel_stack[:2]) for s in sites]
    # named in the child: the test process (like the daemon) loads no symbol table of its own
    assert any("handle_mm_fault" in kernel for _, kernel in named), named[:3]
    assert any(frame.startswith("leak_in_parse_cache [callsites]") for user, _ in named for frame in user), named[:3]
    assert BPF._sym_caches == {}, "a symbol table was loaded in this process: bcc's stray close would hit its fds"
    assert rss_anon_kib() - before < 4096, "the kernel's symbol table (~13 MiB) was loaded here, not in the child"
    assert child.returncode == 0  # closing stopped the child: its tables went with it
    # every map of the tracer is still open (bcc < 0.33 closes a random fd of the process that names stacks)
    assert tracer.sample_rate(SOURCE_PAGE) >= 1 and {s.pid for s in tracer.deep_sites()} <= {suspect.pid}
