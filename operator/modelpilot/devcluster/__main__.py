"""`python -m modelpilot.devcluster up|down|status|images` (what `make cluster-up/down` and
`make images` run)."""

import sys
import time
from pathlib import Path

import click

from modelpilot.devcluster import controlplane, images, node
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
@click.option(
    "--node/--no-node",
    default=False,
    help="Also a real node: containerd, kubelet, kube-proxy, kube-scheduler and the "
    "controllers, with pods on a bridge (needs root, cgroups and overlayfs).",
)
def up(state_dir: Path, node: bool) -> None:
    """Start it (a running, healthy one is left as it is)."""
    started = time.monotonic()
    try:
        state = controlplane.up(state_dir.resolve(), node=node)
    except (MissingBinaryError, RuntimeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"local control plane ready in {time.monotonic() - started:.1f}s")
    click.echo(controlplane.summary(state))


@cli.command("images")
@_state_dir
def build_images(state_dir: Path) -> None:
    """Build ModelPilot's and the sample model's images (cached by content) and import them
    into the node's containerd when a node runs."""
    state = controlplane.load_state(state_dir.resolve())
    running = state is not None and state.node and controlplane.is_healthy(state)
    try:
        for image in (images.modelpilot_image(), images.sample_model_image()):
            archive = images.build(image, log=click.echo)
            if state is not None and running:
                images.import_into(archive, image.ref, node.containerd_socket(state.node_dir))
            click.echo(f"{image.ref}  {archive}" + ("  (imported)" if running else ""))
    except (MissingBinaryError, RuntimeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


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
