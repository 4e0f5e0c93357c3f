"""Checks the CRD schema cannot express, each with a message that names the field."""

from typing import Any

from pydantic import ValidationError

from modelpilot.api.spec import ModelDeploymentSpec


def _loc(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _container_ports(template: dict[str, Any]) -> dict[int, str]:
    """containerPort -> the container that declares it."""
    ports: dict[int, str] = {}
    for container in template.get("spec", {}).get("containers") or []:
        for port in container.get("ports") or []:
            if isinstance(port.get("containerPort"), int):
                ports[port["containerPort"]] = container.get("name", "?")
    return ports


def validate(raw_spec: dict[str, Any]) -> tuple[ModelDeploymentSpec | None, list[str]]:
    """The parsed spec and no problems, or None and what a person must fix."""
    try:
        spec = ModelDeploymentSpec.model_validate(raw_spec)
    except ValidationError as exc:
        return None, [f"{_loc(e['loc'])}: {e['msg']}" for e in exc.errors()]

    problems: list[str] = []
    scaling = spec.autoscaling
    if scaling.min_replicas > scaling.max_replicas:
        problems.append(
            f"spec.autoscaling.minReplicas ({scaling.min_replicas}) is greater than "
            f"spec.autoscaling.maxReplicas ({scaling.max_replicas})"
        )
    if scaling.min_replicas == 0:
        problems.append(
            "spec.autoscaling.minReplicas 0 (scale to zero) is not supported: nothing holds "
            "requests while no replica runs, so they would fail; use 1 or more"
        )

    containers = spec.template.get("spec", {}).get("containers") or []
    if not containers:
        problems.append("spec.template.spec.containers is empty: add the model server container")
        return None, problems

    ports = _container_ports(spec.template)
    if spec.port not in ports:
        declared = ", ".join(f"{p} ({c})" for p, c in sorted(ports.items())) or "none"
        problems.append(
            f"spec.port {spec.port} is not a containerPort of any container in "
            f"spec.template (declared: {declared})"
        )
    if spec.meter.enabled:
        names = {c.get("name") for c in containers}
        if "modelpilot-meter" in names:
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
