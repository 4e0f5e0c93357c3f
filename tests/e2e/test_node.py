"""On a real node: the install, a served and counted model, restart reasons the kubelet
really reports, scaling with real cold starts, and the GPU agent on a node without a GPU."""

import json
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client

from modelpilot.devcluster import node
from modelpilot.devcluster.processes import wait_until
from tests.e2e.conftest import Node, sample_model


def _post(url: str, body: dict[str, Any] | None = None, timeout: float = 30) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (ConnectionError, urllib.error.URLError):
        return 0  # the process died while answering: what a crash looks like


def _apply(cluster_node: Node, namespace: str, manifest: dict[str, Any]) -> None:
    cluster_node.kubectl("-n", namespace, "apply", "-f", "-", stdin=json.dumps(manifest))


def _model_pods(cluster_node: Node, namespace: str) -> list[client.V1Pod]:
    pods: list[client.V1Pod] = cluster_node.core.list_namespaced_pod(
        namespace, label_selector="modelpilot.dev/model-deployment"
    ).items
    return pods


def test_the_operator_runs_as_a_pod_under_its_service_account(cluster_node: Node) -> None:
    pods = cluster_node.core.list_namespaced_pod(
        "modelpilot-system", label_selector="app.kubernetes.io/name=modelpilot-operator"
    ).items
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.node_name == node.NODE_NAME
        assert pod.spec.service_account_name == "modelpilot-operator"
        assert pod.spec.containers[0].image == cluster_node.images["modelpilot.local/modelpilot"]
        assert pod.status.phase == "Running"
    lease = client.CoordinationV1Api(cluster_node.api).read_namespaced_lease(
        "modelpilot-operator", "modelpilot-system"
    )
    assert lease.spec.holder_identity.split("_")[0] in {p.metadata.name for p in pods}


