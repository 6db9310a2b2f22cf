"""`oomguard run` end to end: live rates, a real OOM kill, and a clean stop on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest
from PIL import Image

from support import Daemon, memory_cgroup, our_program_names, procs_file, smtp_server

pytestmark = pytest.mark.kernel
MIB = 1 << 20


def test_a_kill_in_a_kubernetes_container_is_fully_attributed(tmp_path, workload):
    uid = "4d6c8e2a-1b3f-4a5c-9d7e-0f1a2b3c4d5e"
    container_id = "9f8e7d6c5b4a" + "0" * 52
    pods = tmp_path / "log" / "pods"
    (pods / f"shop_cart-7d9f_{uid}" / "app").mkdir(parents=True)
    (tmp_path / "log" / "containers").mkdir()
    (tmp_path / "log" / "containers" / f"cart-7d9f_shop_app-{container_id}.log").symlink_to(
        pods / f"shop_cart-7d9f_{uid}" / "app")
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{tmp_path / "state"}"\n'
                      f'[attribution]\npods_log_dir = "{pods}"\n'
                      f'containers_log_dir = "{tmp_path / "log" / "containers"}"\n')
    daemon = Daemon(policy)
    try:
        daemon.wait_for(lambda l: "tracing kmalloc" in l, 30)
        # named as a kubelet with the cgroupfs driver names them, under the test's own memory cgroup
        with memory_cgroup(64 * MIB, relative=f"kubepods/burstable/pod{uid}/{container_id}") as cgroup:
            procs = procs_file(cgroup)
            hog = subprocess.Popen([str(workload), "hog", "500"],
                                   preexec_fn=lambda: procs.write_text(str(os.getpid())))
            assert hog.wait(timeout=30) == -9
            line = daemon.wait_for(lambda l: l.startswith("OOM KILL"), 5)
    finally:
        code, _ = daemon.stop()
    assert code == 0, "\n".join(daemon.seen[-30:])
    for part in (f"pid {hog.pid} (ogworkload)", "pod shop/cart-7d9f container app",
                 f"container {container_id[:12]}, pod {uid}", f"/kubepods/burstable/pod{uid}/{container_id}",
                 "CONSTRAINT_MEMCG, limit 64.0MiB of ", f"pod{uid}/{container_id};"):
        assert part in line, (part, line)
    assert "DISAGREE" not in line and "no kernel log line" not in line


def test_run_shows_rates_and_a_real_oom_kill_then_stops_clean(tmp_path, workload):
    policy = tmp_path / "policy.toml"
    policy.write_text('[sampling]\ninterval = "500ms"\ninitial_rate = 1\n[output]\ntop_pids = 5\n'
                      f'[state]\ndir = "{tmp_path / "state"}"\n')
    daemon = Daemon(policy)
    leaker = None
    try:
        daemon.wait_for(lambda l: "tracing kmalloc" in l, 30)
        leaker = subprocess.Popen([str(workload), "leak", "256", "20"], stdout=subprocess.DEVNULL)
        # the leaker's row: ~12.8 MiB/s of pages
        row = daemon.wait_for(lambda l: l.split()[:2] == [str(leaker.pid), "ogworkload"], 10)
        page_rate = row.split()[3]
        assert page_rate.endswith("MiB"), row
        assert 4 <= float(page_rate[:-3]) <= 40, row
        with memory_cgroup(64 * MIB) as cgroup:
            procs = procs_file(cgroup)
            hog = subprocess.Popen([str(workload), "hog", "500"],
                                   preexec_fn=lambda: procs.write_text(str(os.getpid())))
            assert hog.wait(timeout=30) == -9
            kill = daemon.wait_for(lambda l: l.startswith("OOM KILL"), 5)
        assert f"pid {hog.pid} (ogworkload)" in kill
    finally:
        if leaker:
            leaker.kill()
            leaker.wait()
        code, took = daemon.stop()
    assert code == 0
    assert took < 2.0
    time.sleep(0.2)  # detached raw-tracepoint programs are freed after an RCU grace period
    assert not {"kmalloc", "mm_page_alloc"} & our_program_names()


def test_sighup_reloads_a_valid_policy_keeps_the_old_on_an_invalid_one_and_status_reads_the_state(tmp_path):
    state = tmp_path / "state"
    policy = tmp_path / "policy.toml"
    good = f'[sampling]\ninterval = "300ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{state}"\n'
    policy.write_text(good)
    daemon = Daemon(policy)
    try:
        daemon.wait_for(lambda l: "tracing kmalloc" in l, 30)
        deadline = time.monotonic() + 5
        while not (state / "status.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        status = subprocess.run([sys.executable, "-m", "oomguard.cli", "status", "-c", str(policy)],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0, status.stderr
        assert f"oomguard running: pid {daemon.process.pid}" in status.stdout
        assert "sample rate: kmalloc 1-in-" in status.stdout

        policy.write_text(good + '[selection]\nexclude_commands = ["ogworkload"]\n')
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda l: "process selection" in l and "ogworkload" in l, 5)
        daemon.wait_for(lambda l: "policy reloaded" in l, 1)

        policy.write_text(good + "[sampling]\ninterval = 'soon'\n")  # invalid (and a duplicate table)
        daemon.process.send_signal(signal.SIGHUP)
        line = daemon.wait_for(lambda l: "new policy rejected" in l, 5)
        assert "keeping the old one" in line and str(policy) in line
        assert daemon.process.poll() is None  # still running
    finally:
        code, took = daemon.stop()
    assert code == 0 and took < 2.0
    # stopped: `status` says so and fails
    status = subprocess.run([sys.executable, "-m", "oomguard.cli", "status", "-c", str(policy.with_name("p2.toml"))],
                            capture_output=True, text=True, timeout=30)
    assert status.returncode != 0


def test_a_real_oom_kill_gives_a_pre_oom_email_and_its_confirmation(tmp_path, workload):

    with smtp_server() as (mailbox, url):
        policy = tmp_path / "policy.toml"
        policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n'
                          f'[alerts]\nurls = ["{url}"]\nhorizon = "60s"\n[state]\ndir = "{tmp_path / "state"}"\n')
        policy.chmod(0o600)
        daemon = Daemon(policy)
        try:
            daemon.wait_for(lambda l: "tracing kmalloc" in l, 30)
            with memory_cgroup(128 * MIB) as cgroup:
                procs = procs_file(cgroup)
                # quiet for 5 s, then ~10 MiB/s into 128 MiB: a climb of 5 s is a trend, the kill ~12 s in
                leaker = subprocess.Popen([str(workload), "leak", "300", "30", "5"], stdout=subprocess.DEVNULL,
                                          preexec_fn=lambda: procs.write_text(str(os.getpid())))
                pre = daemon.wait_for(lambda l: l.startswith("ALERT pre-OOM"), 15)
                assert leaker.wait(timeout=30) == -9
                confirmed = daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 5)
            deadline = time.monotonic() + 10
            while len(mailbox.messages) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            code, _ = daemon.stop()
    assert code == 0, "\n".join(daemon.seen[-30:])
    alert_id = pre.split()[2].rstrip(":")
    assert confirmed.split()[2].rstrip(":") == alert_id
    subjects = mailbox.subjects()
    assert len(subjects) == 2, subjects
    assert subjects[0].startswith("[oomguard] pre-OOM critical on ")
    assert subjects[1].startswith("[oomguard] confirmed on ")
    pre_body, confirm_body = mailbox.body(0), mailbox.body(1)
    assert f"Alert {alert_id}" in pre_body and f"pid: {leaker.pid}" in pre_body
    assert "command: ogworkload" in pre_body and "cgroup: /" in pre_body and cgroup.name in pre_body
    assert "forecast time to OOM: " in pre_body and "of limit 128.0MiB" in pre_body
    assert f"Confirms pre-OOM alert {alert_id}" in confirm_body and "Lead time: " in confirm_body
    assert "allocation rate (last tick): kmalloc " in confirm_body and "of limit 128.0MiB" in confirm_body
    lead = float(confirm_body.split("Lead time: ")[1].split("s")[0])
    assert lead >= 1
    # charts of its cgroup, drawn in a child process: the climb, the limit, then the kill. The warning waits
    # for its chart only DECORATE_WITHIN_S: a chart that missed it comes with the confirmation.
    charts = [Image.open(io.BytesIO(png)) for i in (0, 1) for png in mailbox.pngs(i)]
    titles = sorted(image.info["Title"].split(" on ")[0] for image in charts)
    assert titles == ["confirmed", "pre-OOM critical"], titles
    for i, image in enumerate(charts):
        assert image.format == "PNG" and image.size == (800, 360)
        assert image.info["Description"].endswith(cgroup.name), image.info
        image.save(tmp_path / f"chart-{i}.png")  # kept with the test's files, to look at
    assert [Image.open(io.BytesIO(png)).info["Title"] for png in mailbox.pngs(1)][-1].startswith("confirmed")
