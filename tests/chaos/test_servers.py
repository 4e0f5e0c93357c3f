"""The servers the operator depends on fail under it: Prometheus hung and down during a
load drop (no scale-down on no data; ScalingActive=False within two scaler intervals;
scaling resumes), and the API server stopped and started (status writes resume)."""

import time
from collections.abc import Callable

from kubernetes import client

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.processes import wait_until
from tests.integration.conftest import Exporter
from tests.integration.operator_helpers import Models, equal, eventually, model_spec, replicas

from .conftest import Server, StartOperator, figures

INTERVAL = 1.0  # the operators' scaler interval here
OUTAGE = 20.0


def _scaled_model(
    models: Models, exporter: Exporter, admin_api: client.ApiClient
) -> Callable[[int], None]:
    models.create(
        "steady",
        model_spec(
            autoscaling={
                "maxReplicas": 4,
                "concurrencyTarget": 1,
                "targetUtilizationPercentage": 100,
                "autoscalingWindowSeconds": 10,
                "scaleDownDelaySeconds": 5,
            }
        ),
    )
    tracker = exporter(models.namespace, "steady")
    tracker.change("active", 3)
    eventually(lambda: equal(replicas(admin_api, models.namespace, "steady"), 3), timeout=45)
    return lambda delta: tracker.change("active", delta)


def _condition(models: Models) -> tuple[str, str]:
    c = models.condition("steady", "ScalingActive")
    return c["status"], c["reason"]


def test_prometheus_hung_then_down_during_a_load_drop(
    admin_api: client.ApiClient,
    namespace: str,
    exporter: Exporter,
    cluster: controlplane.ClusterState,
    start_operator: StartOperator,
) -> None:
    start_operator(scaler_interval=INTERVAL)
    models = Models(admin_api, namespace)
    load = _scaled_model(models, exporter, admin_api)
    prometheus = Server(cluster, "prometheus")
    noticed: dict[str, float] = {}
    for how in ("hung", "down"):
        (prometheus.pause if how == "hung" else prometheus.stop)()
        began = time.monotonic()
        load(-3)  # demand drops while nobody can see it
        eventually(lambda: equal(_condition(models), ("False", "MetricsUnavailable")), timeout=10)
        noticed[how] = time.monotonic() - began
        # No data is no reason to scale down: the count holds for the whole outage.
        while time.monotonic() - began < OUTAGE:
            assert replicas(admin_api, namespace, "steady") == 3
            time.sleep(1)
        load(3)  # demand is back before Prometheus is
        (prometheus.resume if how == "hung" else prometheus.start)()
        back = time.monotonic()
        eventually(lambda: equal(_condition(models)[0], "True"), timeout=30)
        resumed = time.monotonic() - back
        assert replicas(admin_api, namespace, "steady") == 3
        figures(
            f"Prometheus {how} {OUTAGE:.0f}s during a load drop",
            ScalingActive_False_after=f"{noticed[how]:.1f}s (scaler interval {INTERVAL:.0f}s)",
            replicas_held="3 of 3",
            scaling_resumed_after=f"{resumed:.1f}s",
        )
        assert noticed[how] <= 2 * INTERVAL + 1.5  # two intervals, and the status write
    # And it still scales down once it can see the drop.
    load(-3)
    eventually(lambda: equal(replicas(admin_api, namespace, "steady") < 3, True), timeout=60)


def test_the_api_server_stopped_and_started(
    admin_api: client.ApiClient,
    namespace: str,
    cluster: controlplane.ClusterState,
    start_operator: StartOperator,
) -> None:
    operator = start_operator()
    models = Models(admin_api, namespace)
    models.create("chat", model_spec())
    eventually(lambda: equal(models.status("chat").get("observedGeneration"), 1))
    apiserver = Server(cluster, "kube-apiserver")
    apiserver.stop()
    # Longer than the renew deadline (10 s): the leader stops writing, stays up as a
    # candidate, and leads again once the API server is back.
    time.sleep(OUTAGE)
    assert operator.proc.poll() is None, "the operator died with the API server"
    apiserver.start()
    assert wait_until(lambda: controlplane.is_healthy(cluster), 60, interval=0.2)
    back = time.monotonic()
    models.patch_spec("chat", {"meter": {"maxConcurrency": 2}})
    eventually(lambda: equal(models.status("chat").get("observedGeneration"), 2), timeout=60)
    resumed = time.monotonic() - back
    assert operator.proc.poll() is None
    figures(
        f"API server stopped {OUTAGE:.0f}s and started",
        operator="kept running (stopped writing, led again)",
        status_writes_resumed_after=f"{resumed:.1f}s (an edit's observedGeneration)",
    )
