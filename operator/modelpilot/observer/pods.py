"""The facts about a pod the observer needs, taken from its API body once (index values).

Slotted dataclasses, not pydantic models: the operator keeps one per pod of the fleet (10,000
and more), and these are a third of a pydantic model's size.
"""

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    name: str
    restart_count: int = 0
    last_reason: str | None = None  # lastState.terminated.reason
    last_exit_code: int | None = None
    last_finished_at: str | None = None
    waiting_reason: str | None = None  # state.waiting.reason


@dataclass(frozen=True, slots=True)
class PodInfo:
    name: str
    uid: str
    created: str | None = None
    ready: str | None = None  # the Ready condition's status; None when there is none
    ready_since: str | None = None  # its lastTransitionTime
    deleting_since: str | None = None  # metadata.deletionTimestamp
    ip: str | None = None  # status.podIP (the activator sends held requests there)
    containers: tuple[ContainerInfo, ...] = ()

    @property
    def terminating(self) -> bool:
        return self.deleting_since is not None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> "PodInfo":
        meta = body.get("metadata", {})
        status = body.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        containers = []
        for cs in status.get("containerStatuses") or []:
            last = (cs.get("lastState") or {}).get("terminated") or {}
            waiting = (cs.get("state") or {}).get("waiting") or {}
            containers.append(
                ContainerInfo(
                    name=sys.intern(cs.get("name", "?")),  # the same few names in every pod
                    restart_count=int(cs.get("restartCount") or 0),
                    last_reason=last.get("reason"),
                    last_exit_code=last.get("exitCode"),
                    last_finished_at=last.get("finishedAt"),
                    waiting_reason=waiting.get("reason"),
                )
            )
        return cls(
            name=meta.get("name", "?"),
            uid=meta.get("uid", ""),
            created=meta.get("creationTimestamp"),
            ready=ready.get("status") if ready else None,
            ready_since=ready.get("lastTransitionTime") if ready else None,
            deleting_since=meta.get("deletionTimestamp"),
            ip=status.get("podIP"),
            containers=tuple(containers),
        )
