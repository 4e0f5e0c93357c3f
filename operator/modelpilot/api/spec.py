"""ModelDeployment spec. Defaults match the CRD's, so objects read from files (`advise
--from-file`) behave like objects the API server defaulted."""

from typing import Any, Literal

from pydantic import Field

from modelpilot.api.base import ApiModel


class MeterSpec(ApiModel):
    enabled: bool = True
    image: str | None = None
    port: int = Field(8099, ge=1, le=65535)
    metrics_port: int = Field(9099, ge=1, le=65535)
    max_concurrency: int = Field(0, ge=0)
    queue_timeout_seconds: int = Field(60, ge=1)


class SecretKeyRef(ApiModel):
    """A key of a Secret in the model's namespace. The operator never reads it: the kubelet
    puts it in the meter's environment."""

    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class AsyncSpec(ApiModel):
    """The model's durable async queue on the user's Redis (see README: Async requests)."""

    broker_secret_ref: SecretKeyRef  # a redis:// or rediss:// URL
    webhook_secret_ref: SecretKeyRef | None = None  # HMAC key; without it webhooks are refused
    webhook_hosts: list[str] = Field(default_factory=list)
    max_queue_seconds: int = Field(3600, ge=1)
    result_retention_seconds: int = Field(86400, ge=60)
    visibility_timeout_seconds: int = Field(30, ge=5, le=3600)
    max_attempts: int = Field(3, ge=1, le=100)


INT32_MAX = 2**31 - 1  # a Deployment's replica count is an int32


class AutoscalingSpec(ApiModel):
    min_replicas: int = Field(1, ge=0, le=INT32_MAX)
    max_replicas: int = Field(1, ge=1, le=INT32_MAX)
    concurrency_target: int = Field(1, ge=1)
    target_utilization_percentage: int = Field(70, ge=1, le=100)
    autoscaling_window_seconds: int = Field(60, ge=10, le=3600)
    scale_down_delay_seconds: int = Field(900, ge=0, le=86400)
    # With min_replicas 0: how long, and how many, requests the activator holds per model.
    activation_timeout_seconds: int = Field(600, ge=1, le=3600)
    activation_queue_size: int = Field(1000, ge=1, le=100000)


# Which latency an objective is about: request to last byte, to the first streamed token,
# or the mean time between output tokens (the last two from OpenAI-compatible streams).
LatencyMetric = Literal["EndToEnd", "TimeToFirstToken", "TimePerOutputToken"]


class LatencyObjective(ApiModel):
    metric: LatencyMetric = "EndToEnd"
    percentile: int = Field(95, ge=50, le=99)
    milliseconds: int = Field(ge=1)


class Bounds(ApiModel):
    min: int | None = None
    max: int | None = None


class AdvisorLimits(ApiModel):
    min_replicas: Bounds | None = None
    max_replicas: Bounds | None = None
    concurrency_target: Bounds | None = None
    target_utilization_percentage: Bounds | None = None
    autoscaling_window_seconds: Bounds | None = None
    scale_down_delay_seconds: Bounds | None = None


class AdvisorSpec(ApiModel):
    mode: Literal["Off", "Recommend", "Auto"] = "Recommend"
    latency_objective: LatencyObjective | None = None
    cooldown_seconds: int = Field(3600, ge=0)
    limits: AdvisorLimits = Field(default_factory=AdvisorLimits)


class ModelDeploymentSpec(ApiModel):
    # A PodTemplateSpec, kept as the user wrote it (camelCase dict) and passed through.
    template: dict[str, Any]
    port: int = Field(ge=1, le=65535)
    meter: MeterSpec = Field(default_factory=MeterSpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    advisor: AdvisorSpec = Field(default_factory=AdvisorSpec)
    async_: AsyncSpec | None = Field(None, alias="async")
