"""What the memory is, as the kernel counts it: the cgroup's memory.stat and the culprit's smaps_rollup.

Read while the alert is open, before a kill takes the process away. Parsing
is pure; reading takes its roots as arguments so tests can point them at a
temporary tree.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..identity.cgroup import CGROUP_ROOT, MemoryCgroup, keyed_ints, memory_dir
from ..identity.procfs import kilobyte_fields

# memory.stat keys per hierarchy version -> the names the report uses.
STAT_KEYS = {
    1: {"total_rss": "anon", "total_cache": "file", "total_shmem": "shmem"},
    2: {"anon": "anon", "file": "file", "shmem": "shmem", "kernel": "kernel", "slab": "slab", "sock": "sock"},
}
SMAPS_KEYS = ("Rss", "Pss", "Anonymous", "Pss_Anon", "Pss_File", "Pss_Shmem", "Swap")


def cgroup_breakdown(cgroup: MemoryCgroup, root: Path = CGROUP_ROOT) -> dict[str, int]:
    """anon, file, shmem (and on v2 kernel, slab, sock; on v1 kernel from memory.kmem), bytes; {} if gone."""
    directory = memory_dir(cgroup, root)
    stat = keyed_ints(directory / "memory.stat")
    if not stat:  # gone
        return {}
    out = {name: stat[key] for key, name in STAT_KEYS.get(cgroup.version, {}).items() if key in stat}
    if cgroup.version == 1:
        with contextlib.suppress(OSError, ValueError):  # kmem accounting off: no kernel figure
            out["kernel"] = int((directory / "memory.kmem.usage_in_bytes").read_text())
    return out


def process_breakdown(pid: int, proc: Path = Path("/proc")) -> dict[str, int]:
    """The process's smaps_rollup (Rss, Pss, Anonymous, ...), bytes; {} if it is gone."""
    rollup = kilobyte_fields(proc / str(pid) / "smaps_rollup")
    return {key: rollup[key] for key in SMAPS_KEYS if key in rollup}
