"""Operator settings (from `modelpilot run` flags)."""

from pydantic import BaseModel, Field

from modelpilot.observer.summary import Thresholds


class OperatorConfig(BaseModel):
    namespaces: list[str] = Field(default_factory=list, description="Empty: all namespaces.")
    selector: str | None = Field(None, description="Label selector: serve only these models.")
    metrics_address: str = Field("0.0.0.0:8080", description="host:port of /metrics.")
    health_address: str = Field("0.0.0.0:8081", description="host:port of /healthz.")
    lease_duration_seconds: float = Field(
        15.0, ge=1, description="How long a leader's lease lasts without renewal."
    )
    lease_namespace: str | None = Field(
        None, description="Namespace of the leader-election Lease (default: the operator's)."
    )
    meter_image: str = Field(
        "ghcr.io/modelpilot/modelpilot:0.1.0", description="Image of the meter sidecar."
    )
    resync_seconds: float = Field(15.0, description="Re-evaluate time-based conditions this often.")
    status_concurrency: int = Field(8, description="Status writes in flight at once.")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    prometheus_url: str | None = Field(None, description="Where the meter series are.")
    scaler_interval: float = Field(10.0, description="Seconds between scaling decisions.")
    gpu_interval: float = Field(30.0, description="Seconds between GPU summaries.")
    advisor_interval: float = Field(300.0, description="Seconds between advisor evaluations.")
    advisor_lookback_seconds: int = Field(6 * 3600, description="History the advisor reads.")
    advisor_step_seconds: int = Field(60, ge=1, description="Resolution of that history.")
    advisor_processes: int = Field(
        0, ge=0, description="Worker processes that judge models (0: the operator's own)."
    )
    activator_namespace: str | None = Field(
        None, description="Where the activator's pods run (None: no scale to zero)."
    )
    activator_ports: str = Field("20000-29999", description="FIRST-LAST: models' activator ports.")
    scrape_interval_seconds: int = Field(
        15, ge=1, description="Prometheus' scrape interval for the meters (sizes rate windows)."
    )

    @property
    def activator_port_range(self) -> tuple[int, int]:
        first, _, last = self.activator_ports.partition("-")
        return int(first), int(last or first)
