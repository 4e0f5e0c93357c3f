"""Meter settings (from `modelpilot meter` flags)."""

from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

DEFAULT_PASSTHROUGH = (
    "/health",
    "/healthz",
    "/ready",
    "/readyz",
    "/live",
    "/livez",
    "/ping",
    "/v2/health/ready",
    "/v2/health/live",
    "/metrics",
)


class MeterConfig(BaseModel):
    listen: str = "0.0.0.0:8099"
    upstream: str = "http://127.0.0.1:8000"
    metrics_listen: str = "0.0.0.0:9099"
    model_deployment: str
    max_concurrency: int = Field(0, ge=0, description="0: unlimited")
    max_queue: int = Field(1000, ge=0, description="requests that may wait for a slot")
    queue_timeout: float = Field(60.0, gt=0)
    drain_timeout: float = Field(25.0, ge=0)
    upstream_timeout: float = Field(600.0, gt=0, description="longest silence from upstream")
    connect_timeout: float = Field(5.0, gt=0)
    upstream_ready_path: str = "/health"
    passthrough_paths: tuple[str, ...] = DEFAULT_PASSTHROUGH
    namespace: str = "default"  # with model_deployment, names the model's async queue
    # Async requests (Prefer: respond-async) need a broker: a redis:// URL, from a Secret.
    async_broker: str | None = None
    async_max_body_bytes: int = 16 * 1024 * 1024
    async_result_ttl: float = Field(86400.0, gt=0, description="seconds results are kept")
    async_max_queue_seconds: float = Field(3600.0, gt=0, description="default and longest")
    async_visibility_timeout: float = Field(30.0, gt=0, description="then another meter may")
    async_max_attempts: int = Field(3, ge=1)
    async_webhook_secret: str | None = None
    async_webhook_hosts: tuple[str, ...] = ()  # allowed webhook hosts (patterns); none: any
    async_webhook_attempts: int = Field(8, ge=1)
    async_webhook_backoff: float = Field(1.0, gt=0, description="first retry's wait, doubling")
    openai_metrics: bool = True  # tokens, TTFT and TPOT from OpenAI-compatible responses

    @field_validator("upstream")
    @classmethod
    def _plain_http(cls, url: str) -> str:
        # The model server is in the same pod: the meter speaks plain HTTP/1.1 to it.
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"must be http://HOST[:PORT] (the model server in the pod), not {url!r}"
            )
        return url
