"""Record real traces for bench/detect.py: a leak that is OOM-killed and a garbage-collected sawtooth.

Runs `oomguard record` while tests/workloads/workload.c runs in two memory
cgroups made under this process's own (removed afterwards):
  leak:     quiet for 90 s, then ~6 MiB/s into a 256 MiB limit until the kernel kills it
  sawtooth: grows to 160 MiB over 20 s and frees it, again and again, under a 256 MiB limit
    sudo .venv/bin/python bench/record_traces.py      (about four minutes)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, build_workload

sys.path.insert(0, str(ROOT / "tests"))
from support import memory_cgroup, procs_file

MIB = 1 << 20


def main() -> int:
    out = Path(__file__).with_name("traces") / "leak-and-sawtooth.jsonl.gz"
    with tempfile.TemporaryDirectory() as tmp:
        workload = build_workload(Path(tmp))
        policy = Path(tmp) / "policy.toml"
        policy.write_text(f'[output]\ntop_pids = 0\n[metrics]\nlisten = ""\n[state]\ndir = "{tmp}/state"\n')
        recorder = subprocess.Popen([sys.executable, "-m", "oomguard.cli", "record", "-c", str(policy),
                                     "-o", str(out)], stdout=subprocess.DEVNULL)
        try:
            time.sleep(5)
            with memory_cgroup(256 * MIB) as leak_cg, memory_cgroup(256 * MIB) as saw_cg:
                join = lambda cg: (lambda: procs_file(cg).write_text(str(os.getpid())))  # noqa: E731
                saw = subprocess.Popen([str(workload), "sawtooth", "160", "20", "240"], preexec_fn=join(saw_cg))
                leak = subprocess.Popen([str(workload), "leak", "400", "66", "90"], stdout=subprocess.DEVNULL,
                                        preexec_fn=join(leak_cg))
                print("leak ended with", leak.wait(timeout=400))
                saw.wait(timeout=400)
            time.sleep(3)
        finally:
            recorder.send_signal(signal.SIGTERM)
            recorder.wait(timeout=30)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
