"""The `modelpilot` command; each capability adds its subcommand here."""

import click

from modelpilot import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelpilot")
def main() -> None:
    """ModelPilot: observability, concurrency autoscaling and an autoscaling advisor for
    model servers on Kubernetes."""


@main.command()
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="Serve only this namespace (repeatable). Default: all namespaces.",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:8080",
    show_default=True,
    help="host:port for the operator's Prometheus /metrics.",
)
@click.option(
    "--health-address",
    default="0.0.0.0:8081",
    show_default=True,
    help="host:port for the liveness endpoint /healthz.",
)
@click.option(
    "--meter-image",
    envvar="MODELPILOT_METER_IMAGE",
    default="ghcr.io/modelpilot/modelpilot:0.1.0",
    show_default=True,
    help="Image of the injected meter sidecar.",
)
@click.option(
    "--resync-seconds",
    default=15.0,
    show_default=True,
    help="How often every model's status is re-evaluated without events.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def run(
    namespaces: tuple[str, ...],
    metrics_address: str,
    health_address: str,
    meter_image: str,
    resync_seconds: float,
    verbose: bool,
) -> None:
    """Run the operator (uses in-cluster credentials, else KUBECONFIG)."""
    from modelpilot.controller.config import OperatorConfig
    from modelpilot.controller.runner import run as run_operator

    run_operator(
        OperatorConfig(
            namespaces=list(namespaces),
            metrics_address=metrics_address,
            health_address=health_address,
            meter_image=meter_image,
            resync_seconds=resync_seconds,
        ),
        verbose=verbose,
    )
