"""Checks the CRD schema cannot express, each with a message that names the field.

Total: whatever JSON the schema lets through (spec.template is free-form), `validate`
returns problems and never raises, so one malformed object can only ever be reported on
itself, never stop the loops that serve every model.
"""

import re
from typing import Any

from pydantic import ValidationError

from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.workload.template import PodTemplate

# The Service takes the model's name (a DNS-1035 label), and so does a label value.
NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
NAME_MAX = 63


def _loc(loc: tuple[int | str, ...], path: str = "spec") -> str:
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


PYDANTIC_CLASS = re.compile(r" or instance of \w+")


def _errors(exc: ValidationError, path: str) -> list[str]:
    # pydantic names its own classes ("... or instance of PodSpec"); people need the field.
    return [f"{_loc(e['loc'], path)}: {PYDANTIC_CLASS.sub('', e['msg'])}" for e in exc.errors()]


def name_problems(name: str) -> list[str]:
    if len(name) > NAME_MAX or not NAME.fullmatch(name):
        return [
            f"metadata.name {name[:80]!r} cannot name the model's Service and labels: use at "
            f"most {NAME_MAX} lowercase letters, digits and '-', starting with a letter "
            "and ending with a letter or digit"
        ]
    return []


def validate(
    raw_spec: Any, name: str | None = None
) -> tuple[ModelDeploymentSpec | None, list[str]]:
    """The parsed spec and no problems, or None and what a person must fix. `name`, when
    given, is the ModelDeployment's metadata.name."""
    problems = name_problems(name) if name is not None else []
    try:
        spec = ModelDeploymentSpec.model_validate(raw_spec)
    except ValidationError as exc:
        return None, problems + _errors(exc, "spec")
    pod = spec.template.get("spec")
    if isinstance(pod, dict) and pod.get("containers") == []:
        problems.append("spec.template.spec.containers is empty: add the model server container")
        return None, problems
    try:
        template = PodTemplate.model_validate(spec.template)
    except ValidationError as exc:
        return None, problems + _errors(exc, "spec.template")

    scaling = spec.autoscaling
    if scaling.min_replicas > scaling.max_replicas:
        problems.append(
            f"spec.autoscaling.minReplicas ({scaling.min_replicas}) is greater than "
            f"spec.autoscaling.maxReplicas ({scaling.max_replicas})"
        )

    ports = {
        port.container_port: container.name
        for container in template.spec.containers
        for port in container.ports or []
    }
    if spec.port not in ports:
        declared = ", ".join(f"{p} ({c})" for p, c in sorted(ports.items())) or "none"
        problems.append(
            f"spec.port {spec.port} is not a containerPort of any container in "
            f"spec.template (declared: {declared})"
        )
    if spec.meter.enabled:
        if "modelpilot-meter" in {c.name for c in template.spec.containers}:
            problems.append(
                "spec.template.spec.containers has a container named modelpilot-meter, "
                "the name of the injected meter; rename it or set spec.meter.enabled: false"
            )
        for field, port in (("port", spec.meter.port), ("metricsPort", spec.meter.metrics_port)):
            if port in ports or port == spec.port:
                problems.append(
                    f"spec.meter.{field} {port} is already used by the model server; "
                    "choose another port"
                )
        if spec.meter.port == spec.meter.metrics_port:
            problems.append("spec.meter.port and spec.meter.metricsPort must differ")

    for setting, bounds in spec.advisor.limits:
        low, high = (bounds.min, bounds.max) if bounds else (None, None)
        if low is not None and high is not None and low > high:
            key = type(spec.advisor.limits).model_fields[setting].alias or setting
            problems.append(f"spec.advisor.limits.{key}: min ({low}) is greater than max ({high})")
    return (None, problems) if problems else (spec, [])
