"""One malformed ModelDeployment never hurts another: objects the schema lets through but
that are no workload (wrong inner types, names no Service can take, fields only the API
server rejects) each get Ready=False, InvalidSpec with a message naming the field, while a
healthy model beside them keeps its status and its scaling. The session operator's log
must stay free of tracebacks (conftest checks at the end)."""

import copy
from typing import Any

import pytest
from kubernetes import client

from .conftest import Exporter
from .operator_helpers import Models, equal, eventually, model_spec, replicas

pytestmark = pytest.mark.usefixtures("operator")


def _with_container(**fields: Any) -> dict[str, Any]:
    spec = model_spec()
    spec["template"]["spec"]["containers"][0].update(fields)
    return spec


def _template(template: Any) -> dict[str, Any]:
    return model_spec() | {"template": template}


# name -> (spec, what the InvalidSpec message must say)
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "containers-string": (
        _template({"spec": {"containers": "abc"}}),
        "spec.template.spec.containers: Input should be a valid list",
    ),
    "ports-ints": (_with_container(ports=[8000]), "spec.template.spec.containers[0].ports[0]"),
    "spec-null": (_template({"spec": None}), "spec.template.spec: Input should be a valid"),
    "no-image": (
        _with_container(image=""),
        "spec.template.spec.containers[0].image",
    ),
    "huge-replicas": (
        model_spec(autoscaling={"minReplicas": 2**40, "maxReplicas": 2**41}),
        "spec.autoscaling.minReplicas",
    ),
    # Only the API server knows these: its own words come back.
    "env-string": (_with_container(env="A=1"), "the API server refused the Deployment"),
    "memory-lots": (
        _with_container(resources={"limits": {"memory": "lots"}}),
        "the API server refused the Deployment",
    ),
    "bad-label": (
        _template(
            {"metadata": {"labels": {"tier": "not a valid value!"}}}
            | copy.deepcopy(model_spec()["template"])
        ),
        "the API server refused the Deployment",
    ),
    "9abc": (model_spec(), "metadata.name '9abc' cannot name the model's Service"),
    "a.b.c": (model_spec(), "metadata.name 'a.b.c' cannot name the model's Service"),
}


def test_bad_objects_are_reported_and_never_stop_scaling(
    admin_api: client.ApiClient, namespace: str, exporter: Exporter
) -> None:
    models = Models(admin_api, namespace)
    models.create(
        "healthy",
        model_spec(
            autoscaling={
                "maxReplicas": 4,
                "concurrencyTarget": 1,
                "targetUtilizationPercentage": 100,
                "autoscalingWindowSeconds": 10,
            }
        ),
    )
    eventually(lambda: equal(replicas(admin_api, namespace, "healthy"), 1))
    for name, (spec, _) in BAD.items():
        models.create(name, spec)
    tracker = exporter(namespace, "healthy")
    tracker.change("active", 3)

    # The healthy model scales while the bad ones sit beside it...
    eventually(lambda: equal(replicas(admin_api, namespace, "healthy"), 3), timeout=45)
    assert models.condition("healthy", "ScalingActive")["status"] == "True"

    # ...and each bad one says, on itself, what to fix.
    def invalid(name: str, says: str) -> None:
        ready = models.condition(name, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec"), (name, ready)
        assert says in ready["message"], (name, ready["message"])

    for name, (_, says) in BAD.items():
        eventually(lambda name=name, says=says: invalid(name, says), timeout=30)  # type: ignore[misc]
    services = client.CoreV1Api(admin_api).list_namespaced_service(namespace).items
    assert {s.metadata.name for s in services} <= {"healthy", *BAD} - {"9abc", "a.b.c"}

    # Fixed, a refused one is served like any other.
    models.patch_spec("env-string", {"template": model_spec()["template"]})
    apps = client.AppsV1Api(admin_api)
    eventually(lambda: apps.read_namespaced_deployment("env-string", namespace))
    eventually(
        lambda: equal(models.condition("env-string", "Ready")["reason"] != "InvalidSpec", True)
    )
