"""Leader election on a coordination.k8s.io/v1 Lease: of several operator replicas (the
manifests run two), exactly one runs the handlers and loops that write.

Timing, as client-go's leader election (for the default --lease-duration of 15 s): the
leader renews every 2 s; a leader that has not renewed for 10 s (two thirds of the lease)
stops at once (the process exits and Kubernetes starts it again as a candidate), 5 s
before any candidate may take the lease over. Candidates try every 2 s, so a standby
leads within 17 s of the leader's death, and at once after a clean stop released it.
"""

import asyncio
import hashlib
import json
import logging
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from prometheus_client import Gauge

from modelpilot.times import parse_time

log = logging.getLogger(__name__)

LEASE_SECONDS = 15


@dataclass(frozen=True)
class Timing:
    lease: float = LEASE_SECONDS

    @property
    def renew_deadline(self) -> float:
        return self.lease * 2 / 3

    @property
    def retry(self) -> float:
        return max(self.lease / 7.5, 0.25)

    @property
    def call_timeout(self) -> float:
        """One Lease call may not outlast the renew deadline."""
        return self.renew_deadline / 2


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

LEADER = Gauge(
    "modelpilot_operator_leader",
    "1 while this operator replica holds the lease and runs the writers; 0 on a standby.",
    ["lease"],
)


def new_identity() -> str:
    """Unique per process: the pod's host name and a random suffix (a restarted container
    in the same pod is a new candidate)."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_name(selector: str | None, namespaces: list[str]) -> str:
    """One lease per shard: operators that serve different models do not wait on each other."""
    if not selector and not namespaces:
        return "modelpilot-operator"
    shard = f"{selector or ''}|{','.join(sorted(namespaces))}"
    return f"modelpilot-operator-{hashlib.sha256(shard.encode()).hexdigest()[:10]}"


def lease_namespace(configured: str | None) -> str:
    """The flag, else the operator's own namespace in a pod, else modelpilot-system."""
    if configured:
        return configured
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        return "modelpilot-system"


@dataclass(frozen=True)
class Holding:
    """Who holds a Lease and until when, as a candidate reads it."""

    holder: str | None
    renewed: float | None  # unix time of spec.renewTime
    duration: int

    @classmethod
    def of(cls, lease: dict[str, Any]) -> "Holding":
        spec = lease.get("spec") or {}
        renewed = parse_time(spec.get("renewTime"))
        return cls(
            spec.get("holderIdentity") or None,
            renewed.timestamp() if renewed else None,
            int(spec.get("leaseDurationSeconds") or LEASE_SECONDS),
        )


def may_hold(holding: Holding | None, me: str, now: float) -> bool:
    """Whether `me` may take or keep the lease: free, mine, or expired."""
    if holding is None or holding.holder in (None, me):
        return True
    return holding.renewed is None or now - holding.renewed > holding.duration


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(
    previous: dict[str, Any] | None, me: str, now: float, seconds: int = LEASE_SECONDS
) -> dict[str, Any]:
    """The Lease's spec with `me` holding it from `now`."""
    spec = dict((previous or {}).get("spec") or {})
    if spec.get("holderIdentity") != me:
        spec["acquireTime"] = _micro(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if previous else 0)
    spec.update(holderIdentity=me, leaseDurationSeconds=seconds, renewTime=_micro(now))
    return spec


class Elector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing = Timing(),
    ) -> None:
        self.leases: Any = client.CoordinationV1Api(api)
        self.timing = timing
        self.namespace, self.name, self.identity = namespace, name, identity
        self.leading = False
        self._renewed = 0.0  # monotonic time of the last successful renewal
        LEADER.labels(name).set(0)

    @property
    def _seconds(self) -> int:
        return max(int(self.timing.lease), 1)

    def _call(self, method: Any, *args: Any) -> dict[str, Any]:
        response = method(*args, _preload_content=False, _request_timeout=self.timing.call_timeout)
        body: dict[str, Any] = json.loads(response.data)
        return body

    def _try(self) -> bool:
        """One attempt to take or renew the lease (run in a worker thread)."""
        now = time.time()
        try:
            lease = self._call(self.leases.read_namespaced_lease, self.name, self.namespace)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": lease_spec(None, self.identity, now, self._seconds),
            }
            self._call(self.leases.create_namespaced_lease, self.namespace, body)
            return True
        if not may_hold(Holding.of(lease), self.identity, now):
            return False
        body = {
            # resourceVersion: of two candidates taking the same expired lease, one wins.
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease["metadata"]["resourceVersion"],
            },
            "spec": lease_spec(lease, self.identity, now, self._seconds),
        }
        self._call(self.leases.replace_namespaced_lease, self.name, self.namespace, body)
        return True

    async def attempt(self) -> bool:
        try:
            held = await asyncio.to_thread(self._try)
        except Exception as exc:  # conflict (another took it), timeouts, server down
            log.debug("lease %s/%s: %r", self.namespace, self.name, exc)
            held = False
        if held:
            self._renewed = time.monotonic()
        return held

    async def acquire(self) -> None:
        """Wait until this replica leads."""
        log.info(
            "waiting to lead: lease %s/%s, identity %s", self.namespace, self.name, self.identity
        )
        while True:
            if await self.attempt():
                break
            await asyncio.sleep(self.timing.retry)
        self.leading = True
        LEADER.labels(self.name).set(1)
        log.info("leading: lease %s/%s", self.namespace, self.name)

    async def keep(self) -> None:
        """Renew while leading; return once the lease could not be renewed in time."""
        while True:
            await asyncio.sleep(self.timing.retry)
            if not await self.attempt() and (
                time.monotonic() - self._renewed > self.timing.renew_deadline
            ):
                self.leading = False
                LEADER.labels(self.name).set(0)
                return

    def release(self) -> None:
        """Hand the lease over at once on a clean stop (the standby need not wait it out)."""
        if not self.leading:
            return
        try:
            lease = self._call(self.leases.read_namespaced_lease, self.name, self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1)
                self._call(self.leases.replace_namespaced_lease, self.name, self.namespace, lease)
        except Exception as exc:
            log.warning("could not release lease %s/%s: %r", self.namespace, self.name, exc)
        self.leading = False
        LEADER.labels(self.name).set(0)
