"""Play the kubelet on a control plane that has none: create pods and write their status.

Tests use it to give pods Ready conditions, container restarts with their reasons and
terminating states, exactly as a kubelet would report them.
"""

from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes import client
from pydantic import BaseModel

from modelpilot.times import format_time

FINALIZER = "modelpilot.dev/fake-kubelet"
NODE_NAME = "local-node"
IMAGE = "example.invalid/model:1"

ReadyStatus = Literal["True", "False", "Unknown"]


class ContainerState(BaseModel):
    """What the kubelet reports for one container."""

    name: str = "model"
    ready: bool = True
    restart_count: int = 0
    # Why the previous run ended (lastState.terminated), e.g. OOMKilled, Error, Completed.
    last_terminated_reason: str | None = None
    last_exit_code: int | None = None
    last_finished_at: datetime | None = None
    # Why the container is not running now (state.waiting), e.g. CrashLoopBackOff.
    waiting_reason: str | None = None


def now_text() -> str:
    """The current time as pod status writes it."""
    return format_time(datetime.now(UTC))


def replace_status(
    core: client.CoreV1Api, namespace: str, name: str, status: dict[str, Any]
) -> client.V1Pod:
    """Write a pod's status whole, as a kubelet does (a strategic merge would keep old
    conditions)."""
    patch = [{"op": "add", "path": "/status", "value": status}]
    return core.patch_namespaced_pod_status(name, namespace, patch)


def _container_status(state: ContainerState, image: str) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": state.name,
        "ready": state.ready,
        "restartCount": state.restart_count,
        "image": image,
        "imageID": "",
        "started": state.waiting_reason is None,
    }
    if state.waiting_reason:
        status["state"] = {"waiting": {"reason": state.waiting_reason}}
    else:
        status["state"] = {"running": {"startedAt": now_text()}}
    if state.last_terminated_reason:
        finished = state.last_finished_at or datetime.now(UTC)
        status["lastState"] = {
            "terminated": {
                "reason": state.last_terminated_reason,
                "exitCode": state.last_exit_code if state.last_exit_code is not None else 1,
                "startedAt": format_time(finished),
                "finishedAt": format_time(finished),
            }
        }
    return status


class FakeKubelet:
    def __init__(self, api: client.ApiClient, node_name: str = NODE_NAME) -> None:
        self.core = client.CoreV1Api(api)
        self.node_name = node_name

    def register_node(self) -> None:
        """Create our Node object. The local control plane does not need it; a real cluster's
        pod garbage collector deletes pods bound to a node that does not exist."""
        node = client.V1Node(metadata=client.V1ObjectMeta(name=self.node_name))
        try:
            self.core.create_node(node)
        except client.ApiException as exc:
            if exc.status != 409:
                raise

    def create_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str] | None = None,
        containers: tuple[str, ...] = ("model",),
        owner: dict[str, Any] | None = None,  # V1OwnerReference fields, snake_case
        finalizer: bool = False,
    ) -> client.V1Pod:
        """A pod bound to our pretend node (the API server accepts a nodeName that no Node
        object backs). `finalizer` keeps it visible once deleted, as a terminating pod."""
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=name,
                labels=labels or {},
                owner_references=[client.V1OwnerReference(**owner)] if owner else None,
                finalizers=[FINALIZER] if finalizer else None,
            ),
            spec=client.V1PodSpec(
                node_name=self.node_name,
                containers=[client.V1Container(name=c, image=IMAGE) for c in containers],
            ),
        )
        return self.core.create_namespaced_pod(namespace, pod)

    def set_status(
        self,
        namespace: str,
        name: str,
        ready: ReadyStatus | None,
        containers: list[ContainerState] | None = None,
        phase: str = "Running",
        reason: str | None = None,
        pod_ip: str = "127.0.0.1",
    ) -> client.V1Pod:
        """Write pod status: `ready` None leaves the Ready condition out entirely. The pod
        IP is any loopback address a test serves the pod's ports on."""
        conditions: list[dict[str, Any]] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_text()}
        ]
        if ready is not None:
            conditions.append(
                {
                    "type": "Ready",
                    "status": ready,
                    "lastTransitionTime": now_text(),
                    **({"reason": reason} if reason else {}),
                }
            )
        states = containers if containers is not None else [ContainerState(ready=ready == "True")]
        status = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "podIP": pod_ip,
            "startTime": now_text(),
            "containerStatuses": [_container_status(s, IMAGE) for s in states],
        }
        return replace_status(self.core, namespace, name, status)

    def terminate(self, namespace: str, name: str) -> None:
        """Delete the pod but keep it around, terminating (deletionTimestamp set)."""
        finalizers = self._finalizers(namespace, name)
        if FINALIZER not in finalizers:
            self._set_finalizers(namespace, name, [*finalizers, FINALIZER])
        self.core.delete_namespaced_pod(name, namespace)

    def release(self, namespace: str, name: str) -> None:
        """Let a terminating pod go: drop our finalizer and, as a kubelet does once the
        containers stopped, confirm the deletion with a zero grace period."""
        rest = [f for f in self._finalizers(namespace, name) if f != FINALIZER]
        self._set_finalizers(namespace, name, rest)
        self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)

    def _finalizers(self, namespace: str, name: str) -> list[str]:
        meta = self.core.read_namespaced_pod(name, namespace).metadata
        return list((meta.finalizers if meta else None) or [])

    def _set_finalizers(self, namespace: str, name: str, finalizers: list[str]) -> None:
        # A JSON patch (a list body): strategic merge would union the finalizer lists;
        # "add" also replaces the member when it is there.
        patch = [{"op": "add", "path": "/metadata/finalizers", "value": finalizers}]
        self.core.patch_namespaced_pod(name, namespace, patch)
