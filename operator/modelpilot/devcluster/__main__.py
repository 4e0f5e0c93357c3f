"""`python -m modelpilot.devcluster up|down|status` (what `make cluster-up/down` run)."""

import sys
import time
from pathlib import Path

import click

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.binaries import MissingBinaryError

_state_dir = click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=controlplane.DEFAULT_STATE_DIR,
    show_default=True,
    help="Where kubeconfigs, logs and data live.",
)


@click.group()
def cli() -> None:
    """The local control plane: etcd, kube-apiserver and Prometheus on loopback."""


@cli.command()
@_state_dir
def up(state_dir: Path) -> None:
    """Start it (a running, healthy one is left as it is)."""
    started = time.monotonic()
    try:
        state = controlplane.up(state_dir.resolve())
    except (MissingBinaryError, RuntimeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"local control plane ready in {time.monotonic() - started:.1f}s")
    click.echo(controlplane.summary(state))


@cli.command()
@_state_dir
def down(state_dir: Path) -> None:
    """Stop the processes `up` started, by their recorded PIDs."""
    stopped = controlplane.down(state_dir.resolve())
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@cli.command()
@_state_dir
def status(state_dir: Path) -> None:
    """Say whether it runs, and where."""
    state = controlplane.load_state(state_dir.resolve())
    if state is None or not controlplane.is_healthy(state):
        click.echo("not running")
        sys.exit(1)
    click.echo(controlplane.summary(state))


cli()
