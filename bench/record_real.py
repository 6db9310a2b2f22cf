"""Record real software for bench/detect.py: a JVM, Go, Node.js, Redis and stress-ng, healthy and leaking, each in
its own memory cgroup under one `oomguard record` (committed as bench/traces/real-software.jsonl.gz).

Nobody here wrote the runtimes, allocators and garbage collectors whose memory behaviour is recorded; the
programs that drive them (bench/real/) only allocate: 40 MiB/s of short-lived objects, and with "leak" they
keep 4 MiB/s of them. Redis fills with 512-byte values from redis-benchmark, once under maxmemory with LRU
eviction (healthy) and once without (killed). stress-ng --vm holds and re-touches 150 MiB (healthy);
--bigheap grows until it is killed.

    sudo .venv/bin/python bench/record_real.py     (needs default-jre-headless golang-go nodejs redis-server
                                                    stress-ng; about four minutes)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
from support import free_port, memory_cgroup, procs_file

MIB = 1 << 20
REAL = Path(__file__).with_name("real")
SECONDS = 200  # each program's run, unless the kernel kills it first


def programs(tmp: Path) -> dict[str, tuple[int, list[list[str]]]]:
    """name -> (memory limit, commands started in its cgroup, the first one the program)."""
    go = tmp / "leak-go"
    subprocess.run(["go", "build", "-o", str(go), str(REAL / "leak.go")], check=True, env={**os.environ,
                   "GOCACHE": str(tmp / "gocache"), "HOME": str(tmp)})
    java = ["java", "-Xmx2g", "-XX:+UseG1GC", str(REAL / "Leak.java")]  # -Xmx above the limit: the kernel kills
    port_evict, port_oom = free_port(), free_port()
    redis = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    # one client, no pipelining: a service writing as fast as one connection goes (a few MiB/s)
    fill = ["redis-benchmark", "-h", "127.0.0.1", "-t", "set", "-n", "4000000", "-r", "100000000", "-d", "512",
            "-c", "1", "-P", "1", "-q", "-p"]
    return {
        "jvm-healthy": (384 * MIB, [java]),
        "jvm-leak": (384 * MIB, [[*java, "leak"]]),
        "go-healthy": (256 * MIB, [[str(go)]]),
        "go-leak": (256 * MIB, [[str(go), "leak"]]),
        "node-healthy": (256 * MIB, [["node", str(REAL / "leak.js")]]),
        "node-leak": (256 * MIB, [["node", str(REAL / "leak.js"), "leak"]]),
        "redis-evicting": (256 * MIB, [[*redis, "--port", str(port_evict), "--maxmemory", "150mb",
                                        "--maxmemory-policy", "allkeys-lru"], [*fill, str(port_evict)]]),
        "redis-unbounded": (200 * MIB, [[*redis, "--port", str(port_oom)], [*fill, str(port_oom)]]),
        "stress-ng-vm-hold": (256 * MIB, [["stress-ng", "--vm", "1", "--vm-bytes", "150M", "--vm-keep",
                                           "--timeout", f"{SECONDS}s", "--quiet"]]),
        "stress-ng-bigheap": (256 * MIB, [["stress-ng", "--bigheap", "1", "--bigheap-growth", "16K",
                                           "--timeout", f"{SECONDS}s", "--quiet", "--oomable"]]),
    }


def main() -> int:
    missing = [tool for tool in ("java", "go", "node", "redis-server", "redis-benchmark", "stress-ng")
               if shutil.which(tool) is None]
    if missing:
        print(f"missing: {', '.join(missing)}; install: apt-get install default-jre-headless golang-go nodejs "
              "redis-server stress-ng", file=sys.stderr)
        return 2
    out = Path(__file__).with_name("traces") / "real-software.jsonl.gz"
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        runs = programs(Path(tmp))
        policy = Path(tmp) / "policy.toml"
        policy.write_text(f'[output]\ntop_pids = 0\n[metrics]\nlisten = ""\n[state]\ndir = "{tmp}/state"\n')
        recorder = subprocess.Popen([sys.executable, "-m", "oomguard.cli", "record", "-c", str(policy),
                                     "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        started: list[subprocess.Popen] = []
        try:
            for line in recorder.stdout or []:
                if "tracing kmalloc" in line:
                    break
            for name, (limit, commands) in runs.items():
                cgroup = stack.enter_context(memory_cgroup(limit, relative=f"oomguard-rec-{name}"))
                procs = procs_file(cgroup)
                for i, command in enumerate(commands):
                    if i:
                        time.sleep(1)  # the server first
                    started.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                    cwd=tmp, preexec_fn=lambda p=procs: p.write_text(str(os.getpid()))))
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:
                time.sleep(5)
                print(f"{deadline - time.monotonic():.0f}s left; alive: "
                      f"{sum(p.poll() is None for p in started)}/{len(started)}", flush=True)
        finally:
            for p in started:
                if p.poll() is None:
                    p.kill()
            recorder.send_signal(signal.SIGTERM)
            print(recorder.communicate(timeout=30)[0][-2000:])
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
