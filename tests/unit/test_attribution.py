"""Container attribution from real-world cgroup path forms, and pod names from the kubelet's log tree."""

from __future__ import annotations

import pytest

from oomguard.identity.attribution import CONTAINER, HOST, SYSTEM_SERVICE, attribute
from oomguard.identity.pods import PodDirectory, PodNames

ID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00998877665544332211"
ID2 = "aa" * 32
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
UID_ = UID.replace("-", "_")

# (path, kind, runtime, container_id, pod_uid, qos, unit)
CASES = [
    # kubelet, cgroupfs driver
    (f"/kubepods/burstable/pod{UID}/{ID}", CONTAINER, None, ID, UID, "burstable", None),
    (f"/kubepods/besteffort/pod{UID}/{ID}", CONTAINER, None, ID, UID, "besteffort", None),
    (f"/kubepods/pod{UID}/{ID}", CONTAINER, None, ID, UID, "guaranteed", None),
    (f"/kubepods/burstable/pod{UID}", CONTAINER, None, None, UID, "burstable", None),  # the pod's own cgroup
    # kubelet, systemd driver, each runtime
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope",
     CONTAINER, "containerd", ID, UID, "burstable", f"cri-containerd-{ID}.scope"),
    (f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope",
     CONTAINER, "cri-o", ID, UID, "besteffort", f"crio-{ID}.scope"),
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope",
     CONTAINER, "containerd", ID, UID, "guaranteed", f"cri-containerd-{ID}.scope"),
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/docker-{ID}.scope",
     CONTAINER, "docker", ID, UID, "burstable", f"docker-{ID}.scope"),
    # cri-o's monitor is not the container
    (f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope",
     CONTAINER, None, None, UID, "burstable", f"crio-conmon-{ID}.scope"),
    # plain docker, both drivers; podman
    (f"/system.slice/docker-{ID}.scope", CONTAINER, "docker", ID, None, None, f"docker-{ID}.scope"),
    (f"/docker/{ID}", CONTAINER, "docker", ID, None, None, None),
    (f"/machine.slice/libpod-{ID}.scope", CONTAINER, "podman", ID, None, None, f"libpod-{ID}.scope"),
    # podman with the cgroupfs manager, as Podman 4.3 lays it out on this host's hybrid hierarchy; its monitor
    (f"/libpod_parent/libpod-{ID}", CONTAINER, "podman", ID, None, None, None),
    ("/libpod_parent/conmon", HOST, None, None, None, None, None),
    (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope",
     CONTAINER, "podman", ID, None, None, f"libpod-{ID}.scope"),
    # nested: docker-in-docker, kind (a kubelet inside a docker container), our own test tree under a v1 cgroup
    (f"/docker/{ID2}/docker/{ID}", CONTAINER, "docker", ID, None, None, None),
    ((f"/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
      f"kubelet-kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
     CONTAINER, "containerd", ID, UID, "burstable", f"cri-containerd-{ID}.scope"),
    (f"/process_api/9ba67034/kubepods/burstable/pod{UID}/{ID}", CONTAINER, None, ID, UID, "burstable", None),
    # the rest of the node
    ("/system.slice/nginx.service", SYSTEM_SERVICE, None, None, None, None, "nginx.service"),
    ("/system.slice/containerd.service", SYSTEM_SERVICE, None, None, None, None, "containerd.service"),
    ("/user.slice/user-1000.slice/session-3.scope", HOST, None, None, None, None, "session-3.scope"),
    ("/", HOST, None, None, None, None, None),
    ("", HOST, None, None, None, None, None),
    # malformed and unusual: never a crash, never a wrong container
    (f"/kubepods/burstable/podNOTAUID/{ID}", HOST, None, None, None, None, None),
    (f"/kubepods/burstable/pod{UID}/not-an-id", CONTAINER, None, None, UID, "burstable", None),
    (f"/kubepods/burstable/pod{UID}/{ID[:10]}", CONTAINER, None, None, UID, "burstable", None),  # too short
    ("/system.slice/my service with spaces.service", SYSTEM_SERVICE, None, None, None, None,
     "my service with spaces.service"),
    ("/system.slice/caf\u00e9\u2603.service", SYSTEM_SERVICE, None, None, None, None, "caf\u00e9\u2603.service"),
    (f"/docker-{ID}.scope.evil/x", HOST, None, None, None, None, None),
    ("//kubepods///", HOST, None, None, None, None, None),
    (f"/kubepods/burstable/pod{UID}/{ID}\n0::/", CONTAINER, None, None, UID, "burstable", None),
]


@pytest.mark.parametrize("path, kind, runtime, container_id, pod_uid, qos, unit", CASES)
def test_path_forms(path, kind, runtime, container_id, pod_uid, qos, unit):
    got = attribute(path)
    assert (got.kind, got.runtime, got.container_id, got.pod_uid, got.qos, got.systemd_unit) == \
        (kind, runtime, container_id, pod_uid, qos, unit)
    assert got.cgroup_path == path


def test_short_descriptions():
    assert attribute(f"/kubepods/pod{UID}/{ID}").short() == f"container {ID[:12]}, pod {UID}"
    assert attribute("/system.slice/nginx.service").short() == "system service (nginx.service)"
    assert attribute("/").short() == "host"


def make_log_tree(root, namespace="shop", pod="cart-7d9f", uid=UID, containers=("app",), ids=(ID,)):
    for name in containers:
        (root / "pods" / f"{namespace}_{pod}_{uid}" / name).mkdir(parents=True)
        (root / "pods" / f"{namespace}_{pod}_{uid}" / name / "0.log").write_text("")
    (root / "containers").mkdir(exist_ok=True)
    for name, cid in zip(containers, ids):
        (root / "containers" / f"{pod}_{namespace}_{name}-{cid}.log").symlink_to(
            root / "pods" / f"{namespace}_{pod}_{uid}" / name / "0.log")


def test_pod_names_from_the_log_tree(tmp_path):
    make_log_tree(tmp_path, containers=("app", "sidecar"), ids=(ID, ID2))
    pods = PodDirectory(tmp_path / "pods")
    assert pods.lookup(UID, ID2) == PodNames("shop", "cart-7d9f", "sidecar")
    assert pods.lookup(UID, ID).container == "app"
    assert pods.lookup(UID, "ff" * 32).container is None  # two containers, unknown ID: no guess
    assert pods.lookup(None, ID) is None


def test_single_container_pod_needs_no_containers_dir(tmp_path):
    (tmp_path / "pods" / f"kube-system_coredns-abc_{UID}" / "coredns").mkdir(parents=True)
    pods = PodDirectory(tmp_path / "pods")
    assert pods.lookup(UID, ID) == PodNames("kube-system", "coredns-abc", "coredns")


def test_absent_tree_and_rescan_timing(tmp_path):
    now = [0.0]
    pods = PodDirectory(tmp_path / "pods", clock=lambda: now[0], rescan_s=10)
    assert pods.lookup(UID, ID) is None  # no tree at all: unknown, not an error
    make_log_tree(tmp_path)
    now[0] = 5.0
    assert pods.lookup(UID, ID) is None  # scanned 5 s ago: not yet
    now[0] = 11.0
    assert pods.lookup(UID, ID) == PodNames("shop", "cart-7d9f", "app")


def test_odd_entries_in_the_log_tree_are_ignored(tmp_path):
    (tmp_path / "pods" / "no-underscores").mkdir(parents=True)
    (tmp_path / "pods" / "a_b_c_d").mkdir()
    (tmp_path / "pods" / "__").mkdir()
    assert PodDirectory(tmp_path / "pods").lookup("c", None) is None
