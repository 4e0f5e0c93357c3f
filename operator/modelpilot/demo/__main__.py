"""`python -m modelpilot.demo` (what `make demo` runs)."""

import sys
from pathlib import Path

import click

from modelpilot.demo.run import Settings, run
from modelpilot.devcluster.controlplane import DEFAULT_STATE_DIR


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--minutes",
    envvar="DEMO_MINUTES",
    type=click.FloatRange(3, 9),
    default=8.0,
    show_default=True,
    help="How long the traffic runs (set-up and tear-down add under a minute).",
)
@click.option("--quick", is_flag=True, help="A 4-minute run (same as --minutes 4).")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_STATE_DIR / "demo",
    show_default=True,
    help="Where the demo's control plane keeps its data and logs.",
)
@click.option(
    "--live/--lines",
    default=None,
    help="Redraw a full-screen view, or print lines. Default: live on a terminal.",
)
@click.option(
    "--keep-cluster",
    is_flag=True,
    help="Leave the control plane up at the end (the ModelDeployment stays readable).",
)
def main(
    minutes: float, quick: bool, state_dir: Path, live: bool | None, keep_cluster: bool
) -> None:
    """The whole product on one machine: a local cluster, the sample model with its meter,
    bursty traffic, live status, the advisor's recommendations, then Auto mode."""
    settings = Settings(
        minutes=4.0 if quick else minutes,
        state_dir=state_dir.resolve(),
        live=sys.stdout.isatty() if live is None else live,
        keep_cluster=keep_cluster,
    )
    sys.exit(run(settings))


main()
