"""The activator's own series (its /metrics), per model."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LABELS = ("namespace", "model_deployment")
# Held times span a fast restart to a large model's load: seconds to ten minutes.
HOLD_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200)


class ActivatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.held = Gauge(
            "modelpilot_activator_requests_held",
            "Requests held now, waiting for a Ready replica.",
            LABELS,
            registry=self.registry,
        )
        self.hold_time = Histogram(
            "modelpilot_activator_hold_seconds",
            "How long requests were held before a replica took them (or they gave up).",
            LABELS,
            buckets=HOLD_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "modelpilot_activator_requests",
            "Requests the activator received, by outcome: forwarded (held or not), "
            "overflow and timeout (503), upstream_error (502), client_closed.",
            (*LABELS, "outcome"),
            registry=self.registry,
        )
        self.activations = Counter(
            "modelpilot_activator_activations",
            "Times the activator asked the operator to wake a model.",
            LABELS,
            registry=self.registry,
        )
