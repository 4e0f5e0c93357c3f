"""The operator on the local control plane, under its own RBAC: workload, status, events."""

import time
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from modelpilot.api import MODEL_LABEL
from modelpilot.devcluster.install import install
from modelpilot.devcluster.kubectl import kubectl
from modelpilot.devcluster.kubelet import ContainerState, FakeKubelet
from modelpilot.devcluster.servers import OperatorProcess

from .operator_helpers import Models, equal, eventually, model_spec, pod_labels

pytestmark = pytest.mark.usefixtures("operator")


@pytest.fixture
def models(admin_api: client.ApiClient, namespace: str) -> Models:
    return Models(admin_api, namespace)


def _events(api: client.ApiClient, namespace: str, name: str) -> dict[str, str]:
    items = (
        client.CoreV1Api(api)
        .list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.name={name},involvedObject.kind=ModelDeployment",
        )
        .items
    )
    return {e.reason: e.message for e in items}


def test_owned_deployment_and_service(
    admin_api: client.ApiClient, namespace: str, models: Models
) -> None:
    uid = models.create("chat", model_spec(autoscaling={"minReplicas": 2, "maxReplicas": 4}))[
        "metadata"
    ]["uid"]
    apps, core = client.AppsV1Api(admin_api), client.CoreV1Api(admin_api)
    dep = eventually(lambda: apps.read_namespaced_deployment("chat", namespace))
    assert dep.spec.replicas == 2
    assert dep.spec.selector.match_labels == {MODEL_LABEL: "chat"}
    assert dep.spec.template.metadata.labels[MODEL_LABEL] == "chat"
    (owner,) = dep.metadata.owner_references
    assert (owner.kind, owner.uid, owner.controller) == ("ModelDeployment", uid, True)
    container, meter = dep.spec.template.spec.containers
    assert container.resources.limits == {"nvidia.com/gpu": "1", "memory": "8Gi"}
    assert meter.name == "modelpilot-meter"
    svc = eventually(lambda: core.read_namespaced_service("chat", namespace))
    assert svc.spec.selector == {MODEL_LABEL: "chat"}
    assert [(p.port, p.target_port) for p in svc.spec.ports] == [(8000, "meter-http")]

    def status_written() -> None:
        status = models.status("chat")
        assert status["observedGeneration"] == 1
        assert status["replicas"]["desired"] == 2
        assert models.condition("chat", "Progressing")["reason"] == "WaitingForPods"

    eventually(status_written)


def test_status_for_ready_not_ready_unknown_and_terminating_pods(
    namespace: str, models: Models, kubelet: FakeKubelet
) -> None:
    models.create("mix", model_spec(autoscaling={"minReplicas": 4, "maxReplicas": 4}))
    for name, ready in (
        ("ready", "True"),
        ("not-ready", "False"),
        ("unknown", "Unknown"),
        ("absent", None),
        ("leaving", "True"),
    ):
        kubelet.create_pod(namespace, name, labels=pod_labels("mix"))
        kubelet.set_status(namespace, name, ready=ready)  # type: ignore[arg-type]
    kubelet.terminate(namespace, "leaving")

    def counted() -> None:
        status = models.status("mix")
        assert status["replicas"] == {"desired": 4, "starting": 3, "active": 1, "terminating": 1}
        assert status["pods"] == {"ready": 2, "notReady": 1, "unknown": 2}
        assert status["ready"] == "1/4"

    eventually(counted)
    ready = models.condition("mix", "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == (
        "True",
        "Serving",
        "1 of 4 replicas active",
    )
    assert models.condition("mix", "Progressing")["reason"] == "ReplicasStarting"

    kubelet.release(namespace, "leaving")
    kubelet.set_status(namespace, "not-ready", ready="True")
    eventually(
        lambda: equal(
            models.status("mix")["replicas"],
            {"desired": 4, "starting": 2, "active": 2, "terminating": 0},
        )
    )


