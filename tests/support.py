"""What the tests share: prerequisites, throw-away memory cgroups, local receivers, a booted systemd, a daemon.

Every helper cleans up what it makes, even when the test fails.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
WORKLOAD_SOURCE = Path(__file__).with_name("workloads") / "workload.c"


def require(condition: bool, why: str) -> None:
    """Skip when a prerequisite is missing, except under CI, where that is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing under CI: {why}", pytrace=False)
    pytest.skip(why)


# -- throw-away memory cgroups ---------------------------------------------------------------------------

V1_ROOT = Path("/sys/fs/cgroup/memory")
V2_ROOT = Path("/sys/fs/cgroup")


def own_memory_cgroup() -> tuple[Path, int] | None:
    """(directory, version) of this process's memory cgroup, or None if memory is not controlled."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and (V1_ROOT / path.lstrip("/")).is_dir():
            return V1_ROOT / path.lstrip("/"), 1
        if hierarchy == "0" and "memory" in (V2_ROOT / "cgroup.controllers").read_text(errors="ignore").split():
            # v2 forbids processes in inner nodes: make ours under the root.
            return V2_ROOT, 2
    return None


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int, *, relative: str | None = None) -> Iterator[Path]:
    """A new memory cgroup with `limit_bytes` and no swap; every process in it is killed on exit."""
    found = own_memory_cgroup()
    if found is None:
        raise RuntimeError("no memory cgroup controller: mount the v1 memory controller or enable memory in cgroup v2")
    parent, version = found
    relative = relative or f"oomguard-test-{uuid.uuid4().hex[:8]}"
    path = parent / relative
    top = parent / Path(relative).parts[0]  # the first directory we create; all of it goes
    if top.exists():
        raise RuntimeError(f"{top} exists already: a previous run left it, remove it")
    try:
        if version == 1:
            path.mkdir(parents=True)
        else:  # v2: a level has memory.max only if its parent delegates the controller to its children
            level = parent
            for part in Path(relative).parts:
                (level / "cgroup.subtree_control").write_text("+memory")
                level = level / part
                level.mkdir()
        if version == 1:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            (path / "memory.swappiness").write_text("0")  # OOM instead of swapping
        else:
            (path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(FileNotFoundError):
                (path / "memory.swap.max").write_text("0")
        yield path
    finally:
        if top.exists():
            _remove_tree(top)


@contextlib.contextmanager
def cpu_cgroup(share_of_a_core: float) -> Iterator[Path]:
    """A new CPU cgroup whose CFS quota is this share of one core (v1 cpu controller, else v2 cpu.max); every
    process in it is killed on exit."""
    period = 100_000
    quota = int(share_of_a_core * period)
    v1 = Path("/sys/fs/cgroup/cpu")
    path = (v1 if (v1 / "cpu.cfs_quota_us").exists() else V2_ROOT) / f"oomguard-test-cpu-{uuid.uuid4().hex[:8]}"
    try:
        if path.parent == v1:
            path.mkdir()
            (path / "cpu.cfs_period_us").write_text(str(period))
            (path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            (V2_ROOT / "cgroup.subtree_control").write_text("+cpu")
            path.mkdir()
            (path / "cpu.max").write_text(f"{quota} {period}")
        yield path
    finally:
        if path.exists():
            _remove_tree(path)


def throttled_s(path: Path) -> float:
    """Seconds a cpu_cgroup()'s tasks have waited on its quota."""
    stat = dict(line.split() for line in (path / "cpu.stat").read_text().splitlines())
    return int(stat.get("throttled_time", 0)) / 1e9 + int(stat.get("throttled_usec", 0)) / 1e6


def memory_usage(path: Path) -> int:
    """Bytes charged to a memory cgroup made by memory_cgroup()."""
    v1 = path / "memory.usage_in_bytes"
    return int((v1 if v1.exists() else path / "memory.current").read_text())


def set_memory_limit(path: Path, limit_bytes: int) -> None:
    v1 = path / "memory.limit_in_bytes"
    (v1 if v1.exists() else path / "memory.max").write_text(str(limit_bytes))


def oom_kills_in(path: Path) -> int:
    """OOM kills inside a memory cgroup so far (v1 memory.oom_control, v2 memory.events)."""
    v1 = path / "memory.oom_control"
    text = (v1 if v1.exists() else path / "memory.events").read_text()
    return int(dict(line.split() for line in text.splitlines()).get("oom_kill", 0))


@contextlib.contextmanager
def unified_cgroup(mount: Path) -> Iterator[Path]:
    """A new cgroup in the v2 hierarchy at `mount` (no controllers needed); removed, with its processes, on exit."""
    path = mount / f"oomguard-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        _remove_tree(path)


