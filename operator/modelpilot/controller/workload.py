"""Keep each ModelDeployment's Deployment and Service as rendered.

Drift (a hand edit) is found by asking the API server to dry-run a replace with what we
render: its answer is defaulted and canonicalised exactly like the live object, so the
two compare equal unless someone changed a field we own.
"""

import asyncio
import json
import logging
from collections import defaultdict, deque
from collections.abc import Mapping
from typing import Any, Literal

from kubernetes.client import ApiException

from modelpilot.api import API_VERSION, KIND
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.controller.kube import Kube
from modelpilot.settings import settings_in_force
from modelpilot.workload import render

Outcome = Literal["created", "updated", "unchanged"]
_ATTEMPTS = 3
log = logging.getLogger(__name__)

_OWNED_METADATA = ("labels", "ownerReferences")
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


class Refused(Exception):
    """The API server refused what a valid spec rendered to (400/422): the spec is still
    wrong, in a way only the server checks (label syntax, quantities, env types, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"the API server refused the {kind}: {message}")


def _server_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _owned(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    spec = dict(obj.get("spec", {}))
    return {"metadata": {k: meta.get(k) for k in _OWNED_METADATA}, "spec": spec}


def _keep_server_fields(desired: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """Carry over what a replace must keep: resourceVersion, a Service's cluster IPs."""
    desired["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    if desired["kind"] == "Service":
        for field in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if field in live.get("spec", {}):
                desired["spec"][field] = live["spec"][field]
    # Other annotations (kubectl's, the deployment controller's) are not ours to remove.
    if annotations := live["metadata"].get("annotations"):
        desired["metadata"]["annotations"] = annotations
    # `kubectl rollout restart` stamps the pod template; keep it rather than undo a restart.
    live_template = live.get("spec", {}).get("template", {}).get("metadata", {})
    if stamp := (live_template.get("annotations") or {}).get(RESTARTED_AT):
        template_meta = desired["spec"]["template"].setdefault("metadata", {})
        template_meta.setdefault("annotations", {})[RESTARTED_AT] = stamp
    return desired


class WorkloadApplier:
    def __init__(self, kube: Kube, meter_image: str) -> None:
        self.kube = kube
        self.meter_image = meter_image
        # One apply at a time per model: reconcile and the put-back of a watch event
        # would otherwise race to create the same object.
        self._locks: dict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        # Deployment generations our own writes produced: their watch events are not drift.
        self._written: dict[tuple[str, str], deque[int]] = defaultdict(lambda: deque(maxlen=8))

    def wrote(self, key: tuple[str, str], generation: int | None) -> bool:
        return generation in self._written.get(key, ())

    def render(
        self,
        name: str,
        namespace: str,
        uid: str,
        spec: ModelDeploymentSpec,
        replicas: int | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        owner = render.owner_reference(API_VERSION, KIND, name, uid)
        return (
            render.deployment(name, namespace, spec, owner, replicas, self.meter_image),
            render.service(name, namespace, spec, owner),
        )

    async def apply(
        self,
        name: str,
        namespace: str,
        uid: str,
        spec: ModelDeploymentSpec,
        status: Mapping[str, Any],
    ) -> dict[str, Outcome]:
        """Create what is missing and put back what drifted; returns what happened per kind.
        Replicas stay the scaler's, kept inside the effective [min, max] (the advisor may
        have moved those in Auto mode)."""
        bounds = settings_in_force(spec, status)
        spec = spec.model_copy(update={"autoscaling": bounds})
        async with self._locks[(namespace, name)]:
            for attempt in range(_ATTEMPTS):
                try:
                    return await self._apply(name, namespace, uid, spec)
                except ApiException as exc:
                    # Conflict or AlreadyExists: someone else wrote meanwhile; read again.
                    if exc.status != 409 or attempt == _ATTEMPTS - 1:
                        raise
                    log.info("conflict applying %s/%s, retrying", namespace, name)
        raise AssertionError("unreachable")

    async def _apply(
        self, name: str, namespace: str, uid: str, spec: ModelDeploymentSpec
    ) -> dict[str, Outcome]:
        live_deployment = await self.kube.read("Deployment", namespace, name)
        replicas = (live_deployment or {}).get("spec", {}).get("replicas")
        deployment, service = self.render(name, namespace, uid, spec, replicas)
        live_service = await self.kube.read("Service", namespace, name)
        return {
            "Deployment": await self._ensure(deployment, live_deployment),
            "Service": await self._ensure(service, live_service),
        }

    async def _ensure(self, desired: dict[str, Any], live: dict[str, Any] | None) -> Outcome:
        try:
            if live is None:
                self._remember(desired, await self.kube.create(desired))
                return "created"
            desired = _keep_server_fields(desired, live)
            preview = await self.kube.replace(desired, dry_run=True)
        except ApiException as exc:
            if exc.status in (400, 422):  # Invalid: what we render from this spec
                raise Refused(desired["kind"], _server_message(exc)) from None
            raise
        if _owned(preview) == _owned(live):
            return "unchanged"
        self._remember(desired, await self.kube.replace(desired))
        return "updated"

    def _remember(self, desired: dict[str, Any], written: dict[str, Any]) -> None:
        if desired["kind"] == "Deployment":
            meta = written.get("metadata", {})
            key = (meta.get("namespace", ""), desired["metadata"]["name"])
            self._written[key].append(int(meta.get("generation") or 0))
