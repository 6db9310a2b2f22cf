"""Test helper: a throw-away systemd as PID 1 of new PID and mount namespaces.

Private tmpfs over /run and /var/lib/oomguard, so nothing it does there
reaches the host, and systemd-tmpfiles masked, so it can never clean the
shared /tmp; the host's /proc stays (no --mount-proc),
so the service sees host pids, as the kernel reports them, like a real
install; and it boots a target of its own with no
dependencies: none of the host's services, no sysinit (no tmpfiles, udev,
sysctl). Powered off at the end, killed if it will not go.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterator

BOOT = """
set -e
mkdir -p /var/lib/oomguard
for dir in /run /var/lib/oomguard; do mount -t tmpfs tmpfs "$dir"; done
mkdir -p /run/systemd/system
# /tmp is shared with the host (the checkout may live there): make sure nothing
# can run systemd-tmpfiles, which would clean it.
for unit in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
            systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer; do
  ln -s /dev/null "/run/systemd/system/$unit"
done
cat > /run/systemd/system/oomguard-test.target <<'UNIT'
[Unit]
Description=oomguard test boot: only what the test starts
DefaultDependencies=no
UNIT
export container=oomguard-test
exec /lib/systemd/systemd --system --unit=oomguard-test.target --log-target=console
"""


class Systemd:
    def __init__(self, unshare: subprocess.Popen, pid: int):
        self.unshare, self.pid = unshare, pid  # pid: systemd's, as the host sees it

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a command inside the namespaces (its mounts and its PID numbering)."""
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-p", *argv], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        out = self.run("systemctl", "show", unit, *(f"-p{p}" for p in properties)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_until(self, predicate, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        last = None
        while time.monotonic() < deadline:
            last = predicate()
            if last:
                return last
            time.sleep(0.25)
        raise AssertionError(f"{what}: not within {seconds}s (last: {last!r})")


@contextlib.contextmanager
def booted_systemd(log_path) -> Iterator[Systemd]:
    state_dir = Path("/var/lib/oomguard")
    made_state_dir = not state_dir.exists()  # the mount point, on the host: removed again below
    with open(log_path, "w") as log:
        unshare = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "sh", "-c", BOOT],
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        pid = None
        while pid is None and time.monotonic() < deadline:
            children = subprocess.run(["pgrep", "-P", str(unshare.pid)], capture_output=True, text=True).stdout.split()
            if children and os.readlink(f"/proc/{children[0]}/exe").endswith("systemd"):
                pid = int(children[0])
            else:
                time.sleep(0.1)
        assert pid is not None, f"systemd did not start: {open(log_path).read()[-2000:]}"
        systemd = Systemd(unshare, pid)
        systemd.wait_until(lambda: systemd.run("systemctl", "is-system-running", check=False).stdout.strip()
                           in ("running", "degraded"), 60, "systemd boot")
        yield systemd
    finally:
        with contextlib.suppress(Exception):
            subprocess.run(["nsenter", "-t", str(pid), "-m", "-p", "systemctl", "poweroff"], timeout=20,
                           capture_output=True)
        try:
            unshare.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(unshare.pid, signal.SIGKILL)
            unshare.wait(timeout=10)
        if made_state_dir:
            with contextlib.suppress(OSError):
                state_dir.rmdir()
