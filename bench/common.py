"""What the benchmarks share: the import path and the compiled workload."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository
sys.path.insert(0, str(ROOT / "src"))


def build_workload(directory: Path) -> Path:
    """Compile tests/workloads/workload.c into `directory`."""
    binary = directory / "workload"
    subprocess.run(["gcc", "-O2", "-o", str(binary), str(ROOT / "tests/workloads/workload.c")], check=True)
    return binary
