"""The `modelpilot` command; each capability adds its subcommand here."""

import click

from modelpilot import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelpilot")
def main() -> None:
    """ModelPilot: observability, concurrency autoscaling and an autoscaling advisor for
    model servers on Kubernetes."""
