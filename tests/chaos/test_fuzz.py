"""500 fuzzed ModelDeployments through the API server while a healthy model takes load:
each is refused by the schema or answered with a condition within seconds, the operator
never crashes, and the healthy model keeps its status and scales up on time."""

import copy
import random
import time
from typing import Any

from kubernetes import client

from modelpilot.api import GROUP, PLURAL, VERSION
from tests.integration.conftest import Exporter
from tests.integration.operator_helpers import Models, equal, eventually, model_spec, replicas

from .conftest import StartOperator, figures

COUNT = 500
VALUES: list[Any] = [
    None, "abc", -1, 0, 1.5, True, 2**40, -(2**40), [], {}, [8000], {"x": 1},
    "ünïcødé ✓", "x" * 300, "8000",
]  # fmt: skip
PATHS: list[tuple[str, ...]] = [
    ("port",),
    ("template",),
    ("template", "spec"),
    ("template", "metadata"),
    ("template", "metadata", "labels"),
    ("template", "spec", "containers"),
    ("template", "spec", "containers", 0),
    ("template", "spec", "containers", 0, "name"),
    ("template", "spec", "containers", 0, "image"),
    ("template", "spec", "containers", 0, "ports"),
    ("template", "spec", "containers", 0, "ports", 0),
    ("template", "spec", "containers", 0, "ports", 0, "containerPort"),
    ("template", "spec", "containers", 0, "env"),
    ("template", "spec", "containers", 0, "resources", "limits", "memory"),
    ("template", "spec", "terminationGracePeriodSeconds"),
    ("autoscaling", "minReplicas"),
    ("autoscaling", "maxReplicas"),
    ("autoscaling", "concurrencyTarget"),
    ("autoscaling", "scaleDownDelaySeconds"),
    ("meter",),
    ("meter", "port"),
    ("meter", "enabled"),
    ("advisor", "mode"),
    ("advisor", "limits"),
    ("advisor", "latencyObjective"),
    ("bogus",),
    ("template", "spec", "bogus"),
]


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    for part in path[:-1]:
        if isinstance(doc, dict):
            doc = doc.setdefault(part, {})
        elif isinstance(doc, list) and isinstance(part, int) and part < len(doc):
            doc = doc[part]
        else:
            return
    last = path[-1]
    fits = isinstance(doc, list) and isinstance(last, int) and last < len(doc)
    if isinstance(doc, dict) or fits:
        doc[last] = value


def fuzzed(rng: random.Random, i: int) -> tuple[str, dict[str, Any]]:
    spec = copy.deepcopy(model_spec())
    for _ in range(rng.randint(1, 3)):
        _set(spec, rng.choice(PATHS), copy.deepcopy(rng.choice(VALUES)))
    name = rng.choice(
        [f"fz-{i}"] * 6 + [f"FZ-{i}", f"fz.{i}.x", f"9fz{i}", "f" * 260, f"ünï-{i}", f"fz-{i}-"]
    )
    return name, spec


def test_fuzzed_specs_never_hurt_a_healthy_model(
    admin_api: client.ApiClient,
    namespace: str,
    exporter: Exporter,
    start_operator: StartOperator,
) -> None:
    start_operator()
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
    tracker = exporter(namespace, "healthy")

    rng = random.Random(20261128)
    refused, accepted, created_at = 0, [], {}
    started = time.monotonic()
    for i in range(COUNT):
        if i == COUNT // 5:  # the healthy model's load rises while the fuzzing goes on
            tracker.change("active", 3)
            rose = time.monotonic()
        name, spec = fuzzed(rng, i)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelDeployment"}
        try:
            models.custom.create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                {**body, "metadata": {"name": name}, "spec": spec},
            )
        except client.ApiException as exc:
            assert exc.status in (400, 409, 422), exc  # the schema (or a repeated name)
            refused += 1
            continue
        accepted.append(name)
        created_at[name] = time.monotonic()
    fuzzing = time.monotonic() - started

    eventually(lambda: equal(replicas(admin_api, namespace, "healthy"), 3), timeout=45)
    scaled = time.monotonic() - rose
    assert models.condition("healthy", "ScalingActive")["status"] == "True"
    assert models.condition("healthy", "Ready")["reason"] != "InvalidSpec"

    outcomes: dict[str, int] = {}
    answered: dict[str, float] = {}
    deadline = time.monotonic() + 120
    waiting = set(accepted)
    while waiting and time.monotonic() < deadline:
        listing = models.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        for item in listing["items"]:
            name = item["metadata"]["name"]
            ready = next(
                (c for c in item.get("status", {}).get("conditions", []) if c["type"] == "Ready"),
                None,
            )
            if name in waiting and ready is not None:
                waiting.discard(name)
                answered[name] = time.monotonic() - created_at[name]
                outcomes[ready["reason"]] = outcomes.get(ready["reason"], 0) + 1
        time.sleep(0.5)
    assert not waiting, f"{len(waiting)} objects never got a Ready condition: {sorted(waiting)[:5]}"
    assert outcomes.get("InvalidSpec", 0) > 0
    slowest = max(answered.values())
    figures(
        "fuzz",
        specs=COUNT,
        refused_by_the_schema=refused,
        conditions=dict(sorted(outcomes.items())),
        created_in=f"{fuzzing:.1f}s",
        slowest_condition=f"{slowest:.1f}s after create",
        healthy_model_scaled_1_to_3_in=f"{scaled:.1f}s",
    )
    assert scaled <= 30
