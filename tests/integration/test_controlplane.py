"""Smoke tests of the local control plane itself: CRDs and status, the kubelet helper, RBAC,
port choice and PID-scoped shutdown."""

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.kubelet import ContainerState, FakeKubelet

from .conftest import apply_crd
from .operator_helpers import eventually

GADGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.smoke.modelpilot.dev"},
    "spec": {
        "group": "smoke.modelpilot.dev",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {
                                "type": "object",
                                "properties": {"seen": {"type": "integer"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def test_custom_object_status_is_patched_through_the_subresource(
    admin_api: client.ApiClient, namespace: str
) -> None:
    apply_crd(client.ApiextensionsV1Api(admin_api), GADGET_CRD)
    custom = client.CustomObjectsApi(admin_api)
    args = ("smoke.modelpilot.dev", "v1", namespace, "gadgets")
    custom.create_namespaced_custom_object(
        *args,
        {
            "apiVersion": "smoke.modelpilot.dev/v1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"size": 3},
            "status": {"seen": 99},
        },
    )
    # With a status subresource, status in a create is dropped ...
    assert "status" not in custom.get_namespaced_custom_object(*args, "g")
    # ... and only the /status endpoint writes it.
    custom.patch_namespaced_custom_object_status(*args, "g", {"status": {"seen": 3}})
    got = custom.get_namespaced_custom_object(*args, "g")
    assert got["status"] == {"seen": 3}
    assert got["spec"] == {"size": 3}


def test_kubelet_helper_writes_pod_status(kubelet: FakeKubelet, namespace: str) -> None:
    kubelet.create_pod(namespace, "p1", labels={"app": "m"}, containers=("model", "meter"))
    kubelet.set_status(
        namespace,
        "p1",
        ready="Unknown",
        containers=[
            ContainerState(
                name="model",
                ready=False,
                restart_count=4,
                last_terminated_reason="OOMKilled",
                last_exit_code=137,
                waiting_reason="CrashLoopBackOff",
            ),
            ContainerState(name="meter", ready=True),
        ],
    )
    pod = kubelet.core.read_namespaced_pod("p1", namespace)
    ready = [c for c in pod.status.conditions if c.type == "Ready"]
    assert [c.status for c in ready] == ["Unknown"]
    model = {s.name: s for s in pod.status.container_statuses}["model"]
    assert model.restart_count == 4
    assert model.last_state.terminated.reason == "OOMKilled"
    assert model.last_state.terminated.exit_code == 137
    assert model.state.waiting.reason == "CrashLoopBackOff"

    kubelet.set_status(namespace, "p1", ready=None)
    pod = kubelet.core.read_namespaced_pod("p1", namespace)
    assert not [c for c in pod.status.conditions if c.type == "Ready"]


def test_terminating_pod_stays_until_released(kubelet: FakeKubelet, namespace: str) -> None:
    kubelet.create_pod(namespace, "t1")
    kubelet.terminate(namespace, "t1")
    pod = kubelet.core.read_namespaced_pod("t1", namespace)
    assert pod.metadata.deletion_timestamp is not None
    kubelet.release(namespace, "t1")
    with pytest.raises(client.ApiException) as gone:
        kubelet.core.read_namespaced_pod("t1", namespace)
    assert gone.value.status == 404


def test_rbac_is_enforced_for_the_operator_identity(
    admin_api: client.ApiClient, operator_api: client.ApiClient, namespace: str
) -> None:
    client.CoreV1Api(admin_api).list_namespaced_secret(namespace)
    with pytest.raises(client.ApiException) as denied:
        client.CoreV1Api(operator_api).list_namespaced_secret(namespace)
    assert denied.value.status == 403
    assert controlplane.OPERATOR_USER in denied.value.body

    # Granting a Role lets it through: authorization, not a blanket refusal, said no.
    rbac = client.RbacAuthorizationV1Api(admin_api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pods-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pods-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pods-reader",
            },
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": controlplane.OPERATOR_SERVICE_ACCOUNT,
                    "namespace": controlplane.OPERATOR_NAMESPACE,
                }
            ],
        },
    )
    # The authorizer learns of new bindings through a watch: allow it a moment.
    assert (
        eventually(
            lambda: client.CoreV1Api(operator_api).list_namespaced_pod(namespace),
            retry_on=(client.ApiException,),
        ).items
        == []
    )


def test_second_control_plane_takes_other_ports_and_down_stops_only_its_own(
    cluster: controlplane.ClusterState, tmp_path: Path
) -> None:
    # The session's control plane holds the preferred ports (or others): a second one must
    # pick free ports, and its `down` must leave the first running.
    second = controlplane.up(tmp_path / "second")
    try:
        assert controlplane.is_healthy(second)
        assert second.api_url != cluster.api_url
        assert second.prometheus_url != cluster.prometheus_url
        assert set(second.pids.values()).isdisjoint(cluster.pids.values())
        # `up` again is harmless: same processes.
        assert controlplane.up(tmp_path / "second").pids == second.pids
        api = config.new_client_from_config(config_file=str(second.kubeconfig))
        assert client.VersionApi(api).get_code().git_version.startswith("v1.20")
    finally:
        stopped = controlplane.down(tmp_path / "second")
    assert sorted(stopped) == ["etcd", "kube-apiserver", "prometheus"]
    assert controlplane.is_healthy(cluster)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_down_without_a_saved_state_still_unmounts_what_its_node_mounted(
    tmp_path: Path,
) -> None:
    # `up` died before it saved its state: nothing recorded to stop, but a node's mounts
    # under its folder (containerd's snapshots) would outlive it. A sibling folder whose
    # name begins the same is another's.
    inside, beside = tmp_path / "node" / "snapshots" / "1", tmp_path / "node2"
    for folder in (inside, beside):
        folder.mkdir(parents=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(folder)], check=True)
    try:
        assert controlplane.down(tmp_path) == []
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        assert str(inside) not in mounts
        assert str(beside) in mounts
    finally:
        for folder in (inside, beside):
            subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)
