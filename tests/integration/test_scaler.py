"""The scaler in the operator: a live contract series in the cluster's Prometheus drives
the owned Deployment's replicas through its scale subresource."""

import time
from pathlib import Path

import pytest
from kubernetes import client

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.servers import OperatorProcess
from modelpilot.times import parse_time

from .conftest import DEDICATED_SHARD, SHARD_LABEL, Exporter
from .operator_helpers import Models, equal, eventually, model_spec, replicas

pytestmark = pytest.mark.usefixtures("operator")


def test_scales_up_on_concurrency_then_down_after_the_delay(
    admin_api: client.ApiClient, namespace: str, exporter: Exporter
) -> None:
    models = Models(admin_api, namespace)
    models.create(
        "llm",
        model_spec(
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 4,
                "concurrencyTarget": 1,
                "targetUtilizationPercentage": 100,
                "autoscalingWindowSeconds": 10,
                "scaleDownDelaySeconds": 8,
            }
        ),
    )
    eventually(lambda: equal(replicas(admin_api, namespace, "llm"), 1))
    tracker = exporter(namespace, "llm")
    tracker.change("active", 3)  # three requests in flight, all the time

    eventually(lambda: equal(replicas(admin_api, namespace, "llm"), 3), timeout=45)
    # The status follows the scale write (the status worker writes it next).
    eventually(lambda: equal(models.status("llm")["autoscaling"]["desiredReplicas"], 3))
    status = models.status("llm")
    assert status["autoscaling"]["effective"]["scaleDownDelaySeconds"] == 8
    assert status["autoscaling"]["lastScaleTime"]
    assert models.condition("llm", "ScalingActive")["status"] == "True"

    tracker.change("active", -3)  # the load stops
    dropped = time.monotonic()
    # The 10 s average falls below 2 within a few seconds; the count holds for 8 s after.
    eventually(
        lambda: equal(models.condition("llm", "ScalingActive")["reason"], "ScaleDownDelayed"),
        timeout=20,
    )
    first_lower = time.monotonic()
    eventually(lambda: equal(replicas(admin_api, namespace, "llm"), 2), timeout=30)
    assert time.monotonic() - first_lower >= 7  # the delay held (tick granularity: 1 s)
    assert time.monotonic() - dropped >= 8
    eventually(lambda: equal(replicas(admin_api, namespace, "llm"), 1), timeout=30)
    events = {
        e.reason
        for e in client.CoreV1Api(admin_api)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=llm")
        .items
    }
    assert {"ScaledUp", "ScaledDown"} <= events


def test_no_series_holds_replicas_and_says_why(admin_api: client.ApiClient, namespace: str) -> None:
    models = Models(admin_api, namespace)
    models.create("quiet", model_spec(autoscaling={"minReplicas": 2, "maxReplicas": 5}))

    def unavailable() -> None:
        condition = models.condition("quiet", "ScalingActive")
        assert (condition["status"], condition["reason"]) == ("False", "MetricsUnavailable")
        assert "holding 2 replicas" in condition["message"]

    eventually(unavailable)
    assert replicas(admin_api, namespace, "quiet") == 2
    assert "desiredReplicas" not in models.status("quiet")["autoscaling"]


def test_an_hpa_on_the_deployment_stops_the_scaler(
    admin_api: client.ApiClient, namespace: str, exporter: Exporter
) -> None:
    models = Models(admin_api, namespace)
    models.create(
        "shared",
        model_spec(
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 4,
                "concurrencyTarget": 1,
                "targetUtilizationPercentage": 100,
                "autoscalingWindowSeconds": 10,
            }
        ),
    )
    eventually(lambda: equal(replicas(admin_api, namespace, "shared"), 1))
    client.AutoscalingV1Api(admin_api).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "shared-cpu"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shared"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "targetCPUUtilizationPercentage": 80,
            },
        },
    )

    def yielded() -> None:
        condition = models.condition("shared", "ScalingActive")
        assert (condition["status"], condition["reason"]) == (
            "False",
            "HorizontalPodAutoscalerPresent",
        )
        assert "shared-cpu" in condition["message"]

    eventually(yielded)
    exporter(namespace, "shared").change("active", 4)
    time.sleep(15)  # long enough for the series to reach Prometheus and several ticks
    assert replicas(admin_api, namespace, "shared") == 1
    yielded()


def test_a_pending_scale_down_survives_an_operator_restart(
    admin_api: client.ApiClient,
    namespace: str,
    exporter: Exporter,
    cluster: controlplane.ClusterState,
    kubeconfigs: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """Killed 5 s into a 30 s scale-down delay and started again (it leads once the dead
    one's lease expires, within 17 s), the operator scales down when the original delay
    ends (status.autoscaling.scaleDown kept the wait), not 30 s after its restart."""
    models = Models(admin_api, namespace)
    delay = 30
    models.create(
        "steady",
        model_spec(
            autoscaling={
                "maxReplicas": 4,
                "concurrencyTarget": 1,
                "targetUtilizationPercentage": 100,
                "autoscalingWindowSeconds": 10,
                "scaleDownDelaySeconds": delay,
            }
        ),
        labels={SHARD_LABEL: DEDICATED_SHARD},
    )

    def start() -> OperatorProcess:
        return OperatorProcess(
            tmp_path / f"operator-{time.monotonic_ns()}.log",
            kubeconfigs[1],
            namespace=namespace,
            selector=f"{SHARD_LABEL}={DEDICATED_SHARD}",
            prometheus_url=cluster.prometheus_url,
            scaler_interval=1,
            resync_seconds=1,
        )

    operator = start()
    try:
        tracker = exporter(namespace, "steady")
        tracker.change("active", 3)
        eventually(lambda: equal(replicas(admin_api, namespace, "steady"), 3), timeout=45)
        tracker.change("active", -3)

        def waiting() -> str:
            since: str = models.status("steady")["autoscaling"]["scaleDown"]["waitingSince"]
            return since

        since = parse_time(eventually(waiting, timeout=30))
        assert since is not None
        time.sleep(max(since.timestamp() + 5 - time.time(), 0))
        operator.kill()
        operator = start()
        eventually(lambda: equal(replicas(admin_api, namespace, "steady") < 3, True), timeout=40)
        took = time.time() - since.timestamp()
        # The delay, plus one scaler interval and the second the timestamp drops.
        assert delay - 1 <= took <= delay + 3, took
    finally:
        operator.stop()
