"""50 rapid spec edits while the scaler writes status under changing load: the last spec
wins everywhere (Deployment, status.autoscaling.effective, observedGeneration), and no
status write loses an edit."""

import time

from kubernetes import client

from tests.integration.conftest import Exporter
from tests.integration.operator_helpers import Models, equal, eventually, model_spec

from .conftest import StartOperator, figures

EDITS = 50


def test_rapid_edits_while_status_is_written(
    admin_api: client.ApiClient,
    namespace: str,
    exporter: Exporter,
    start_operator: StartOperator,
) -> None:
    start_operator()
    models = Models(admin_api, namespace)
    scaling = {"concurrencyTarget": 1, "targetUtilizationPercentage": 100}
    models.create("busy", model_spec(autoscaling={**scaling, "maxReplicas": 2}))
    tracker = exporter(namespace, "busy")
    eventually(lambda: equal(models.status("busy").get("observedGeneration"), 1))
    started = time.monotonic()
    for i in range(EDITS):
        tracker.change("active", 1 if i % 2 == 0 else -1)  # the scaler keeps writing
        models.patch_spec(
            "busy",
            {"autoscaling": {**scaling, "maxReplicas": 3 + i}, "meter": {"maxConcurrency": i + 1}},
        )
    edited = time.monotonic() - started
    last = time.monotonic()
    apps = client.AppsV1Api(admin_api)

    def converged() -> None:
        body = models.get("busy")
        assert body["spec"]["autoscaling"]["maxReplicas"] == 2 + EDITS  # no edit lost
        status = body["status"]
        assert status["observedGeneration"] == body["metadata"]["generation"] == EDITS + 1
        assert status["autoscaling"]["effective"]["maxReplicas"] == 2 + EDITS
        deployment = apps.read_namespaced_deployment("busy", namespace)
        meter = next(c for c in deployment.spec.template.spec.containers if "meter" in c.name)
        assert f"--max-concurrency={EDITS}" in meter.args

    eventually(converged, timeout=30)
    figures(
        f"{EDITS} spec edits in {edited:.1f}s while status is written",
        converged_after_the_last=f"{time.monotonic() - last:.1f}s",
        last_spec_won="Deployment, effective settings, observedGeneration",
    )
