from typing import Any

from modelpilot.workload.validate import validate


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "port": 8000,
        "template": {
            "spec": {
                "containers": [
                    {"name": "model", "image": "m:1", "ports": [{"containerPort": 8000}]}
                ]
            }
        },
    }
    base.update(overrides)
    return base


def test_valid_spec_gets_defaults() -> None:
    parsed, problems = validate(spec())
    assert problems == []
    assert parsed is not None
    assert parsed.autoscaling.min_replicas == 1
    assert parsed.autoscaling.scale_down_delay_seconds == 900
    assert parsed.autoscaling.target_utilization_percentage == 70
    assert parsed.advisor.mode == "Recommend"


def test_min_greater_than_max_names_both_fields() -> None:
    parsed, problems = validate(spec(autoscaling={"minReplicas": 3, "maxReplicas": 2}))
    assert parsed is None
    assert problems == [
        "spec.autoscaling.minReplicas (3) is greater than spec.autoscaling.maxReplicas (2)"
    ]


def test_template_without_containers() -> None:
    parsed, problems = validate(spec(template={"spec": {"containers": []}}))
    assert parsed is None
    assert problems == ["spec.template.spec.containers is empty: add the model server container"]


def test_port_no_container_exposes() -> None:
    _, problems = validate(spec(port=9000))
    assert problems == [
        "spec.port 9000 is not a containerPort of any container in spec.template "
        "(declared: 8000 (model))"
    ]


def test_scale_to_zero_is_a_valid_spec() -> None:
    # Whether it can be honoured (an activator installed) is the operator's to say.
    parsed, problems = validate(spec(autoscaling={"minReplicas": 0, "maxReplicas": 2}))
    assert problems == []
    assert parsed is not None and parsed.autoscaling.activation_timeout_seconds == 600


def test_type_errors_name_the_field() -> None:
    _, problems = validate(spec(autoscaling={"maxReplicas": "many"}))
    assert len(problems) == 1
    assert problems[0].startswith("spec.autoscaling.maxReplicas: ")


def test_meter_port_clash_and_limits() -> None:
    _, problems = validate(
        spec(
            meter={"port": 8000},
            advisor={"limits": {"maxReplicas": {"min": 5, "max": 2}}},
        )
    )
    assert problems == [
        "spec.meter.port 8000 is already used by the model server; choose another port",
        "spec.advisor.limits.maxReplicas: min (5) is greater than max (2)",
    ]


def test_meter_off_allows_its_ports() -> None:
    _, problems = validate(spec(meter={"enabled": False, "port": 8000}))
    assert problems == []


def test_any_json_the_schema_admits_is_reported_not_raised() -> None:
    """spec.template is free-form in the CRD: every wrong inner type is a problem that
    names the field, never an exception (which would stop the loops for every model)."""
    container = {"name": "model", "image": "m:1", "ports": [{"containerPort": 8000}]}
    cases: list[tuple[Any, str]] = [
        ({"spec": {"containers": "abc"}}, "spec.template.spec.containers: "),
        ({"spec": {"containers": [{**container, "ports": [8000]}]}}, "containers[0].ports[0]"),
        ({"spec": None}, "spec.template.spec: Input should be a valid dictionary"),
        ({"spec": {"containers": [None]}}, "spec.template.spec.containers[0]"),
        ({"spec": {"containers": [{"image": "m:1"}]}}, "containers[0].name: Field required"),
        ({"metadata": {"labels": {"a": 1}}, "spec": {"containers": [container]}}, "labels.a"),
        (
            {"spec": {"containers": [container], "terminationGracePeriodSeconds": "x"}},
            "terminationGracePeriodSeconds",
        ),
        ("template", "spec.template: Input should be a valid dictionary"),
    ]
    for template, says in cases:
        parsed, problems = validate(spec(template=template), "chat")
        assert parsed is None, template
        assert any(says in p for p in problems), (template, problems)
        assert not any("instance of" in p for p in problems)  # no pydantic class names
    for raw in (None, "x", [], {"port": "x"}):
        assert validate(raw, "chat")[0] is None


def test_replicas_fit_the_deployment_and_names_fit_a_service() -> None:
    _, problems = validate(spec(autoscaling={"maxReplicas": 2**40}), "chat")
    assert problems == [
        "spec.autoscaling.maxReplicas: Input should be less than or equal to 2147483647"
    ]
    for name in ("9abc", "a.b.c", "Chat", "x" * 64, "chat-"):
        parsed, problems = validate(spec(), name)
        assert parsed is None and problems[0].startswith(f"metadata.name {name[:80]!r}")
    assert validate(spec(), "chat-7b")[1] == []
