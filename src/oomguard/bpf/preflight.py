"""Checks that the kernel and the machine can run oomguard's BPF programs.

Each check returns a Check with a fix a user can act on. `oomguard doctor`
prints them all; the loader runs the required ones before compiling, so a
missing prerequisite is reported as itself, not as a compiler error.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

TRACEFS_ROOTS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
# The fields oomguard.c reads (args->...) or whose position its raw tracepoints rely on, per tracepoint:
# layouts change between kernels, so each is checked against what the running kernel's tracefs offers.
TRACEPOINT_FIELDS = {
    "kmem/kmalloc": ("call_site", "ptr", "bytes_req", "bytes_alloc"),  # raw: args[3] is bytes_alloc
    "kmem/mm_page_alloc": ("order", "gfp_flags"),  # raw: args[1] is the order
    "kmem/rss_stat": ("curr", "member", "size"),
    "oom/mark_victim": ("pid", "total_vm", "anon_rss", "file_rss", "shmem_rss", "uid", "oom_score_adj"),
    "sched/sched_process_exit": (),
}
CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF = 21, 38, 39
MIN_KERNEL = (5, 8)  # BPF ring buffer


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def tracefs_root() -> Path | None:
    for root in TRACEFS_ROOTS:
        if (root / "events").is_dir():
            return root
    return None


def kernel_version(release: str) -> tuple[int, int]:
    """'6.18.44-fc-v669' -> (6, 18); unparsable parts count as 0."""
    parts = ([*release.split("-")[0].split("."), "0", "0"])[:2]
    return tuple(int(p) if p.isdigit() else 0 for p in parts)  # type: ignore[return-value]


def effective_capabilities(status_text: str) -> int:
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_kernel() -> Check:
    release = platform.release()
    ok = kernel_version(release) >= MIN_KERNEL
    return Check("kernel", ok, f"Linux {release}",
                 "oomguard needs Linux >= 5.8 (BPF ring buffer): upgrade the kernel")


def check_privileges() -> Check:
    caps = effective_capabilities(Path("/proc/self/status").read_text())

    def has(cap: int) -> bool:
        return bool(caps >> cap & 1)

    ok = has(CAP_SYS_ADMIN) or (has(CAP_BPF) and has(CAP_PERFMON))
    detail = f"euid {os.geteuid()}, CapEff {caps:#x}"
    return Check("privileges", ok, detail,
                 "run as root (sudo), or grant CAP_BPF and CAP_PERFMON (and CAP_SYSLOG to read /dev/kmsg)")


def check_bcc() -> Check:
    try:
        import bcc
    except ImportError as exc:
        return Check("bcc", False, f"import bcc failed: {exc}",
                     "apt-get install python3-bpfcc, and run from a virtualenv made with "
                     "--system-site-packages (`sudo make setup` does both)")
    version = getattr(bcc, "__version__", "unknown version")
    return Check("bcc", True, f"bcc {version}")


def check_headers() -> Check:
    build = Path("/lib/modules") / platform.release() / "build"
    try:
        ok = (build / "include").is_dir()
        detail = f"{build} -> {os.path.realpath(build)}" if ok else f"{build} missing"
    except OSError as exc:  # e.g. hidden by a sandbox (systemd's ProtectKernelModules)
        ok, detail = False, f"{build} not readable: {exc.strerror}"
    return Check("kernel headers", ok, detail,
                 f"install linux-headers-{platform.release()}, or run `sudo make setup`, which links "
                 "the distribution's generic headers (safe: oomguard reads only tracepoint arguments)")


def check_tracefs() -> Check:
    root = tracefs_root()
    return Check("tracefs", root is not None, str(root) if root else "not mounted",
                 "mount -t tracefs tracefs /sys/kernel/tracing")


def format_fields(format_text: str) -> list[str]:
    r"""Field names of a tracefs `format` file, in order.

    >>> format_fields("\tfield:int pid;\toffset:8;\n\tfield:__data_loc char[] comm;\toffset:12;\n")
    ['pid', 'comm']
    """
    names = []
    for line in format_text.splitlines():
        declaration = line.strip().partition("field:")[2].partition(";")[0]
        if declaration:
            names.append(declaration.split()[-1].split("[")[0])
    return names


def check_tracepoint(name: str) -> Check:
    root = tracefs_root()
    path = root / "events" / name / "format" if root is not None else None
    try:
        text = path.read_text() if path is not None else None
    except OSError:
        text = None
    if text is None:
        return Check(f"tracepoint {name}", False, "absent",
                     "mount tracefs first" if root is None else
                     f"this kernel lacks tracepoint {name}: oomguard needs a kernel built with it")
    missing = [f for f in TRACEPOINT_FIELDS.get(name, ()) if f not in format_fields(text)]
    if missing:
        return Check(f"tracepoint {name}", False,
                     f"kernel {platform.release()} lacks field(s) {', '.join(missing)}",
                     "oomguard reads these fields; run a kernel that has them (tested: 6.1, 6.12, 6.18) or "
                     "report this kernel and its tracefs format file as a bug")
    return Check(f"tracepoint {name}", True, "present")


def nested_pid_namespace(status_text: str) -> bool:
    """Whether /proc/self/status's NSpid line lists more than one pid (we are in a child PID namespace)."""
    for line in status_text.splitlines():
        if line.startswith("NSpid:"):
            return len(line.split()) > 2
    return False


def check_pid_namespace() -> Check:
    nested = nested_pid_namespace(Path("/proc/self/status").read_text())
    return Check("PID namespace", not nested, "child PID namespace" if nested else "host",
                 "the kernel reports host pids, which /proc here does not show: run oomguard in the host PID "
                 "namespace (hostPID: true on Kubernetes); rates still work, names and owners will not",
                 required=False)


def check_btf() -> Check:
    ok = Path("/sys/kernel/btf/vmlinux").is_file()
    return Check("BTF", ok, "/sys/kernel/btf/vmlinux" if ok else "absent",
                 "not needed by oomguard (bcc compiles from headers); enable CONFIG_DEBUG_INFO_BTF for other tools",
                 required=False)


def all_checks() -> list[Check]:
    checks = [check_kernel(), check_privileges(), check_bcc(), check_headers(), check_tracefs()]
    checks += [check_tracepoint(name) for name in TRACEPOINT_FIELDS]
    checks += [check_pid_namespace(), check_btf()]
    return checks


def failed_required(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.required and not c.ok]
