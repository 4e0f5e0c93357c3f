"""Scale-to-zero routing, pure: ports, where traffic goes, the activator's EndpointSlice and
what the activator keeps from its watches."""

from typing import Any

from modelpilot.activator.routing import (
    ACTIVATORS,
    Activators,
    Route,
    Routes,
    allocate_port,
    endpoint_slice,
    ready_addresses,
    routing,
    settle_left,
)
from modelpilot.observer.pods import PodInfo
from modelpilot.times import parse_time


def test_ports_are_the_lowest_free_in_the_range() -> None:
    assert allocate_port(set(), 20000, 20002) == 20000
    assert allocate_port({20000, 20002}, 20000, 20002) == 20001
    assert allocate_port({20000, 20001, 20002}, 20000, 20002) is None


def pod(name: str, ip: str | None, ready: str | None, **kw: Any) -> PodInfo:
    return PodInfo(name=name, uid=name, ip=ip, ready=ready, **kw)


def test_only_ready_pods_that_stay_take_requests() -> None:
    pods = [
        pod("a", "10.0.0.1", "True"),
        pod("b", "10.0.0.2", "False"),
        pod("c", "10.0.0.3", "True", deleting_since="2026-01-01T00:00:00Z"),
        pod("d", None, "True"),
    ]
    assert ready_addresses(pods) == ["10.0.0.1"]
    assert routing(0) == "Activator" and routing(1) == "Pods"


def test_a_new_replica_settles_before_the_activator_steps_aside() -> None:
    since = "2026-06-01T12:00:00Z"
    now = parse_time(since)
    assert now is not None
    pods = [pod("a", "10.0.0.1", "True", ready_since=since)]
    assert settle_left(pods, now.timestamp() + 1) == 2.0
    assert settle_left(pods, now.timestamp() + 10) == 0.0
    assert settle_left([pod("b", "10.0.0.2", "False")], now.timestamp()) == 0.0


def test_the_slice_adds_the_activator_to_the_models_service() -> None:
    body = endpoint_slice(("ml", "chat"), 20001, ["10.1.0.5", "10.1.0.6"], "discovery.k8s.io/v1")
    labels = body["metadata"]["labels"]
    assert labels["kubernetes.io/service-name"] == "chat"
    # Not the endpoint slice controller's: it leaves the slice alone.
    assert labels["endpointslice.kubernetes.io/managed-by"] != "endpointslice-controller.k8s.io"
    assert body["ports"] == [{"name": "http", "port": 20001, "protocol": "TCP"}]
    assert [e["addresses"] for e in body["endpoints"]] == [["10.1.0.5"], ["10.1.0.6"]]


def model(port: object, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ml", "name": "chat"},
        "spec": {"port": 8000, "template": {}, **spec},
        "status": {"activator": {"port": port}} if port is not None else {},
    }


def test_routes_follow_the_models_the_operator_gave_a_port() -> None:
    routes = Routes()
    assert routes.apply("ADDED", model(None)) == set()
    assert routes.apply("MODIFIED", model(20001)) == {("ml", "chat")}
    assert routes[("ml", "chat")] == Route(20001, 8099, 600.0, 1000)
    assert routes.apply("MODIFIED", model(20001)) == set()  # unchanged
    no_meter = model(20001, meter={"enabled": False}, autoscaling={"activationTimeoutSeconds": 5})
    routes.apply("MODIFIED", no_meter)
    assert routes[("ml", "chat")] == Route(20001, 8000, 5.0, 1000)
    routes.apply("MODIFIED", model("20001"))  # status is user-writable: not a port
    assert ("ml", "chat") not in routes
    fresh = Routes()
    fresh.apply("ADDED", model(20002))
    assert routes.replace("ml", fresh) == {("ml", "chat")}
    assert routes.apply("DELETED", model(20002)) == {("ml", "chat")} and not routes


def activator_pod(uid: str, ready: str) -> dict[str, Any]:
    return {
        "metadata": {"name": uid, "uid": uid},
        "status": {"podIP": f"10.1.0.{uid}", "conditions": [{"type": "Ready", "status": ready}]},
    }


def test_activators_are_their_ready_pods() -> None:
    activators = Activators()
    assert activators.apply("ADDED", activator_pod("5", "False")) == set()
    assert activators.apply("MODIFIED", activator_pod("5", "True")) == {ACTIVATORS}
    assert activators.apply("ADDED", activator_pod("6", "True")) == {ACTIVATORS}
    assert activators.addresses() == ["10.1.0.5", "10.1.0.6"]
    assert activators.apply("DELETED", activator_pod("5", "True")) == {ACTIVATORS}
    assert activators.addresses() == ["10.1.0.6"]
