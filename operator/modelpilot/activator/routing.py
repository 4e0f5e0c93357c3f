"""Scale-to-zero routing, pure: ports for models, where a model's traffic goes, and the
EndpointSlice that sends it to the activator. Used by the operator (which writes) and the
activator (which listens)."""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

from pydantic import ValidationError

from modelpilot.api import MANAGED_BY, MANAGED_BY_LABEL, MODEL_LABEL, Key
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.observer.pods import PodInfo
from modelpilot.times import parse_time

Routing = Literal["Activator", "Pods"]
SLICE_MANAGER = "operator.modelpilot.dev"  # endpointslice.kubernetes.io/managed-by
SERVICE_PORT_NAME = "http"  # the model Service's port (workload.render)


def slice_name(model: str) -> str:
    return f"{model}-activator"


def allocate_port(taken: Collection[int], first: int, last: int) -> int | None:
    """The lowest port in [first, last] no other model has; None when all are taken."""
    return next((p for p in range(first, last + 1) if p not in taken), None)


def ready_addresses(pods: Iterable[PodInfo]) -> list[str]:
    """Pod IPs that may take requests: Ready, not shutting down."""
    return sorted({p.ip for p in pods if p.ip and p.ready == "True" and not p.terminating})


def routing(ready_replicas: int) -> Routing:
    """The activator is on the data path only while nothing else can serve."""
    return "Pods" if ready_replicas else "Activator"


SETTLE_SECONDS = 3.0  # for the endpoints controller to add a newly Ready pod to the Service


def settle_left(pods: Iterable[PodInfo], now: float) -> float:
    """Seconds until the model's longest-Ready pod has been Ready for SETTLE_SECONDS."""
    since = [
        parsed.timestamp()
        for p in pods
        if p.ready == "True" and p.ready_since and (parsed := parse_time(p.ready_since))
    ]
    return max(min(since) + SETTLE_SECONDS - now, 0.0) if since else 0.0


def endpoint_slice(
    key: Key, port: int, activators: Collection[str], api_version: str
) -> dict[str, Any]:
    """An extra EndpointSlice of the model's Service: the activator pods, on the model's
    activator port. The Service's own slices stay as its selector makes them."""
    namespace, model = key
    return {
        "apiVersion": api_version,
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(model),
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": model,
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
                MANAGED_BY_LABEL: MANAGED_BY,
                MODEL_LABEL: model,
            },
        },
        "addressType": "IPv4",
        "ports": [{"name": SERVICE_PORT_NAME, "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in activators],
    }


@dataclass(frozen=True, slots=True)
class Route:
    """What the activator needs to serve one model."""

    port: int  # the activator's port for it
    target_port: int  # where its pods take requests: the meter's port, or the model's own
    timeout: float  # seconds a request may be held
    queue: int  # requests held at most


def route_of(body: Mapping[str, Any]) -> Route | None:
    """A ModelDeployment's route, once the operator gave it a port; None otherwise (and
    for a spec that does not parse: the operator says why in its status)."""
    activator = (body.get("status") or {}).get("activator") or {}
    port = activator.get("port") if isinstance(activator, Mapping) else None
    if not isinstance(port, int) or isinstance(port, bool):
        return None
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    scaling = spec.autoscaling
    return Route(
        port=port,
        target_port=spec.meter.port if spec.meter.enabled else spec.port,
        timeout=float(scaling.activation_timeout_seconds),
        queue=scaling.activation_queue_size,
    )


class Routes(Mapping[Key, Route]):
    """ModelDeployments with an activator port, kept from their list and watch."""

    def __init__(self) -> None:
        self._routes: dict[Key, Route] = {}

    def __getitem__(self, key: Key) -> Route:
        return self._routes[key]

    def __iter__(self) -> Any:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def apply(self, event: str, body: dict[str, Any]) -> set[Key]:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        route = route_of(body) if event != "DELETED" else None
        if self._routes.get(key) == route:
            return set()
        if route is None:
            self._routes.pop(key, None)
        else:
            self._routes[key] = route
        return {key}

    def replace(self, namespace: str | None, fresh: Self) -> set[Key]:
        stale = {k for k in self._routes if namespace is None or k[0] == namespace}
        changed = {
            k for k in stale | set(fresh._routes) if self._routes.get(k) != fresh._routes.get(k)
        }
        for key in stale:
            del self._routes[key]
        self._routes.update(fresh._routes)
        return changed


ACTIVATORS: Key = ("", "activator")  # the one key of `Activators`


class Activators:
    """The activator's Ready pod IPs (the operator's watch of them): uid -> IP."""

    def __init__(self) -> None:
        self.ips: dict[str, str] = {}

    def addresses(self) -> list[str]:
        return sorted(set(self.ips.values()))

    def apply(self, event: str, body: dict[str, Any]) -> set[Key]:
        info = PodInfo.from_body(body)
        ready = event != "DELETED" and info.ip and info.ready == "True" and not info.terminating
        before = self.ips.get(info.uid)
        if ready and info.ip:
            self.ips[info.uid] = info.ip
        else:
            self.ips.pop(info.uid, None)
        return {ACTIVATORS} if self.ips.get(info.uid) != before else set()

    def replace(self, namespace: str | None, fresh: Self) -> set[Key]:
        changed = fresh.ips != self.ips
        self.ips = dict(fresh.ips)
        return {ACTIVATORS} if changed else set()