def procs_file(path: Path) -> Path:
    return path / "cgroup.procs"


def start_in(cgroup: Path, *argv: str) -> subprocess.Popen:
    """`argv` started inside `cgroup` (moved there before it execs), output discarded."""
    procs = procs_file(cgroup)
    return subprocess.Popen(list(argv), stdout=subprocess.DEVNULL,
                            preexec_fn=lambda: procs.write_text(str(os.getpid())))


def _remove_tree(top: Path) -> None:
    """Kill every process in `top` and below, then remove the directories, deepest first."""
    deadline = time.monotonic() + 10
    directories = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]
    for directory in directories:
        while True:
            for pid in procs_file(directory).read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            try:
                directory.rmdir()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

# -- local receivers (SMTP, HTTP) on 127.0.0.1 -----------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def subjects(self) -> list[str]:
        return [str(m["Subject"]) for m in self.messages]

    def body(self, i: int) -> str:
        part = self.messages[i].get_body(("plain", "html"))  # with an attachment the mail is multipart
        return (part.get_content() if part is not None else "").replace("\r\n", "\n")

    def pngs(self, i: int) -> list[bytes]:
        """The PNG attachments of message i."""
        return [a.get_content() for a in self.messages[i].iter_attachments() if a.get_content_type() == "image/png"]


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[Mailbox, str]]:
    """(mailbox, apprise mailto:// URL that delivers into it)."""
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield mailbox, f"mailto://127.0.0.1:{port}?from=oomguard@localhost&to=ops@localhost&secure=no"
    finally:
        controller.stop()


class HttpReceiver:
    """Collects JSON POST bodies; can be taken down and brought back on the same port.

    Faults on demand: `status` to answer (e.g. 500), `delay_s` to store the message and answer only that
    much later (a slow receiver), `hang` to store it and never answer (until stop()).
    """

    def __init__(self, port: int | None = None, *, status: int = 200, delay_s: float = 0.0, hang: bool = False):
        self.port = port or free_port()
        self.payloads: list[dict] = []
        self.arrived: list[float] = []  # wall clock of each payload's arrival
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.status, self.delay_s, self.hang = status, delay_s, hang
        self.released = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                receiver.arrived.append(time.time())
                receiver.payloads.append(payload)
                receiver.paths.append(self.path)
                receiver.headers.append(dict(self.headers))
                if receiver.hang:
                    receiver.released.wait(60)
                    return
                time.sleep(receiver.delay_s)
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.released.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextlib.contextmanager
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()

# -- real Prometheus and Alertmanager (Debian's packages) on 127.0.0.1 ------------------------------------

