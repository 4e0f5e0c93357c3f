"""Scale to zero, the operator's part: a port on the activator for every model whose
minReplicas in force is 0 (`status.activator.port`), and, while such a model has no Ready
replica, an EndpointSlice that adds the activator pods (on that port) to its Service.

Woken for a model when its pods or spec change, and for every model at zero when the
activator's own pods change; each pass reads the indexes and writes only what changed.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

from kubernetes import client

from modelpilot.activator.routing import (
    ACTIVATORS,
    Activators,
    allocate_port,
    endpoint_slice,
    ready_addresses,
    routing,
    settle_left,
    slice_name,
)
from modelpilot.api import Key
from modelpilot.api.status import ConditionUpdate
from modelpilot.controller.config import OperatorConfig
from modelpilot.controller.kube import Kube, report_failure
from modelpilot.controller.refs import Indexes, first
from modelpilot.controller.status_worker import StatusWorker
from modelpilot.settings import settings_in_force

log = logging.getLogger(__name__)
DISCOVERY = "discovery.k8s.io"
RETRY_SECONDS = 5.0  # after a failed write
ZEROING_SECONDS = 30.0  # for the scale to 0 to show in the Deployment index
NO_ACTIVATOR = ConditionUpdate(
    type="ScaleToZero",
    status="False",
    reason="ActivatorNotInstalled",
    message="minReplicas 0 needs the activator, which holds requests while no replica runs: "
    "install manifests/activator and run the operator with --activator-namespace; until then "
    "at least 1 replica is kept",
)


def _port_in(status: Mapping[str, Any]) -> int | None:
    port = (status.get("activator") or {}).get("port")
    return port if isinstance(port, int) and not isinstance(port, bool) else None


def _has_condition(status: Mapping[str, Any]) -> bool:
    return any(c.get("type") == NO_ACTIVATOR.type for c in status.get("conditions") or [])


class ActivatorRouter:
    def __init__(
        self,
        kube: Kube,
        indexes: Indexes,
        worker: StatusWorker,
        config: OperatorConfig,
        activators: Activators,
    ) -> None:
        self.kube, self.indexes, self.worker, self.config = kube, indexes, worker, config
        self.activators = activators
        self.ports: dict[Key, int] = {}  # given out by this leader, before status shows them
        self._slices: dict[Key, tuple[int, tuple[str, ...]] | None] = {}  # last written
        self._conditioned: dict[Key, bool] = {}  # models given a ScaleToZero condition
        self._zeroing: dict[Key, float] = {}  # models the scaler is taking to zero: since
        self._dirty: set[Key] = set()
        self._wakeup = asyncio.Event()
        self._api_version = f"{DISCOVERY}/v1"

    def wake(self, key: Key) -> None:
        if key == ACTIVATORS:  # the activator moved: every model it fronts
            self._dirty.update(self.indexes.models.keys())
        else:
            self._dirty.add(key)
        self._wakeup.set()

    async def run(self) -> None:
        self._api_version = await asyncio.to_thread(self._slice_version)
        await self.indexes.wait_for_pods()
        self._dirty.update(self.indexes.models.keys())
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._dirty = self._dirty, set()
            for key in sorted(batch):
                try:
                    await self._route(key)
                except Exception as exc:
                    report_failure(log, f"routing {key[0]}/{key[1]} failed", exc)
                    self._slices.pop(key, None)  # unknown now: written again
                    asyncio.get_running_loop().call_later(RETRY_SECONDS, self.wake, key)

    async def before_zero(self, key: Key) -> None:
        """The scaler is about to take this model to 0: put the activator on its path
        first, while its last replica still serves, so that no request meets a Service
        without endpoints while that replica shuts down."""
        self._zeroing[key] = time.monotonic()
        await self._route(key)

    def _going_to_zero(self, key: Key) -> bool:
        deployment = first(self.indexes.deployments.get(key))
        if deployment is not None and deployment.replicas == 0:
            self._zeroing.pop(key, None)  # the scale landed: the Deployment says it now
            return True
        since = self._zeroing.get(key)
        return since is not None and time.monotonic() - since < ZEROING_SECONDS

    def _slice_version(self) -> str:
        """discovery.k8s.io/v1 where served (Kubernetes 1.21+), else v1beta1: the fields
        written here are the same in both."""
        try:
            self.kube.api.call_api(
                f"/apis/{DISCOVERY}/v1",
                "GET",
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self.kube.timeout,
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return f"{DISCOVERY}/v1beta1"
            raise
        return f"{DISCOVERY}/v1"

    async def _route(self, key: Key) -> None:
        model = first(self.indexes.models.get(key))
        spec = model.validated[0] if model is not None else None
        if model is None or spec is None:
            self.ports.pop(key, None)
            self._slices.pop(key, None)  # the slice goes with its owner (garbage collector)
            return
        status = self.worker.status_of(key)
        zero = settings_in_force(spec, status).min_replicas == 0
        if not zero or not self.config.activator_namespace:
            self.ports.pop(key, None)
            if status.get("activator") is not None or self._slices.get(key) is not None:
                await self._write_slice(key, None, model.uid)
                self.worker.contribute(key, {"activator": None})
            if zero:  # asked for, but nothing could hold its requests
                self.worker.contribute(key, {}, (NO_ACTIVATOR,))
            elif self._conditioned.pop(key, None) or _has_condition(status):
                self.worker.withdraw(key, NO_ACTIVATOR.type)
            return
        port = self.ports.get(key) or _port_in(status) or self._allocate(key)
        if port is None:
            log.error(
                "no free activator port for %s/%s (--activator-ports %s)",
                *key,
                self.config.activator_ports,
            )
            return
        self.ports[key] = port
        pods = self.indexes.pods.get(key) or ()
        mode = routing(len(ready_addresses(pods)))
        if self._going_to_zero(key):
            mode = "Activator"
        elif mode == "Pods" and (wait := settle_left(pods, time.time())) > 0:
            # The Service's own slice may not list the new pod yet: the activator stays on
            # the path (sending straight on to the pod) until it surely does.
            mode = "Activator"
            asyncio.get_running_loop().call_later(wait, self.wake, key)
        await self._write_slice(key, port if mode == "Activator" else None, model.uid)
        self._conditioned[key] = True
        self.worker.contribute(
            key,
            {"activator": {"port": port, "routing": mode}},
            (
                ConditionUpdate(
                    type=NO_ACTIVATOR.type,
                    status="True",
                    reason="ThroughActivator" if mode == "Activator" else "ServedByReplicas",
                    message=f"the activator holds this model's requests on port {port} while "
                    "no replica is Ready"
                    + (" (none is now)" if mode == "Activator" else "; replicas serve now"),
                ),
            ),
        )

    def _allocate(self, key: Key) -> int | None:
        taken = set(self.ports.values())
        for other in list(self.indexes.models):
            if other != key and (port := _port_in(self.worker.status_of(other))) is not None:
                taken.add(port)
        first_port, last_port = self.config.activator_port_range
        return allocate_port(taken, first_port, last_port)

    async def _write_slice(self, key: Key, port: int | None, owner_uid: str) -> None:
        """The activator slice for `port` (None: no slice), written only when it changes."""
        addresses = tuple(self.activators.addresses())
        want = (port, addresses) if port is not None else None
        if key in self._slices and self._slices[key] == want:
            return
        namespace, name = key
        path = f"/apis/{self._api_version}/namespaces/{namespace}/endpointslices"
        if want is None:
            try:
                await self._call(f"{path}/{slice_name(name)}", "DELETE")
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
        else:
            body = endpoint_slice(key, want[0], addresses, self._api_version)
            body["metadata"]["ownerReferences"] = [_owner(name, owner_uid)]
            await self._call(
                f"{path}/{slice_name(name)}",
                "PATCH",
                body=body,  # server-side apply: creates or updates in one call
                header_params={"Content-Type": "application/apply-patch+yaml"},
                query_params=[("fieldManager", "modelpilot"), ("force", "true")],
            )
        self._slices[key] = want

    async def _call(self, path: str, method: str, **kwargs: Any) -> Any:
        return await asyncio.to_thread(
            self.kube.api.call_api,
            path,
            method,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=self.kube.timeout,
            **kwargs,
        )


def _owner(name: str, uid: str) -> dict[str, Any]:
    from modelpilot.api import API_VERSION, KIND

    return {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid}
