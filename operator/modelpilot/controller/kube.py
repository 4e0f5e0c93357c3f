"""Kubernetes API calls the operator makes besides kopf's own watching.

The official client is synchronous; calls run in worker threads so the event loop (and
kopf's watches) never block. Responses are read as plain JSON dicts.
"""

import asyncio
import json
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import urllib3
from kubernetes import client, config

from modelpilot.api import GROUP, PLURAL, VERSION
from modelpilot.times import format_time


def load_api_client(pool_size: int = 16) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


def use_api_threads(workers: int) -> None:
    """API calls run in the loop's default executor: size it to the connection pool (the
    default, cores + 4, throttles a tick that scales hundreds of models)."""
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube-api")
    )


def unreachable(exc: BaseException) -> bool:
    """An expected failure of a call to a server (refused, reset, timed out, a 5xx): worth
    one log line, not a traceback."""
    if isinstance(exc, client.ApiException):
        return exc.status is None or exc.status == 0 or exc.status >= 500
    return isinstance(exc, OSError | TimeoutError | urllib3.exceptions.HTTPError)


def report_failure(logger: logging.Logger, what: str, exc: BaseException) -> None:
    """A traceback for a bug; one line for a server that did not answer."""
    if unreachable(exc):
        logger.error("%s: %s", what, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    else:
        logger.error("%s", what, exc_info=exc)


def _json(response: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.data)
    return data


class Kube:
    def __init__(
        self,
        api: client.ApiClient,
        component: str = "modelpilot",
        timeout: float = 10,
        manager: str | None = None,
    ) -> None:
        self.api = api
        # The field manager of every write: this replica's identity, so the API server's
        # managedFields say which replica wrote (one leader at a time).
        self.manager = manager
        # Every call has a deadline: a hung API server fails one call, not a loop forever.
        self.timeout = timeout
        # Raw JSON in and out (dict bodies, _preload_content=False), which the client's
        # generated model types do not describe.
        self.core: Any = client.CoreV1Api(api)
        self.apps: Any = client.AppsV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)
        self.component = component

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """`method` in a worker thread, raw JSON, with the deadline."""
        return await asyncio.to_thread(
            method, *args, _preload_content=False, _request_timeout=self.timeout, **kwargs
        )

    async def _write(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        if self.manager:
            kwargs["field_manager"] = self.manager
        return await self._call(method, *args, **kwargs)

    # -- ModelDeployments --------------------------------------------------------------
    async def get_model(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return _json(
                await self._call(
                    self.custom.get_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                )
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def patch_model_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        """False when the ModelDeployment is gone (deleted while its status was due)."""
        try:
            await self._write(
                self.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": status},
            )
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # -- Deployments and Services ---------------------------------------------------------
    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        reader = (
            self.apps.read_namespaced_deployment
            if kind == "Deployment"
            else self.core.read_namespaced_service
        )
        try:
            return _json(await self._call(reader, name, namespace))
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        creator = (
            self.apps.create_namespaced_deployment
            if body["kind"] == "Deployment"
            else self.core.create_namespaced_service
        )
        return _json(await self._write(creator, body["metadata"]["namespace"], body))

    async def replace(self, body: dict[str, Any], dry_run: bool = False) -> dict[str, Any]:
        replacer = (
            self.apps.replace_namespaced_deployment
            if body["kind"] == "Deployment"
            else self.core.replace_namespaced_service
        )
        extra = {"dry_run": "All"} if dry_run else {}
        return _json(
            await self._write(
                replacer, body["metadata"]["name"], body["metadata"]["namespace"], body, **extra
            )
        )

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set a Deployment's replicas through its scale subresource."""
        await self._write(
            self.apps.patch_namespaced_deployment_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
        )

    # -- Events ---------------------------------------------------------------------------
    async def post_event(
        self, involved: dict[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """A core/v1 Event about `involved` (apiVersion, kind, name, namespace, uid)."""
        now = format_time(datetime.now(UTC))
        body = {
            "metadata": {
                "name": f"{involved['name']}.{secrets.token_hex(8)}",
                "namespace": involved["namespace"],
            },
            "involvedObject": involved,
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": self.component},
            "reportingComponent": self.component,
        }
        await self._call(self.core.create_namespaced_event, involved["namespace"], body)

    async def liveness_killed(self, namespace: str, pod_uid: str) -> set[str]:
        """Containers of the pod that the kubelet killed for a failed liveness probe: its
        Killing events read "Container NAME failed liveness probe, will be restarted"."""
        events = _json(
            await self._call(
                self.core.list_namespaced_event,
                namespace,
                field_selector=f"involvedObject.uid={pod_uid},reason=Killing",
            )
        )
        killed = set()
        for event in events.get("items", []):
            message = event.get("message") or ""
            if "failed liveness probe" in message and message.startswith("Container "):
                killed.add(message.split()[1])
        return killed