def test_cold_start_is_measured_from_creation_to_first_ready(
    namespace: str, models: Models, kubelet: FakeKubelet
) -> None:
    models.create("cold", model_spec())
    created = kubelet.create_pod(namespace, "slow", labels=pod_labels("cold"))
    kubelet.set_status(namespace, "slow", ready="False")
    time.sleep(2.2)  # timestamps are whole seconds: 2 or 3 s apart
    ready = kubelet.set_status(namespace, "slow", ready="True")
    took = ready.status.conditions[-1].last_transition_time - created.metadata.creation_timestamp
    eventually(lambda: equal(models.status("cold")["coldStart"]["samples"], 1))
    cold = models.status("cold")["coldStart"]
    assert cold["lastSeconds"] == cold["p50Seconds"] == took.total_seconds() >= 2
    assert cold["recent"][0]["pod"] == "slow"

    # Not ready and ready again (a failing probe) is not another cold start.
    kubelet.set_status(namespace, "slow", ready="False")
    kubelet.set_status(namespace, "slow", ready="True")
    kubelet.create_pod(namespace, "quick", labels=pod_labels("cold"))
    kubelet.set_status(namespace, "quick", ready="True")
    eventually(lambda: equal(models.status("cold")["coldStart"]["samples"], 2))
    assert [s["pod"] for s in models.status("cold")["coldStart"]["recent"]] == ["slow", "quick"]


def test_restart_reasons_and_total_across_pod_replacement(
    admin_api: client.ApiClient, namespace: str, models: Models, kubelet: FakeKubelet
) -> None:
    models.create("crashy", model_spec())
    oom = kubelet.create_pod(namespace, "oom", labels=pod_labels("crashy"))
    kubelet.set_status(
        namespace,
        "oom",
        ready="False",
        containers=[
            ContainerState(
                ready=False,
                restart_count=2,
                last_terminated_reason="OOMKilled",
                last_exit_code=137,
                waiting_reason="CrashLoopBackOff",
            )
        ],
    )
    eventually(lambda: equal(models.status("crashy")["restarts"]["total"], 2))

    # A liveness kill: the kubelet's Killing event names it; the exit is a plain Error.
    live = kubelet.create_pod(namespace, "live", labels=pod_labels("crashy"))
    client.CoreV1Api(admin_api).create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "live.killing"},
            "involvedObject": {
                "kind": "Pod",
                "name": "live",
                "namespace": namespace,
                "uid": live.metadata.uid,
                "fieldPath": "spec.containers{model}",
            },
            "reason": "Killing",
            "type": "Normal",
            "message": "Container model failed liveness probe, will be restarted",
            "source": {"component": "kubelet"},
        },
    )
    kubelet.set_status(
        namespace,
        "live",
        ready="True",
        containers=[
            ContainerState(restart_count=1, last_terminated_reason="Error", last_exit_code=137)
        ],
    )

    def three_by_reason() -> None:
        restarts = models.status("crashy")["restarts"]
        assert restarts["total"] == 3
        assert {r["reason"]: r["count"] for r in restarts["byReason"]} == {
            "OOMKilled": 2,
            "LivenessProbeFailed": 1,
        }

    eventually(three_by_reason)
    assert oom.metadata.uid  # replaced below: its 2 restarts must stay counted

    kubelet.terminate(namespace, "oom")
    kubelet.release(namespace, "oom")
    kubelet.create_pod(namespace, "oom-2", labels=pod_labels("crashy"))
    kubelet.set_status(namespace, "oom-2", ready="True")
    eventually(
        lambda: equal(
            [c["pod"] for c in models.status("crashy")["restarts"]["containers"]], ["live", "oom-2"]
        )
    )
    assert models.status("crashy")["restarts"]["total"] == 3

    kubelet.set_status(
        namespace,
        "oom-2",
        ready="True",
        containers=[
            ContainerState(
                restart_count=1,
                last_terminated_reason="Error",
                last_exit_code=1,
            )
        ],
    )

    def four() -> None:
        restarts = models.status("crashy")["restarts"]
        assert restarts["total"] == 4
        assert restarts["last"]["pod"] == "oom-2"
        assert restarts["last"]["reason"] == "Error"

    eventually(four)
    degraded = models.condition("crashy", "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ContainerRestarts")
    events = eventually(
        lambda: _has(
            _events(admin_api, namespace, "crashy"),
            "ContainerOOMKilled",
            "LivenessProbeFailed",
            "ContainerCrashed",
        )
    )
    assert events["ContainerOOMKilled"] == (
        "Container model in pod oom 2 times (exit code 137) was OOM-killed: raise its memory "
        "limit or lower the batch size / context length"
    )


