"""Container attribution: cgroup path -> runtime, container ID, pod UID, QoS class; pod names from the kubelet's logs.

Pure parsing of the path forms kubelets and container runtimes create, for
both kubelet cgroup drivers (cgroupfs and systemd), on cgroup v1, v2 and
hybrid hosts, including nested hosts (kind, docker-in-docker): the innermost
container in the path wins. Anything else is the host, or a system service
when it is a systemd unit. Never raises on odd input.

>>> a = attribute("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0f1e2d3c_4b5a_6978_8796_a5b4c3d2e1f0"
...               ".slice/cri-containerd-" + "ab" * 32 + ".scope")
>>> a.runtime, a.container_id[:8], a.pod_uid, a.qos
('containerd', 'abababab', '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', 'burstable')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HOST, SYSTEM_SERVICE, CONTAINER = "host", "system service", "container"

_ID = r"[0-9a-f]{12,64}"
# Runtime scopes and their runtime names; conmon scopes are the monitor, not the container. Podman with the
# cgroupfs manager (the default where systemd is not the cgroup manager) names the directory without .scope,
# under /libpod_parent (its conmon is /libpod_parent/conmon).
_SCOPES = [
    (re.compile(rf"^cri-containerd-({_ID})\.scope$"), "containerd"),
    (re.compile(rf"^crio-({_ID})\.scope$"), "cri-o"),
    (re.compile(rf"^docker-({_ID})\.scope$"), "docker"),
    (re.compile(rf"^libpod-({_ID})\.scope$"), "podman"),
    (re.compile(rf"^libpod-({_ID})$"), "podman"),
    (re.compile(rf"^nerdctl-({_ID})\.scope$"), "containerd"),
]
_BARE_ID = re.compile(rf"^({_ID})$")  # cgroupfs driver: the ID is the directory name
_POD_CGROUPFS = re.compile(r"^pod([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_POD_SYSTEMD = re.compile(
    r"^(?:kubelet-)?kubepods(?:-(burstable|besteffort))?-pod([0-9a-f]{8}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{4}_[0-9a-f]{12})\.slice$")
_QOS_DIRS = {"burstable": "burstable", "besteffort": "besteffort"}
_UNIT = re.compile(r"^[^/]+\.(service|scope|socket|mount|swap|slice|timer)$")


@dataclass(frozen=True)
class Attribution:
    kind: str  # HOST, SYSTEM_SERVICE or CONTAINER
    cgroup_path: str
    runtime: str | None = None  # containerd, cri-o, docker, podman; None: unknown (cgroupfs driver)
    container_id: str | None = None
    pod_uid: str | None = None
    qos: str | None = None  # guaranteed, burstable, besteffort (pods only)
    systemd_unit: str | None = None  # the innermost .service/.scope

    def short(self) -> str:
        """One line for logs and tables."""
        if self.kind == CONTAINER:
            parts = [f"{self.runtime or 'container'} {self.container_id[:12] if self.container_id else '?'}"]
            if self.pod_uid:
                parts.append(f"pod {self.pod_uid}")
            return ", ".join(parts)
        return f"{self.kind} ({self.systemd_unit})" if self.systemd_unit else self.kind


def under_cgroup(path: str, prefix: str) -> bool:
    """Whether cgroup `path` is `prefix` or below it, by whole path components."""
    prefix = prefix.rstrip("/")
    return prefix == "" or path == prefix or path.startswith(prefix + "/")


def attribute(cgroup_path: str) -> Attribution:
    """Who owns a cgroup path (as in /proc/PID/cgroup)."""
    components = [c for c in cgroup_path.split("/") if c]
    container = runtime = pod_uid = qos = unit = None
    in_kubepods = False
    previous_docker = False
    for component in components:
        if component in ("kubepods", "kubepods.slice", "kubelet-kubepods.slice"):
            in_kubepods, pod_uid, qos = True, None, "guaranteed"  # until a QoS level says otherwise
            container = runtime = None
        elif in_kubepods and component in _QOS_DIRS:
            qos = _QOS_DIRS[component]
        elif in_kubepods and re.match(r"^(?:kubelet-)?kubepods-(burstable|besteffort)\.slice$", component):
            qos = component.rsplit("-", 1)[1].removesuffix(".slice")
        elif in_kubepods and (m := _POD_CGROUPFS.match(component)):
            pod_uid = m.group(1)
        elif in_kubepods and (m := _POD_SYSTEMD.match(component)):
            pod_uid, qos = m.group(2).replace("_", "-"), m.group(1) or "guaranteed"
        elif scope := _scope(component):
            runtime, container = scope
            if runtime == "docker" and in_kubepods is False:
                pod_uid = qos = None
        elif previous_docker and (m := _BARE_ID.match(component)):
            runtime, container = "docker", m.group(1)
            pod_uid = qos = None
            in_kubepods = False
        elif in_kubepods and pod_uid and (m := _BARE_ID.match(component)):
            container, runtime = m.group(1), None
        if _UNIT.match(component) and not component.endswith(".slice"):
            unit = component
        previous_docker = component == "docker"
    if container:
        return Attribution(CONTAINER, cgroup_path, runtime, container, pod_uid, qos if pod_uid else None, unit)
    if pod_uid:  # the pod's own cgroup (no container below it)
        return Attribution(CONTAINER, cgroup_path, None, None, pod_uid, qos, unit)
    if unit and unit.endswith(".service"):
        return Attribution(SYSTEM_SERVICE, cgroup_path, systemd_unit=unit)
    return Attribution(HOST, cgroup_path, systemd_unit=unit)


def _scope(component: str) -> tuple[str, str] | None:
    for pattern, runtime in _SCOPES:
        if m := pattern.match(component):
            return runtime, m.group(1)
    return None
