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
OWNER = render.owner_reference("modelpilot.dev/v1alpha1", "ModelDeployment", "chat", "u-1")


def test_deployment_selects_exactly_this_models_pods() -> None:
    dep = render.deployment("chat", "ns", SPEC, OWNER, replicas=None)
    assert dep["spec"]["selector"] == {"matchLabels": {MODEL_LABEL: "chat"}}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels[MODEL_LABEL] == "chat"  # ours win over a template label of the same key
    assert labels["team"] == "nlp"
    assert dep["metadata"]["ownerReferences"] == [OWNER]
    assert OWNER["controller"] is True


def test_model_container_is_passed_through_untouched() -> None:
    dep = render.deployment("chat", "ns", SPEC, OWNER, replicas=None)
    assert dep["spec"]["template"]["spec"]["containers"] == SPEC.template["spec"]["containers"]
    # and the spec's own template is not mutated by rendering
    assert SPEC.template["metadata"]["labels"][MODEL_LABEL] == "spoofed"


def test_replicas_start_at_min_and_stay_inside_bounds() -> None:
    assert render.deployment("c", "ns", SPEC, OWNER, None)["spec"]["replicas"] == 2
    assert render.deployment("c", "ns", SPEC, OWNER, 4)["spec"]["replicas"] == 4
    assert render.deployment("c", "ns", SPEC, OWNER, 9)["spec"]["replicas"] == 5
    assert render.deployment("c", "ns", SPEC, OWNER, 1)["spec"]["replicas"] == 2


def test_service_targets_the_model_port() -> None:
    svc = render.service("chat", "ns", SPEC, OWNER)
    assert svc["spec"]["selector"] == {MODEL_LABEL: "chat"}
    assert svc["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": 8000, "protocol": "TCP"}
    ]