def _has(events: dict[str, str], *reasons: str) -> dict[str, str]:
    assert set(reasons) <= set(events), events
    return events


def test_invalid_spec_gets_a_condition_not_a_crash(
    admin_api: client.ApiClient, namespace: str, models: Models
) -> None:
    models.create("bad", model_spec(autoscaling={"minReplicas": 3, "maxReplicas": 2}))
    models.create("noport", model_spec(port=9000) | {"template": model_spec()["template"]})

    def invalid(name: str, field: str) -> None:
        ready = models.condition(name, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
        assert field in ready["message"]

    eventually(lambda: invalid("bad", "spec.autoscaling.minReplicas (3)"))
    eventually(lambda: invalid("noport", "spec.port 9000"))
    apps = client.AppsV1Api(admin_api)
    assert [d.metadata.name for d in apps.list_namespaced_deployment(namespace).items] == []
    assert "InvalidSpec" in eventually(
        lambda: _has(_events(admin_api, namespace, "bad"), "InvalidSpec")
    )

    # The operator keeps serving: a valid model next to them works, and fixing one heals it.
    models.create("good", model_spec())
    eventually(lambda: apps.read_namespaced_deployment("good", namespace))
    models.patch_spec("bad", {"autoscaling": {"minReplicas": 1}})
    eventually(lambda: apps.read_namespaced_deployment("bad", namespace))
    eventually(lambda: equal(models.status("bad")["observedGeneration"], 2))
    assert models.condition("bad", "Ready")["reason"] != "InvalidSpec"


def test_owned_objects_are_put_back_and_spec_changes_roll_out(
    admin_api: client.ApiClient, namespace: str, models: Models
) -> None:
    models.create("keep", model_spec())
    apps, core = client.AppsV1Api(admin_api), client.CoreV1Api(admin_api)
    first = eventually(lambda: apps.read_namespaced_deployment("keep", namespace))

    apps.patch_namespaced_deployment(
        "keep",
        namespace,
        {
            "spec": {
                "template": {"spec": {"containers": [{"name": "model", "image": "hand-edited:1"}]}}
            }
        },
    )
    eventually(
        lambda: equal(
            apps.read_namespaced_deployment("keep", namespace)
            .spec.template.spec.containers[0]
            .image,
            "example.invalid/model:1",
        )
    )

    apps.delete_namespaced_deployment("keep", namespace)
    recreated = eventually(lambda: apps.read_namespaced_deployment("keep", namespace))
    assert recreated.metadata.uid != first.metadata.uid

    core.delete_namespaced_service("keep", namespace)
    eventually(lambda: core.read_namespaced_service("keep", namespace))
    assert {"DeploymentRestored", "ServiceRestored"} <= set(
        eventually(
            lambda: _has(
                _events(admin_api, namespace, "keep"), "DeploymentRestored", "ServiceRestored"
            )
        )
    )

    spec = model_spec()
    spec["template"]["spec"]["containers"][0]["image"] = "example.invalid/model:2"
    models.patch_spec("keep", {"template": spec["template"]})
    eventually(
        lambda: equal(
            apps.read_namespaced_deployment("keep", namespace)
            .spec.template.spec.containers[0]
            .image,
            "example.invalid/model:2",
        )
    )
    eventually(lambda: equal(models.status("keep")["observedGeneration"], 2))


def test_status_is_not_rewritten_when_nothing_changes(
    namespace: str, models: Models, kubelet: FakeKubelet
) -> None:
    models.create("quiet", model_spec())
    kubelet.create_pod(namespace, "q", labels=pod_labels("quiet"))
    kubelet.set_status(namespace, "q", ready="True")
    eventually(lambda: equal(models.status("quiet").get("ready"), "1/1"))
    eventually(lambda: models.condition("quiet", "ScalingActive"))  # the scaler's part too

    def settled() -> None:
        # The first writes may still be arriving (on a loaded machine a condition has come
        # a few seconds after ScalingActive): first a status that stands still.
        version = models.get("quiet")["metadata"]["resourceVersion"]
        time.sleep(1.5)
        assert models.get("quiet")["metadata"]["resourceVersion"] == version

    eventually(settled, timeout=30)
    before = models.get("quiet")
    # The test operator re-evaluates every model each second: three rounds, no write.
    time.sleep(3.5)
    after = models.get("quiet")
    changed = [k for k in after["status"] if after["status"][k] != before["status"].get(k)]
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], (
        f"rewritten: status {changed}, annotations "
        f"{after['metadata'].get('annotations') != before['metadata'].get('annotations')}"
    )