def test_the_sample_model_serves_through_its_service_and_is_counted(
    cluster_node: Node, namespace: str
) -> None:
    _apply(cluster_node, namespace, sample_model(cluster_node))
    status = cluster_node.wait_status(
        namespace,
        "sample-chat",
        lambda s: s["replicas"]["active"] == 1 and s["pods"]["ready"] == 1,
        180,
        "the sample model's replica active",
    )
    assert status["replicas"]["desired"] == 1
    pod = _model_pods(cluster_node, namespace)[0]
    assert [c.name for c in pod.spec.containers] == ["model", "modelpilot-meter"]
    assert pod.spec.containers[1].image == cluster_node.images["modelpilot.local/modelpilot"]

    url = cluster_node.wait_served(namespace, "sample-chat") + "/v1/chat/completions"
    chat = {"model": "sample", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    codes = [_post(url, chat) for _ in range(12)]
    assert codes == [200] * 12

    def counted() -> float:
        found = cluster_node.prometheus(
            f'sum(modelpilot_requests_total{{job="modelpilot-meter",namespace="{namespace}",'
            'status_code="200"})'
        )
        return float(found[0]["value"][1]) if found else -1.0

    assert wait_until(lambda: counted() == 12, 60, interval=1), (
        f"Prometheus counted {counted()} of 12 requests"
    )


def _model(
    cluster_node: Node, name: str, load_seconds: float = 2, **container: Any
) -> dict[str, Any]:
    """The sample model under another name, loading in `load_seconds`, its model container
    changed by `container`, one replica unless the autoscaling is changed after."""
    manifest = sample_model(
        cluster_node,
        autoscaling={"minReplicas": 1, "maxReplicas": 1},
        advisor={"mode": "Off"},
    )
    manifest["metadata"]["name"] = name
    model = manifest["spec"]["template"]["spec"]["containers"][0]
    args = model["args"]
    args[args.index("--load-seconds") + 1] = str(load_seconds)
    model.update(container)
    return manifest


def _by_reason(status: dict[str, Any]) -> dict[str, int]:
    return {r["reason"]: r["count"] for r in status["restarts"].get("byReason", [])}


def test_a_crash_and_an_oom_kill_are_recorded_with_their_reasons(
    cluster_node: Node, namespace: str
) -> None:
    limits = {"resources": {"limits": {"memory": "128Mi"}, "requests": {"memory": "64Mi"}}}
    _apply(cluster_node, namespace, _model(cluster_node, "fragile", **limits))
    cluster_node.wait_status(
        namespace, "fragile", lambda s: s["replicas"]["active"] == 1, 120, "fragile active"
    )
    url = cluster_node.wait_served(namespace, "fragile")

    # The model process exits with status 1 (the meter answers 502 for it).
    assert _post(f"{url}/crash") == 502
    status = cluster_node.wait_status(
        namespace, "fragile", lambda s: _by_reason(s).get("Error") == 1, 60, "Error restart"
    )
    assert status["restarts"]["last"]["reason"] == "Error"
    assert status["restarts"]["last"]["exitCode"] == 1
    assert status["restarts"]["last"]["container"] == "model"

    # Then it allocates past its memory limit: the kernel kills it.
    cluster_node.wait_served(namespace, "fragile")
    _post(f"{url}/allocate?mb=256")
    status = cluster_node.wait_status(
        namespace, "fragile", lambda s: _by_reason(s).get("OOMKilled") == 1, 60, "OOMKilled"
    )
    assert status["restarts"]["last"]["reason"] == "OOMKilled"
    assert status["restarts"]["last"]["exitCode"] == 137
    assert status["restarts"]["total"] == 2


def test_a_failing_liveness_probe_restarts_and_a_failing_readiness_probe_is_not_ready(
    cluster_node: Node, namespace: str
) -> None:
    def probe(path: str) -> dict[str, Any]:
        return {"httpGet": {"path": path, "port": 8000}, "periodSeconds": 1, "failureThreshold": 2}

    _apply(
        cluster_node,
        namespace,
        _model(
            cluster_node, "unlive", livenessProbe={**probe("/status/500"), "initialDelaySeconds": 3}
        ),
    )
    _apply(
        cluster_node,
        namespace,
        _model(cluster_node, "unready", readinessProbe=probe("/status/503")),
    )

    status = cluster_node.wait_status(
        namespace,
        "unlive",
        lambda s: _by_reason(s).get("LivenessProbeFailed", 0) >= 1,
        90,
        "a LivenessProbeFailed restart",
    )
    assert status["restarts"]["last"]["container"] == "model"
    status = cluster_node.wait_status(
        namespace, "unready", lambda s: s["pods"]["notReady"] == 1, 60, "a not-ready pod"
    )
    assert status["pods"]["ready"] == 0
    assert status["replicas"]["active"] == 0
    assert status["restarts"]["total"] == 0


def test_load_adds_replicas_that_really_cold_start_then_they_go(
    cluster_node: Node, namespace: str
) -> None:
    manifest = _model(cluster_node, "busy", load_seconds=4)
    manifest["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 3,
        "concurrencyTarget": 2,
        "targetUtilizationPercentage": 100,
        "autoscalingWindowSeconds": 10,
        "scaleDownDelaySeconds": 10,
    }
    _apply(cluster_node, namespace, manifest)
    cluster_node.wait_status(
        namespace, "busy", lambda s: s["replicas"]["active"] == 1, 120, "busy active"
    )
    url = cluster_node.wait_served(namespace, "busy")
    seen_starting = 0
    stop = False

    codes: list[int] = []

    def load() -> None:
        while not stop:
            try:
                with urllib.request.urlopen(f"{url}/slow?seconds=1", timeout=30) as resp:
                    resp.read()
                    codes.append(resp.status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)

    def scaled(status: dict[str, Any]) -> bool:
        nonlocal seen_starting
        seen_starting = max(seen_starting, status["replicas"]["starting"])
        return bool(status["replicas"]["active"] == 3)

    with ThreadPoolExecutor(6) as pool:
        workers = [pool.submit(load) for _ in range(6)]
        try:
            status = cluster_node.wait_status(namespace, "busy", scaled, 150, "3 active replicas")
        finally:
            stop = True
        for worker in workers:
            worker.result()
    assert seen_starting >= 1, "no replica was seen starting"
    print(f"load: {len(codes)} requests, {Counter(codes)}")
    assert codes.count(200) >= 0.9 * len(codes), Counter(codes)
    # The two new pods' cold starts were measured: created -> Ready, with the 4 s load in it.
    assert status["coldStart"]["samples"] >= 3
    assert all(sample["seconds"] >= 4 for sample in status["coldStart"]["recent"])

    status = cluster_node.wait_status(
        namespace, "busy", lambda s: s["replicas"]["desired"] == 1, 120, "scaled back to 1"
    )
    # Usually seconds. A pod is deleted once the kubelet has reclaimed its sandbox too; the
    # kubelet (1.20) skips a sandbox its containers still name when it sees the pod exit,
    # and its container GC, run once a minute, reclaims that one later: CI saw a pod, its
    # containers gone, still terminating 60 s on.
    cluster_node.wait_status(
        namespace,
        "busy",
        lambda s: s["replicas"]["active"] == 1 and s["replicas"]["terminating"] == 0,
        150,
        "the extra pods gone",
    )
    assert len(_model_pods(cluster_node, namespace)) == 1


def test_the_gpu_agent_on_a_node_without_a_gpu_reports_down_and_keeps_running(
    cluster_node: Node,
) -> None:
    # The DaemonSet runs on nodes labelled as GPU nodes; this one has no GPU or driver.
    label = {"metadata": {"labels": {"nvidia.com/gpu.present": "true"}}}
    cluster_node.core.patch_node(node.NODE_NAME, label)
    try:
        selector = "app.kubernetes.io/name=modelpilot-gpu-agent"

        def running() -> client.V1Pod | None:
            pods = cluster_node.core.list_namespaced_pod(
                "modelpilot-system", label_selector=selector
            ).items
            if pods and pods[0].status.phase == "Running" and pods[0].status.pod_ip:
                return pods[0]
            return None

        assert wait_until(lambda: running() is not None, 90), "the GPU agent pod did not run"
        pod = running()
        assert pod is not None

        def up_value() -> str | None:
            try:
                with urllib.request.urlopen(
                    f"http://{pod.status.pod_ip}:9400/metrics", timeout=2
                ) as resp:
                    text = resp.read().decode()
            except OSError:
                return None
            return next(
                (
                    line.split()[-1]
                    for line in text.splitlines()
                    if line.startswith("modelpilot_gpu_agent_up")
                ),
                None,
            )

        assert wait_until(lambda: up_value() is not None, 30), "no modelpilot_gpu_agent_up"
        assert float(up_value() or "nan") == 0
        # Still the same container, not restarting, after a few of its samples.
        assert not wait_until(
            lambda: (
                (
                    cluster_node.core.read_namespaced_pod(pod.metadata.name, "modelpilot-system")
                    .status.container_statuses[0]
                    .restart_count
                )
                > 0
            ),
            15,
        )
    finally:
        cluster_node.core.patch_node(
            node.NODE_NAME, {"metadata": {"labels": {"nvidia.com/gpu.present": None}}}
        )
