"""Pod and container names from the kubelet's log trees (no API server needed)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PodNames:
    namespace: str
    pod: str
    container: str | None  # None: not known for this container ID


class PodDirectory:
    """Pod and container names from the kubelet's log trees.

    /var/log/pods/<namespace>_<pod>_<uid>/<container>/ names the pod;
    /var/log/containers/<pod>_<namespace>_<container>-<id>.log names the
    container of an ID. Re-scanned when an unknown UID or ID is asked for,
    at most once per `rescan_s`, so a pod that starts later is found.
    """

    def __init__(self, pods_dir: Path, containers_dir: Path | None = None, rescan_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        self.pods_dir = pods_dir
        self.containers_dir = containers_dir if containers_dir is not None else pods_dir.parent / "containers"
        self.rescan_s, self.clock = rescan_s, clock
        self._pods: dict[str, tuple[str, str, list[str]]] = {}
        self._containers: dict[str, str] = {}
        self._scanned_at: float | None = None

    def lookup(self, pod_uid: str | None, container_id: str | None) -> PodNames | None:
        if not pod_uid:
            return None
        if pod_uid not in self._pods or (container_id and container_id not in self._containers):
            self._scan_if_due()
        if pod_uid not in self._pods:
            return None
        namespace, pod, containers = self._pods[pod_uid]
        container = self._containers.get(container_id) if container_id else None
        if container is None and len(containers) == 1:
            container = containers[0]  # a one-container pod: no doubt which
        return PodNames(namespace, pod, container)

    def _scan_if_due(self) -> None:
        now = self.clock()
        if self._scanned_at is not None and now - self._scanned_at < self.rescan_s:
            return
        self._scanned_at = now
        self._pods = {}
        for entry in _list(self.pods_dir):
            parts = entry.split("_")
            if len(parts) == 3 and all(parts):
                namespace, pod, uid = parts
                self._pods[uid] = (namespace, pod, sorted(_list(self.pods_dir / entry)))
        self._containers = {}
        for entry in _list(self.containers_dir):
            # <pod>_<namespace>_<container>-<64-hex id>.log
            m = re.match(r"^[^_]+_[^_]+_(.+)-([0-9a-f]{64})\.log$", entry)
            if m:
                self._containers[m.group(2)] = m.group(1)


def _list(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []
