"""Run the operator (what `modelpilot run` does)."""

import kopf

from modelpilot.controller import handlers  # noqa: F401  (registers the handlers)
from modelpilot.controller.config import OperatorConfig


def run(config: OperatorConfig, verbose: bool = False) -> None:
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.PLAIN)
    kopf.run(
        # One replica at a time: the manifests run a single pod with a Recreate strategy,
        # so kopf's peering (which needs its own CRDs) is not used.
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=config.namespaces,
        liveness_endpoint=f"http://{config.health_address}/healthz",
        memo=kopf.Memo(config=config),
    )
