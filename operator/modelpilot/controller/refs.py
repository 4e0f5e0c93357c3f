"""What the operator's indexes keep per object: small, plain and immutable."""

import asyncio
import copy
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from modelpilot.api import Key
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.observer.pods import PodInfo
from modelpilot.workload.validate import validate

T = TypeVar("T")
log = logging.getLogger(__name__)


def first(values: Collection[T] | None) -> T | None:
    """The one value an index keeps for a key (kopf stores a collection per key)."""
    return next(iter(values), None) if values else None


class ModelRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]

    @cached_property
    def validated(self) -> tuple[ModelDeploymentSpec | None, list[str]]:
        """The parsed spec (None when invalid) and its problems, once per object version:
        the status worker, scaler and advisor all ask on every pass. Never raises: a spec
        the operator cannot read is this object's problem alone."""
        try:
            return validate(self.spec, self.name)
        except Exception as exc:  # a bug in validation: said on this object, logged once
            log.exception("validating %s/%s failed", self.namespace, self.name)
            return None, [f"the operator could not read this spec ({type(exc).__name__})"]

    @property
    def involved(self) -> dict[str, str]:
        """The involvedObject of an Event about this ModelDeployment."""
        from modelpilot.api import API_VERSION, KIND

        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
        }

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "ModelRef":
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
            spec=copy.deepcopy(dict(body.get("spec") or {})),
            status=copy.deepcopy(dict(body.get("status") or {})),
        )


def valid_models(
    index: Mapping[Key, Collection[ModelRef]],
) -> dict[Key, tuple[ModelRef, ModelDeploymentSpec]]:
    """The models in an index whose spec is valid, with that spec."""
    out = {}
    for key, refs in list(index.items()):
        model = first(refs)
        spec = model.validated[0] if model is not None else None
        if model is not None and spec is not None:
            out[key] = (model, spec)
    return out


class DeploymentRef(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    replicas: int
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "DeploymentRef":
        return cls(
            name=body["metadata"]["name"],
            replicas=int((body.get("spec") or {}).get("replicas") or 0),
            generation=int(body["metadata"].get("generation") or 0),
        )


@dataclass(frozen=True)
class Indexes:
    """kopf's indexes, kept from its watches: what the status worker and the loops read
    instead of calling the API server."""

    models: Mapping[Key, Collection[ModelRef]]
    pods: Mapping[Key, Collection[PodInfo]]
    deployments: Mapping[Key, Collection[DeploymentRef]]
    hpas: Mapping[Key, Collection[str]] = field(default_factory=dict)  # by Deployment
    # Set once the pods are all listed: until then no status or scaling step is computed
    # (a model whose pods are not known yet would read as having none).
    pods_listed: asyncio.Event | None = None

    async def wait_for_pods(self) -> None:
        if self.pods_listed is not None:
            await self.pods_listed.wait()
