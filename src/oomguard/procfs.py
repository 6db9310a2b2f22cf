"""Facts about processes read from /proc: the edge between the rate maths and the live system."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

PROC = Path("/proc")


def live_pids(proc: Path = PROC) -> np.ndarray:
    """Every process (tgid) alive now, sorted. One directory listing, not one stat per PID."""
    return np.array(sorted(int(name) for name in os.listdir(proc) if name.isdigit()), dtype=np.uint32)


def process_name(pid: int, proc: Path = PROC) -> str:
    """The process's comm, or "-" once it has exited."""
    try:
        return (proc / str(pid) / "comm").read_text().strip() or "-"
    except OSError:
        return "-"
