"""End-to-end tier: ModelPilot installed the way users install it, on a real node.

Once for the tier: the local control plane with a node (containerd, kubelet, kube-proxy,
kube-scheduler and the controllers; devcluster/node.py), the images built from Debian
packages and the lock file and imported into the node's containerd, and `kubectl apply -k`
of a dev overlay of manifests/ (it changes only the image and the Prometheus URL). The
operator and the activator run as pods under their ServiceAccounts; the meter is injected
into real model pods. Each test uses its own namespace.

A machine that cannot run a node (no root, no overlayfs, no cgroups) skips the tier with
the one line that says why.
"""

import json
import secrets
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from modelpilot.devcluster import controlplane, install, node
from modelpilot.devcluster.kubectl import kubectl
from modelpilot.devcluster.processes import wait_until

REPO = Path(__file__).resolve().parents[2]
STATE_DIR = REPO / ".local" / "e2e"
SAMPLE = REPO / "examples" / "sample-model" / "sample-chat.yaml"
SAMPLE_IMAGE = "ghcr.io/modelpilot/sample-model:0.1.0"
E2E_LABEL = "modelpilot.dev/e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e)


@dataclass
class Node:
    state: controlplane.ClusterState
    api: client.ApiClient
    images: dict[str, str]  # repository -> the ref imported into the node

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def node_ready(self) -> bool:
        try:
            conditions = self.core.read_node(node.NODE_NAME).status.conditions or []
        except client.ApiException:
            return False  # not registered yet
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return kubectl(self.state.kubeconfig, *args, stdin=stdin)

    def service_url(self, namespace: str, name: str, port: int = 8000) -> str:
        """The model's Service by its ClusterIP: kube-proxy's rules take it to a pod."""
        service = self.core.read_namespaced_service(name, namespace)
        return f"http://{service.spec.cluster_ip}:{port}"

    def wait_served(self, namespace: str, name: str, timeout: float = 60) -> str:
        """The Service's URL once a request through it reaches a loaded model (the pod Ready,
        its endpoint written, kube-proxy's rules in place)."""
        url = self.service_url(namespace, name)

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    return bool(resp.status == 200)
            except OSError:
                return False

        assert wait_until(answers, timeout, interval=0.25), f"{url} did not answer /health"
        return url

    def model(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "modelpilot.dev", "v1alpha1", namespace, "modeldeployments", name
        )
        return found

    def wait_status(
        self,
        namespace: str,
        name: str,
        check: Callable[[dict[str, Any]], bool],
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Wait for the ModelDeployment's status to satisfy `check`; fail with the status
        it had."""
        last: dict[str, Any] = {}

        def ok() -> bool:
            nonlocal last
            last = self.model(namespace, name).get("status") or {}
            try:
                return check(last)
            except (KeyError, TypeError, IndexError):
                return False

        assert wait_until(ok, timeout, interval=0.5), (
            f"{what}: not within {timeout:.0f}s; status: {json.dumps(last, indent=1)[:3000]}"
        )
        return last

    def prometheus(self, query: str) -> list[dict[str, Any]]:
        url = f"{self.state.prometheus_url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": query}
        )
        with urllib.request.urlopen(url, timeout=5) as resp:
            result: list[dict[str, Any]] = json.load(resp)["data"]["result"]
        return result


def sample_model(node_: "Node", **changes: Any) -> dict[str, Any]:
    """examples/sample-model/sample-chat.yaml with its image built here; `changes` replace
    top-level spec fields."""
    manifest: dict[str, Any] = yaml.safe_load(SAMPLE.read_text())
    for container in manifest["spec"]["template"]["spec"]["containers"]:
        if container["image"] == SAMPLE_IMAGE:
            container["image"] = node_.images["modelpilot.local/sample-model"]
    manifest["spec"].update(changes)
    return manifest


# Package scope: the node and its pods are gone before the next tier starts (they would
# otherwise compete for this machine's cores with it).
@pytest.fixture(scope="package")
def cluster_node() -> Iterator[Node]:
    try:
        node.preflight()
    except node.NodeUnsupportedError as exc:
        pytest.skip(f"no real node on this machine: {exc}")
    state = controlplane.up(STATE_DIR, node=True)
    try:
        api = config.new_client_from_config(str(state.kubeconfig))
        the_node = Node(state, api, {})
        assert wait_until(the_node.node_ready, 60), "the node did not get Ready in 60s"
        the_node.images = install.on_node(state)
        yield the_node
    finally:
        controlplane.down(STATE_DIR)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Iterator[None]:
    report = yield
    item.stash.setdefault(FAILED, False)
    if report.failed:
        item.stash[FAILED] = True
    return report


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def namespace(cluster_node: Node, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(3)}"
    cluster_node.core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={E2E_LABEL: "1"}))
    )
    yield name
    if request.node.stash.get(FAILED, False):
        # What the pods said, for the failure's report (the namespace goes next).
        for pod in cluster_node.core.list_namespaced_pod(name).items:
            for container in pod.spec.containers:
                for previous in (True, False):
                    logs = subprocess.run(
                        [
                            "kubectl",
                            f"--kubeconfig={cluster_node.state.kubeconfig}",
                            "-n",
                            name,
                            "logs",
                            pod.metadata.name,
                            "-c",
                            container.name,
                            f"--previous={str(previous).lower()}",
                            "--tail=30",
                        ],
                        capture_output=True,
                        text=True,
                    )
                    print(f"--- {pod.metadata.name}/{container.name} previous={previous}")
                    print(logs.stdout or logs.stderr)
    cluster_node.core.delete_namespace(name)