def test_operator_metrics(
    operator: OperatorProcess, namespace: str, models: Models, kubelet: FakeKubelet
) -> None:
    models.create("metered", model_spec())
    kubelet.create_pod(namespace, "m", labels=pod_labels("metered"))
    kubelet.set_status(
        namespace,
        "m",
        ready="True",
        containers=[ContainerState(restart_count=1, last_terminated_reason="OOMKilled")],
    )
    labels = f'model_deployment="metered",namespace="{namespace}"'

    def scraped() -> str:
        with urllib.request.urlopen(operator.metrics_url, timeout=5) as resp:
            text: str = resp.read().decode()
        assert f'modelpilot_replicas{{{labels},state="active"}} 1.0' in text
        assert f'modelpilot_pod_readiness{{condition="true",{labels}}} 1.0' in text
        assert f'modelpilot_container_restarts_total{{{labels},reason="OOMKilled"}} 1.0' in text
        return text

    eventually(scraped)


def test_kubectl_install_example_and_columns(
    kubeconfigs: tuple[Path, Path], namespace: str
) -> None:
    admin = kubeconfigs[0]
    repo = Path(__file__).resolve().parents[2]
    install(admin, repo / "manifests")
    kubectl(admin, "apply", "-n", namespace, "-f", str(repo / "examples"))

    def columns() -> str:
        out = kubectl(admin, "get", "md", "-n", namespace, "-o", "wide")
        header, row = out.splitlines()[:2]
        assert header.split() == [
            "NAME",
            "READY",
            "ACTIVE",
            "STARTING",
            "RESTARTS",
            "GPU%",
            "MODE",
            "RECS",
            "AGE",
            "DESIRED",
            "TERMINATING",
            "NOTREADY",
            "UNKNOWN",
            "LAST-RESTART",
            "COLD-START",
            "MIN",
            "ROUTING",
        ]
        assert row.split()[:5] == ["llm-chat", "0/1", "0", "0", "0"]
        return out

    eventually(columns)
    explained = kubectl(admin, "explain", "md.spec.autoscaling.scaleDownDelaySeconds")
    assert "Raise it when replicas thrash" in " ".join(explained.split())


def test_quick_edits_are_not_taken_for_drift(
    admin_api: client.ApiClient, namespace: str, models: Models
) -> None:
    """The operator's own Deployment updates are not outside changes, however close
    together the spec edits come; the last edit wins."""
    models.create("edited", model_spec())
    apps = client.AppsV1Api(admin_api)
    eventually(lambda: apps.read_namespaced_deployment("edited", namespace))
    for i in range(1, 21):
        models.patch_spec("edited", {"meter": {"maxConcurrency": i}})

    def last_edit_applied() -> None:
        deployment = apps.read_namespaced_deployment("edited", namespace)
        meter = next(c for c in deployment.spec.template.spec.containers if "meter" in c.name)
        assert "--max-concurrency=20" in meter.args

    eventually(last_edit_applied, timeout=30)
    eventually(lambda: equal(models.status("edited")["observedGeneration"], 21))
    assert "DeploymentRestored" not in _events(admin_api, namespace, "edited")
