"""The service under a real (throw-away) systemd and journald: install, READY=1, a real kill with its alerts
as journal entries with OOMGUARD_* fields, watchdog restart, clean stop."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from support import CONTAINER_ID, POD_UID, HttpReceiver, booted_systemd, memory_cgroup, procs_file, require

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
# Inside the namespace's private /run: gone with it.
PREFIX = "/run/oomguard-test"
LAYOUT = [f"PREFIX={PREFIX}", f"LIBDIR={PREFIX}/lib", f"SYSCONFDIR={PREFIX}/etc", "UNITDIR=/run/systemd/system"]
TEST_DROP_IN = """[Unit]
# the test boots no sysinit.target: do not pull it in
DefaultDependencies=no
[Service]
# These two make systemd mount a fresh /proc for the service. On a real host
# that shows every process; inside this test's PID namespace it would show
# only the namespace's, not the host pids the kernel reports.
ProtectKernelTunables=no
ProtectControlGroups=no
WatchdogSec=3s
"""
# The throw-away journald keeps its journal in the namespace's private /run, never the host's /var/log.
JOURNALD_CONF = "[Journal]\nStorage=volatile\n"


def program_names() -> list[str]:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], check=True, capture_output=True, text=True).stdout
    return [p.get("name", "") for p in json.loads(out)]


def journal(systemd) -> str:
    return systemd.run("journalctl", "--no-pager", "-o", "cat", check=False).stdout


def journal_entries(systemd, *matches: str) -> list[dict]:
    out = systemd.run("journalctl", "--no-pager", "-o", "json", *matches, check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_service_lifecycle_under_systemd(tmp_path, workload):
    require(Path("/lib/systemd/systemd").exists(), "systemd not installed: apt-get install systemd")
    require(shutil.which("make") is not None, "make not installed")
    with booted_systemd(tmp_path / "boot.log") as systemd:
        systemd.run("sh", "-c", f"mkdir -p /run/systemd/journald.conf.d && printf '{JOURNALD_CONF}' > "
                                "/run/systemd/journald.conf.d/test.conf")
        systemd.run("systemctl", "start", "systemd-journald.service", timeout=60)
        install = systemd.run("make", "-C", str(ROOT), "install", *LAYOUT, check=False, timeout=600)
        assert install.returncode == 0, install.stdout + install.stderr
        # the unit as installed, before the test's drop-in
        security = systemd.run("systemd-analyze", "security", "oomguard.service", check=False).stdout
        exposure = re.search(r"Overall exposure level for oomguard.service: ([0-9.]+) (\w+)", security)
        assert exposure and float(exposure.group(1)) <= 5.0, security[-1500:]
        print(f"systemd-analyze security: {exposure.group(1)} {exposure.group(2)}")

        systemd.run("sh", "-c", f"mkdir -p /run/systemd/system/oomguard.service.d && cat > "
                                f"/run/systemd/system/oomguard.service.d/test.conf <<'EOF'\n{TEST_DROP_IN}EOF")
        receiver = HttpReceiver()
        receiver.start()
        # the kubelet's pod logs, for pod names (inside the namespace's /run)
        pod_dir = f"{PREFIX}/log/pods/shop_cart-7d9f_{POD_UID}/app"
        systemd.run("sh", "-c", f"mkdir -p {pod_dir} {PREFIX}/log/containers && ln -s {pod_dir} "
                                f"{PREFIX}/log/containers/cart-7d9f_shop_app-{CONTAINER_ID}.log")
        policy = (f'[sampling]\ninterval = "500ms"\n[alerts]\nurls = ["{receiver.url}"]\nhorizon = "60s"\n'
                  f'[attribution]\npods_log_dir = "{PREFIX}/log/pods"\n'
                  f'containers_log_dir = "{PREFIX}/log/containers"\n')
        systemd.run("sh", "-c", f"umask 077; cat > {PREFIX}/etc/oomguard/config.toml <<'EOF'\n{policy}EOF")

        verify = systemd.run("systemd-analyze", "verify", "/run/systemd/system/oomguard.service", check=False)
        assert verify.returncode == 0 and "oomguard.service" not in verify.stderr, verify.stderr

        systemd.run("systemctl", "daemon-reload")
        systemd.run("systemctl", "enable", "--runtime", "--now", "oomguard.service", timeout=120)
        state = systemd.show("oomguard", "ActiveState", "SubState", "MainPID", "Type")
        assert (state["ActiveState"], state["SubState"], state["Type"]) == ("active", "running", "notify"), state
        first_pid = state["MainPID"]
        systemd.wait_until(lambda: "kmalloc 1-in-" in systemd.show("oomguard", "StatusText")["StatusText"], 10,
                           "STATUS= with the sample rates")
        assert {"kmalloc", "mm_page_alloc"} <= set(program_names())

        # a process leaking into a limited memory cgroup: pre-OOM alert, real OOM kill, confirmation
        try:
            with memory_cgroup(128 * MIB, relative=f"kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}") as cgroup:
                procs = procs_file(cgroup)
                leaker = subprocess.Popen([str(workload), "leak", "300", "30", "5"], stdout=subprocess.DEVNULL,
                                          preexec_fn=lambda: procs.write_text(str(os.getpid())))
                assert leaker.wait(timeout=30) == -9
            systemd.wait_until(lambda: "1 OOM kills seen" in systemd.show("oomguard", "StatusText")["StatusText"],
                               10, "the kill in STATUS=")
            try:
                systemd.wait_until(lambda: len(receiver.payloads) >= 2, 10, "two alerts at the receiver")
            except AssertionError as failure:
                raise AssertionError(f"{failure}; {receiver.payloads}; service log:\n"
                                     + journal(systemd)[-3000:]) from None
        finally:
            receiver.stop()
        titles = [p["title"] for p in receiver.payloads]
        assert titles[0].startswith("[oomguard] pre-OOM critical on "), titles
        assert titles[1].startswith("[oomguard] confirmed on "), titles
        assert "Confirms pre-OOM alert" in receiver.payloads[1]["message"]
        log = journal(systemd)
        assert f"OOM KILL  pid {leaker.pid} (ogworkload)" in log, log[-3000:]
        # a quiet service: no per-tick table in the journal (500 ms ticks for ~20 s would be 40+ of each),
        # a sampling line only when a sample rate changed, and one summary line
        ticks = [line for line in log.splitlines() if "sampling  kmalloc" in line]
        print(f"journal: {len(log.splitlines())} lines, {len(ticks)} sampling lines")
        assert "PID COMMAND" not in log and len(ticks) <= 6, log[-3000:]
        assert sum("limited cgroups; sample rates" in line for line in log.splitlines()) >= 1, log[-3000:]
        # each alert is one native journal entry with its fields, found by them
        entries = journal_entries(systemd, "OOMGUARD_POD=cart-7d9f")
        kinds = [e["OOMGUARD_KIND"] for e in entries]
        assert kinds == ["pre-OOM", "confirmed"], entries
        pre, confirmed = entries
        alert_id = receiver.payloads[0]["message"].split()[1]
        for entry in (pre, confirmed):
            assert entry["OOMGUARD_ALERT_ID"] == alert_id and entry["OOMGUARD_NAMESPACE"] == "shop"
            assert entry["OOMGUARD_CONTAINER"] == "app" and entry["SYSLOG_IDENTIFIER"] == "oomguard"
            assert entry["OOMGUARD_CGROUP"].endswith(f"/kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}")
        assert pre["OOMGUARD_SEVERITY"] == "critical" and pre["PRIORITY"] == "4"  # warning
        assert confirmed["PRIORITY"] == "3" and pre["MESSAGE"].startswith(f"ALERT pre-OOM {alert_id}: ")
        assert journal_entries(systemd, "OOMGUARD_POD=no-such-pod") == []

        # a stuck main loop: the watchdog kills and restarts it
        systemd.run("kill", "-STOP", first_pid)
        systemd.wait_until(lambda: (lambda s: s["NRestarts"] == "1" and s["SubState"] == "running"
                                    and s["MainPID"] not in ("0", first_pid))(
            systemd.show("oomguard", "NRestarts", "SubState", "MainPID")), 45, "watchdog restart")

        systemd.run("systemctl", "stop", "oomguard.service", timeout=30)
        assert systemd.show("oomguard", "ActiveState")["ActiveState"] == "inactive"
        systemd.wait_until(lambda: not {"kmalloc", "mm_page_alloc"} & set(program_names()), 3,
                           "programs detached after stop")
        uninstall = systemd.run("make", "-C", str(ROOT), "uninstall", *LAYOUT, check=False, timeout=120)
        assert uninstall.returncode == 0, uninstall.stderr
        assert systemd.run("test", "-e", "/run/systemd/system/oomguard.service", check=False).returncode == 1
        assert systemd.run("test", "-e", f"{PREFIX}/bin/oomguard", check=False).returncode == 1
