"""Test helper: a throw-away memory cgroup under the test's own, removed even on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Iterator

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
    path.mkdir(parents=True)
    try:
        if version == 1:
            (path / "memory.limit_in_bytes").write_text(str(limit_bytes))
            (path / "memory.swappiness").write_text("0")  # OOM instead of swapping
        else:
            (path / "memory.max").write_text(str(limit_bytes))
            with contextlib.suppress(FileNotFoundError):
                (path / "memory.swap.max").write_text("0")
        yield path
    finally:
        _remove_tree(top)


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
