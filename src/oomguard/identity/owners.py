"""Who a process is, in one call: command, memory cgroup, container, pod — the one enrichment entry point.

Every stage that names a process (the rate table, `top`, `status`, metrics,
alerts, kill reports) asks `Owners.owner_of(pid)` and gets an `Owner`; none
looks up pods or cgroups itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from .attribution import Attribution, attribute
from .cgroup import MemoryCgroup
from .pods import PodDirectory, PodNames
from .procfs import Identity, ProcessDirectory


def owner_text(attribution: Attribution | None, pod: PodNames | None) -> str:
    """'pod namespace/pod container NAME (runtime id)', or the host / system service."""
    if attribution is None:
        return "owner unknown"
    if pod is not None:
        return f"pod {pod.namespace}/{pod.pod} container {pod.container or 'unknown'} ({attribution.short()})"
    if attribution.pod_uid:
        return f"pod unknown name ({attribution.short()})"
    return attribution.short()


@dataclass(frozen=True)
class Owner:
    """A process and where it runs."""

    command: str
    cgroup: MemoryCgroup | None
    attribution: Attribution | None  # None: the process was gone before it could be read
    pod: PodNames | None

    def text(self) -> str:
        return owner_text(self.attribution, self.pod)

    @property
    def namespace(self) -> str:
        return self.pod.namespace if self.pod else ""

    @property
    def pod_name(self) -> str:
        return self.pod.pod if self.pod else ""

    @property
    def container(self) -> str:
        return (self.pod.container or "") if self.pod else ""

    @property
    def container_id(self) -> str:
        return (self.attribution.container_id or "") if self.attribution else ""


class Owners:
    """Owner of a pid from the identity cache (read once per process) and the pod directory."""

    def __init__(self, directory: ProcessDirectory, pods: PodDirectory):
        self.directory, self.pods = directory, pods

    def owner_of(self, pid: int) -> Owner:
        """The owner of a live or remembered process: read from /proc if not known yet, re-read if the pid
        now belongs to a newer process. For the few processes a tick names (tables, alerts, kills)."""
        return self._owner(self.directory.current(pid))

    def cached(self, pid: int) -> Owner | None:
        """The owner if known, without touching /proc: for passes over every process (metrics)."""
        identity = self.directory.known(pid)
        return self._owner(identity) if identity is not None else None

    def known_owner(self, pid: int, cgroup_path: str | None = None) -> Owner | None:
        """The owner without reading /proc: from the cache, else from a cgroup path the kernel gave; else None."""
        identity = self.directory.known(pid)
        # The kernel's path wins over a cached one: a process moved into its cgroup after we first read it
        # (a runtime's init, or a test's preexec) left its old cgroup in the cache.
        moved = cgroup_path is not None and identity is not None and identity.cgroup is not None \
            and identity.cgroup.path != cgroup_path
        if identity is not None and identity.attribution is not None and not moved:
            return self._owner(identity)
        if cgroup_path is not None:
            attribution = attribute(cgroup_path)
            cgroup = identity.cgroup if identity and not moved else None
            return Owner(identity.command if identity else "-", cgroup, attribution, self.pod_of(attribution))
        return None

    def pod_of(self, attribution: Attribution | None) -> PodNames | None:
        return self.pods.lookup(attribution.pod_uid, attribution.container_id) if attribution else None

    def _owner(self, identity: Identity) -> Owner:
        return Owner(identity.command, identity.cgroup, identity.attribution, self.pod_of(identity.attribution))
