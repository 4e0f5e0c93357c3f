"""ModelDeployment status: what the operator writes."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modelpilot.api.base import ApiModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None


class ReplicaCounts(ApiModel):
    desired: int = 0
    starting: int = 0
    active: int = 0
    terminating: int = 0


class PodReadiness(ApiModel):
    ready: int = 0
    not_ready: int = 0
    unknown: int = 0


class ReasonCount(ApiModel):
    reason: str
    count: int


class LastRestart(ApiModel):
    pod: str
    container: str
    reason: str
    exit_code: int | None = None
    time: str | None = None


class ContainerRestartCount(ApiModel):
    pod: str
    uid: str
    container: str
    restart_count: int


class ColdStartSample(ApiModel):
    pod: str
    ready_time: str  # when the pod first became Ready
    seconds: float  # from the pod's creation to then


class ColdStart(ApiModel):
    last_seconds: float | None = None
    p50_seconds: float | None = None  # over `recent`
    samples: int = 0  # cold starts measured since the ModelDeployment was created
    recent: list[ColdStartSample] = Field(default_factory=list)


class Restarts(ApiModel):
    total: int = 0
    by_reason: list[ReasonCount] = Field(default_factory=list)
    last: LastRestart | None = None
    containers: list[ContainerRestartCount] = Field(default_factory=list)


class ConditionUpdate(BaseModel):
    """A condition as a component decides it; the status worker adds lastTransitionTime
    and observedGeneration when it writes it."""

    model_config = ConfigDict(frozen=True)

    type: str
    status: ConditionStatus
    reason: str
    message: str
