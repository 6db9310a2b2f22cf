"""Workload identity: which earlier containers a new one is another instance of.

A container is rarely new: it is the 40th start of a Deployment's pod
template, the 3rd replica of a StatefulSet, the nightly run of a CronJob,
the restart of a systemd service. Its workload is what its instances share:

- a Kubernetes pod: namespace, the owner named by the pod's name (the
  ReplicaSet hash and pod suffix, a StatefulSet's ordinal, a CronJob's
  scheduled-minute and suffix, a DaemonSet's or Job's suffix stripped), the
  container, and the memory limit (a new limit is a new workload);
- a systemd service: its unit and limit;
- any other limited cgroup: its path and limit (a cgroup made again under the
  same name is the same thing started again).

A pod whose name fits none of the generated forms is its own workload (its
whole name); a container whose name is not known (Docker or Podman without
names, a pod the kubelet's logs do not name) has none: it is never merged
with another by guess.

>>> owner_of_pod("cart-7d9f5c6b8d-x2k4p"), owner_of_pod("db-2"), owner_of_pod("backup-29012345-q7zrt")
('cart', 'db', 'backup')
>>> owner_of_pod("node-exporter-8xkqz"), owner_of_pod("my-pod")
('node-exporter', 'my-pod')
"""

from __future__ import annotations

import re

from .attribution import CONTAINER, SYSTEM_SERVICE, Attribution
from .pods import PodNames

_SAFE = "[bcdfghjklmnpqrstvwxz2456789]"  # the alphabet Kubernetes' generated names draw from
_GENERATED = [
    re.compile(rf"^(.+)-\d{{8,10}}-{_SAFE}{{5}}$"),  # CronJob: <cronjob>-<scheduled minute>-<suffix>
    re.compile(rf"^(.+)-{_SAFE}{{6,10}}-{_SAFE}{{5}}$"),  # Deployment: <name>-<pod-template-hash>-<suffix>
    re.compile(r"^(.+)-\d+$"),  # StatefulSet: <name>-<ordinal>
    re.compile(rf"^(.+)-{_SAFE}{{5}}$"),  # DaemonSet, Job, ReplicaSet: <name>-<suffix>
]


def owner_of_pod(pod: str) -> str:
    """The controller a pod's name says made it: the name with its generated parts stripped."""
    for form in _GENERATED:
        match = form.match(pod)
        if match:
            return match.group(1)
    return pod


def workload_of(cgroup: str, attribution: Attribution | None, pod: PodNames | None, limit: int) -> str | None:
    """The workload key of a limited cgroup; None when none can be told (never a guess)."""
    if cgroup == "/":  # the host: not a workload
        return None
    kind = attribution.kind if attribution else None
    if kind == CONTAINER or (attribution and attribution.pod_uid):
        if pod is None:
            return None  # a container without names: its own, not merged
        return f"pod {pod.namespace}/{owner_of_pod(pod.pod)}/{pod.container or ''} limit {limit}"
    if kind == SYSTEM_SERVICE and attribution and attribution.systemd_unit:
        return f"unit {attribution.systemd_unit} limit {limit}"
    return f"cgroup {cgroup} limit {limit}"