@contextlib.contextmanager
def real_server(name: str, argv: list[str], ready_url: str, log: Path, seconds: float = 60) -> Iterator[None]:
    """Run `argv` (its output to `log`) until the block ends; ready when `ready_url` answers 200."""
    import shutil
    import urllib.request

    require(shutil.which(argv[0]) is not None, f"{argv[0]} not found: `make test` installs Debian's {name} package")
    with log.open("w") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{name} did not become ready (exit {process.poll()}):\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def alertmanager(workdir: Path, webhook: str, resolve_timeout: str = "5m") -> Iterator[str]:
    """A real Alertmanager on 127.0.0.1 routing every alert, firing and resolved, to `webhook`: its base URL."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"resolve_timeout": resolve_timeout},
        "route": {"receiver": "hook", "group_by": ["..."], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [{"url": webhook, "send_resolved": True}]}]}))
    base = f"http://127.0.0.1:{port}"
    argv = ["prometheus-alertmanager", f"--config.file={config}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]  # no HA peers
    with real_server("prometheus-alertmanager", argv, f"{base}/-/ready", workdir / "alertmanager.log"):
        yield base


@contextlib.contextmanager
def prometheus(workdir: Path, target: str, rule_files: list[Path], labels: dict[str, str]) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping `target` (job oomguard) every second and evaluating
    `rule_files` every second: its base URL."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "oomguard", "honor_labels": True,
                            "static_configs": [{"targets": [target], "labels": labels}]}]}))
    base = f"http://127.0.0.1:{port}"
    argv = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with real_server("prometheus", argv, f"{base}/-/ready", workdir / "prometheus.log"):
        yield base


def get_json(url: str, **params: str) -> dict | list:
    import urllib.parse
    import urllib.request

    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    with urllib.request.urlopen(url + query, timeout=10) as response:
        return json.loads(response.read())


# -- a Kubernetes node's pod logs, for pod names ---------------------------------------------------------

POD_UID = "5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"
CONTAINER_ID = "c0ffee" + "1" * 58


def pods_tree(root: Path, uid: str = POD_UID, container_id: str = CONTAINER_ID) -> tuple[Path, Path]:
    """/var/log/pods and /var/log/containers as a kubelet lays them out for pod shop/cart-7d9f, container app:
    (pods_log_dir, containers_log_dir)."""
    pods = root / "log" / "pods"
    (pods / f"shop_cart-7d9f_{uid}" / "app").mkdir(parents=True)
    containers = root / "log" / "containers"
    containers.mkdir()
    (containers / f"cart-7d9f_shop_app-{container_id}.log").symlink_to(pods / f"shop_cart-7d9f_{uid}" / "app")
    return pods, containers


# -- a throw-away systemd --------------------------------------------------------------------------------

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

# -- `oomguard run` as a child process -------------------------------------------------------------------

def our_program_names() -> set[str]:
    out = subprocess.run(["bpftool", "prog", "show", "-j"], check=True, capture_output=True, text=True).stdout
    return {p.get("name", "") for p in json.loads(out)}


def read_lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))


def wait_for(lines: queue.Queue, predicate, seconds: float, seen: list[str]) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if predicate(line):
            return line
    raise AssertionError(f"not seen within {seconds}s; output was:\n" + "\n".join(seen[-40:]))


class Daemon:
    """`oomguard run` (or `record`) as a child process, its output read line by line; SIGTERM on exit."""

    def __init__(self, policy: Path, env: dict[str, str] | None = None, preexec_fn=None,
                 record_to: Path | None = None):
        # --ticks always: the tests read each interval's table through a pipe, where a service would be quiet.
        # record_to: `oomguard record -o FILE`, the same daemon writing what it sees to FILE
        command = ["record", "-o", str(record_to)] if record_to else ["run"]
        self.process = subprocess.Popen([sys.executable, "-m", "oomguard.cli", *command, "--ticks", "always", "-c",
                                         str(policy)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, **(env or {})}, preexec_fn=preexec_fn)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=read_lines, args=(self.process.stdout, self.lines), daemon=True)
        self.reader.start()

    def wait_for(self, predicate, seconds: float) -> str:
        return wait_for(self.lines, predicate, seconds, self.seen)

    def stop(self) -> tuple[int, float]:
        """(exit code, seconds SIGTERM took)."""
        self.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        took = time.monotonic() - started
        self.reader.join(2)  # everything it printed up to its exit joins `seen`, for the failure's message
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return code, took


# -- sample values for the pure stages ------------------------------------------------------------------

UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
CID = "ab" * 32
CGROUP = f"/kubepods/burstable/pod{UID}/{CID}"
MIB = 1 << 20


def subject(cgroup: str = CGROUP, pids=(100,), command: str = "java", usage: int = 100 * MIB,
            limit: int = 128 * MIB):
    from oomguard.detection.groups import Subject
    from oomguard.identity.attribution import attribute
    from oomguard.identity.pods import PodNames

    return Subject(cgroup=cgroup, usage=usage, limit=limit, pids=tuple(pids), command=command,
                   attribution=attribute(cgroup), pod=PodNames("shop", "cart-7d9f", "app"),
                   kmalloc_bytes_per_s=2048.0, page_bytes_per_s=8 * MIB, rss_bytes=100 * MIB, sample_rates=(32, 4))


def verdict(cgroup: str = CGROUP, eta: float = 20.0, severity: str = ""):
    """A verdict of a climb reaching the limit in `eta` s: critical within 60 s, else a warning, unless given."""
    from oomguard.detection.detector import CRITICAL, WARNING, Verdict

    return Verdict(cgroup, 100 * MIB, 128 * MIB, 1.4 * MIB, eta, severity or (CRITICAL if eta <= 60 else WARNING),
                   (0.8 * eta, 1.25 * eta), trend_s=30.0, giveback=2 * MIB)


def kill_report(pid: int = 100, cgroup: str = CGROUP, comm: str = "java", constraint: str = "CONSTRAINT_MEMCG"):
    from oomguard.bpf.events import OomKill
    from oomguard.identity.attribution import attribute
    from oomguard.identity.pods import PodNames
    from oomguard.kills.kmsg import KernelOomRecord
    from oomguard.kills.report import KillReport

    kill = OomKill(timestamp_ns=1, victim_pid=pid, victim_comm=comm, victim_uid=0, total_vm_kb=1, anon_rss_kb=131072,
                   file_rss_kb=0, shmem_rss_kb=0, oom_score_adj=0, trigger_pid=pid, trigger_comm=comm, cgroup_id=1)
    record = KernelOomRecord(1, constraint, cgroup, cgroup, comm, pid, 0)
    return KillReport(kill, record, attribute(cgroup), PodNames("shop", "cart-7d9f", "app"), 128 * MIB, None)


def engine(horizon: float = 60, cooldown: float = 300, max_per_hour: int = 30):
    """An AlertEngine on host node-1 with counter-made ids."""
    import itertools

    from oomguard.alerting.engine import AlertEngine
    from oomguard.config import from_mapping

    config = from_mapping({"alerts": {"horizon": horizon, "cooldown": cooldown, "max_per_hour": max_per_hour}}, "t")
    counter, wall = itertools.count(1), itertools.count(1_700_000_000)
    return AlertEngine(config, host="node-1", new_id=lambda: f"alert{next(counter):04d}",
                       wall_clock=lambda: float(next(wall)))


class Watch:
    """An AlertEngine fed by its own detector, in the order the daemon's tick calls them: the subjects judged,
    then decided on; a kill restarts the detector where it happened."""

    def __init__(self, alerts, detector):
        self.alerts, self.detector = alerts, detector

    def observe(self, subjects, now):
        from oomguard.detection.groups import judge

        return self.alerts.observe(subjects, judge(self.detector, subjects, now), now)

    def kill(self, report, now):
        outcome = self.alerts.kill(report, now)
        self.detector.restart(outcome.killed_in)
        return outcome

    def __getattr__(self, name):  # book, verdicts, warn, expire, ...: the engine's
        return getattr(self.alerts, name)

    def __setattr__(self, name, value):
        if name in ("alerts", "detector"):
            object.__setattr__(self, name, value)
        else:
            setattr(self.alerts, name, value)


def watch(horizon: float = 60, cooldown: float = 300, max_per_hour: int = 30) -> Watch:
    """engine() with a detector for the same policy's horizons."""
    from oomguard.config import from_mapping
    from oomguard.detection.detector import CgroupDetector

    config = from_mapping({"alerts": {"horizon": horizon, "cooldown": cooldown, "max_per_hour": max_per_hour}}, "t")
    return Watch(engine(horizon, cooldown, max_per_hour), CgroupDetector.for_policy(config))


