from modelpilot.api import MODEL_LABEL
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.workload import render

SPEC = ModelDeploymentSpec.model_validate(
    {
        "port": 8000,
        "template": {
            "metadata": {"labels": {"team": "nlp", MODEL_LABEL: "spoofed"}},
            "spec": {
                "containers": [
                    {
                        "name": "model",
                        "image": "m:1",
                        "ports": [{"containerPort": 8000}],
                        "resources": {"limits": {"nvidia.com/gpu": 1}},
                    }
                ]
            },
        },
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5},
    }
)
IMAGE = "registry.example/modelpilot:1"
OWNER = render.owner_reference("modelpilot.dev/v1alpha1", "ModelDeployment", "chat", "u-1")


def test_deployment_selects_exactly_this_models_pods() -> None:
    dep = render.deployment("chat", "ns", SPEC, OWNER, None, IMAGE)
    assert dep["spec"]["selector"] == {"matchLabels": {MODEL_LABEL: "chat"}}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[MODEL_LABEL] == "chat"  # ours win over a template label of the same key
    assert labels["team"] == "nlp"
    assert dep["metadata"]["ownerReferences"] == [OWNER]
    assert OWNER["controller"] is True


def test_model_container_is_passed_through_untouched() -> None:
    dep = render.deployment("chat", "ns", SPEC, OWNER, None, IMAGE)
    model, _meter = dep["spec"]["template"]["spec"]["containers"]
    assert [model] == SPEC.template["spec"]["containers"]
    # and the spec's own template is not mutated by rendering
    assert SPEC.template["metadata"]["labels"][MODEL_LABEL] == "spoofed"


def test_replicas_start_at_min_and_stay_inside_bounds() -> None:
    assert render.deployment("c", "ns", SPEC, OWNER, None, IMAGE)["spec"]["replicas"] == 2
    assert render.deployment("c", "ns", SPEC, OWNER, 4, IMAGE)["spec"]["replicas"] == 4
    assert render.deployment("c", "ns", SPEC, OWNER, 9, IMAGE)["spec"]["replicas"] == 5
    assert render.deployment("c", "ns", SPEC, OWNER, 1, IMAGE)["spec"]["replicas"] == 2


def test_meter_is_injected_in_front_of_the_model() -> None:
    template = render.deployment("chat", "ns", SPEC, OWNER, None, IMAGE)["spec"]["template"]
    meter = template["spec"]["containers"][1]
    assert meter["name"] == "modelpilot-meter"
    assert meter["image"] == IMAGE
    assert "--upstream=http://127.0.0.1:8000" in meter["args"]
    assert "--model-deployment=chat" in meter["args"]
    assert "--drain-timeout=25" in meter["args"]  # default grace 30 s, minus 5
    assert meter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "meter-metrics"}
    assert meter["securityContext"]["runAsNonRoot"] is True
    assert template["metadata"]["annotations"]["prometheus.io/port"] == "9099"


def test_the_async_queue_reaches_the_meter_through_its_environment() -> None:
    meter = render.meter_container("chat", SPEC, IMAGE, 30)
    assert not [a for a in meter["args"] if a.startswith("--async")]
    assert [e["name"] for e in meter["env"]] == ["MODELPILOT_NAMESPACE"]

    spec = SPEC.model_copy(
        update={
            "async_": ModelDeploymentSpec.model_validate(
                {
                    "port": 8000,
                    "template": {},
                    "async": {
                        "brokerSecretRef": {"name": "queue", "key": "url"},
                        "webhookSecretRef": {"name": "queue", "key": "hmac"},
                        "webhookHosts": ["*.example.com"],
                        "maxQueueSeconds": 600,
                    },
                }
            ).async_
        }
    )
    meter = render.meter_container("chat", spec, IMAGE, 30)
    assert "--async-max-queue-seconds=600" in meter["args"]
    assert "--async-webhook-host=*.example.com" in meter["args"]
    env = {e["name"]: e["valueFrom"] for e in meter["env"]}
    assert env["MODELPILOT_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["MODELPILOT_ASYNC_BROKER"] == {"secretKeyRef": {"name": "queue", "key": "url"}}
    assert env["MODELPILOT_ASYNC_WEBHOOK_SECRET"] == {
        "secretKeyRef": {"name": "queue", "key": "hmac"}
    }
    assert not [a for a in meter["args"] if "queue" in a and "secret" in a.lower()]


def test_service_targets_the_meter_or_the_model() -> None:
    svc = render.service("chat", "ns", SPEC, OWNER)
    assert svc["spec"]["selector"] == {MODEL_LABEL: "chat"}
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "meter-http", "protocol": "TCP"}
    ]
    unmetered = SPEC.model_copy(update={"meter": SPEC.meter.model_copy(update={"enabled": False})})
    assert render.service("chat", "ns", unmetered, OWNER)["spec"]["ports"][0]["targetPort"] == 8000
    template = render.deployment("c", "ns", unmetered, OWNER, None, IMAGE)["spec"]["template"]
    assert len(template["spec"]["containers"]) == 1
    assert "annotations" not in template["metadata"]


def test_null_metadata_and_grace_period_render_with_defaults() -> None:
    """Found by the chaos tier's fuzzing: explicit nulls the schema lets through."""
    container = {"name": "model", "image": "m:1", "ports": [{"containerPort": 8000}]}
    spec = ModelDeploymentSpec.model_validate(
        {
            "port": 8000,
            "template": {
                "metadata": None,
                "spec": {"containers": [container], "terminationGracePeriodSeconds": None},
            },
        }
    )
    template = render.pod_template("chat", spec, "meter:1")
    assert template["metadata"]["labels"][MODEL_LABEL] == "chat"
    meter = template["spec"]["containers"][-1]
    assert f"--drain-timeout={render.DEFAULT_GRACE_SECONDS - 5}" in meter["args"]