# -- small filesystems for disk faults ----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "64k", *, full: bool = False, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs mounted at `path` (made if missing): `full` fills it to ENOSPC, `read_only` remounts it ro.
    Unmounted on exit, even on failure (lazily, if a process still holds it)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    try:
        if full:
            fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with contextlib.suppress(OSError):  # ENOSPC: full
                    while os.write(fd, b"\0" * 4096):
                        pass
            finally:
                os.close(fd)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


# -- waiting and sample messages ---------------------------------------------------------------------------


def wait_until(predicate, seconds: float = 10.0) -> None:
    """Poll `predicate` every 50 ms; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("not within time")


def wait_for_len(items: list, count: int, seconds: float = 10.0) -> None:
    """Wait until `items` (filled by another thread) holds `count`, or `seconds` pass; the caller asserts."""
    deadline = time.monotonic() + seconds
    while len(items) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def message(i: int):
    from oomguard.alerting.messages import Message

    return Message(f"id{i}", "pre-OOM", f"[oomguard] alert {i}", f"body {i}\nsecond line\n")


def metric_samples(text: str) -> dict[str, list]:
    """Prometheus exposition text -> samples by name."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def leak_policy(tmp_path: Path, state: Path, extra: str = "") -> Path:
    """A policy whose detector speaks within seconds (500 ms ticks), no exporter, owner-only (0600)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[sampling]\ninterval = "500ms"\n[output]\ntop_pids = 0\n[state]\ndir = "{state}"\n'
                      '[metrics]\nlisten = ""\n' + extra)
    policy.chmod(0o600)
    return policy


def leak_to_kill(daemon: Daemon, workload: Path) -> tuple[str, str]:
    """A process quiet for 5 s, then ~10 MiB/s into a 128 MiB cgroup until the kernel kills it (~12 s in),
    watched by `daemon` (a policy with 500 ms ticks): (its pre-OOM line, its confirmed line)."""
    with memory_cgroup(128 * MIB) as cgroup:
        procs = procs_file(cgroup)
        leaker = subprocess.Popen([str(workload), "leak", "300", "30", "5"], stdout=subprocess.DEVNULL,
                                  preexec_fn=lambda: procs.write_text(str(os.getpid())))
        pre = daemon.wait_for(lambda l: l.startswith("ALERT pre-OOM"), 20)
        assert leaker.wait(timeout=30) == -9
        confirmed = daemon.wait_for(lambda l: l.startswith("ALERT confirmed"), 5)
    return pre, confirmed
