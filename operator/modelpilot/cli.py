"""The `modelpilot` command; each capability adds its subcommand here."""

from collections.abc import Callable
from typing import TypeVar

import click

from modelpilot import __version__
from modelpilot.times import parse_duration

FC = TypeVar("FC", bound=Callable[..., object])


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _scrape_interval(name: str) -> Callable[[FC], FC]:
    return click.option(
        "--scrape-interval",
        name,
        default="15s",
        show_default=True,
        callback=_duration,
        help="How often Prometheus scrapes the meters: rate() windows span at least four scrapes.",
    )


_prometheus_url = click.option(
    "--prometheus-url",
    envvar="MODELPILOT_PROMETHEUS_URL",
    required=True,
    help="Prometheus holding the meter and operator series.",
)


def _from_file(what: str) -> Callable[[FC], FC]:
    return click.option(
        "--from-file",
        "from_file",
        type=click.Path(exists=True, dir_okay=False),
        help=f"Read {what} instead of the cluster.",
    )


def _history(what: str) -> Callable[[FC], FC]:
    """--lookback, --step and --scrape-interval: the history a command reads."""
    options = (
        click.option("--lookback", default="6h", show_default=True, callback=_duration, help=what),
        click.option("--step", default=60, show_default=True, help="Resolution in seconds."),
        _scrape_interval("scrape_interval"),
    )

    def apply(command: FC) -> FC:
        for option in reversed(options):  # as if stacked in this order above the command
            command = option(command)
        return command

    return apply


_namespace = click.option(
    "-n", "--namespace", default="default", show_default=True, help="The model's namespace."
)


def _served_namespaces(what: str) -> Callable[[FC], FC]:
    """-n/--namespace, repeatable: the namespaces a long-running component serves."""
    return click.option(
        "-n",
        "--namespace",
        "namespaces",
        multiple=True,
        help=f"Serve only {what} (repeatable). Default: all namespaces.",
    )


_output_format = click.option(
    "-o",
    "--output",
    type=click.Choice(["table", "json", "yaml"]),
    default="table",
    show_default=True,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelpilot")
def main() -> None:
    """ModelPilot: observability, concurrency autoscaling and an autoscaling advisor for
    model servers on Kubernetes."""


@main.command()
@_served_namespaces("this namespace")
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
    "--lease-duration",
    "lease_duration_seconds",
    default=15.0,
    show_default=True,
    help="Seconds a leader's lease lasts: a standby takes over within it (plus a retry) "
    "when the leader dies; the leader renews every 2/15 of it.",
)
@click.option(
    "--lease-namespace",
    help="Namespace of the leader-election Lease. Default: the operator's own (in a pod), "
    "else modelpilot-system.",
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
@click.option(
    "--prometheus-url",
    envvar="MODELPILOT_PROMETHEUS_URL",
    help="Prometheus holding the meter series (the scaler and the advisor need it).",
)
@click.option(
    "--scaler-interval",
    default=10.0,
    show_default=True,
    help="Seconds between scaling decisions (one batched Prometheus query each).",
)
@click.option(
    "--selector",
    help="Serve only ModelDeployments with these labels (a label selector), to shard models "
    "between operators.",
)
@click.option(
    "--gpu-interval",
    default=30.0,
    show_default=True,
    help="Seconds between GPU usage summaries (agent or DCGM exporter series).",
)
@click.option(
    "--advisor-interval",
    default=300.0,
    show_default=True,
    help="Seconds between advisor evaluations (one query per signal for all models).",
)
@click.option(
    "--advisor-lookback",
    "advisor_lookback_seconds",
    default="6h",
    show_default=True,
    callback=_duration,
    help="History the advisor reads (e.g. 6h, 90m).",
)
@click.option(
    "--advisor-step",
    "advisor_step_seconds",
    default="60s",
    show_default=True,
    callback=_duration,
    help="Resolution of that history (one point per step).",
)
@click.option(
    "--advisor-processes",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Worker processes that judge models, for fleets of hundreds: about one per CPU the "
    "operator has, each about 50 MiB (0: judge in the operator's own process).",
)
@click.option(
    "--activator-namespace",
    envvar="MODELPILOT_ACTIVATOR_NAMESPACE",
    help="Namespace of the activator's pods (manifests/activator): models may then scale to "
    "zero (minReplicas 0). Without it minReplicas 0 is held at 1, and status says why.",
)
@click.option(
    "--activator-ports",
    default="20000-29999",
    show_default=True,
    help="Ports the activator may listen on, one per model that scales to zero (FIRST-LAST; "
    "operators sharding models need ranges that do not overlap).",
)
@_scrape_interval("scrape_interval_seconds")
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def run(namespaces: tuple[str, ...], verbose: bool, **options: object) -> None:
    """Run the operator (uses in-cluster credentials, else KUBECONFIG)."""
    from modelpilot.controller.config import OperatorConfig
    from modelpilot.controller.runner import run as run_operator

    config = OperatorConfig.model_validate({**options, "namespaces": list(namespaces)})
    run_operator(config, verbose=verbose)


@main.command()
@_served_namespaces("this namespace's models")
@click.option(
    "--host",
    default="0.0.0.0",
    show_default=True,
    help="Address the models' ports listen on.",
)
@click.option(
    "--metrics-address",
    default="0.0.0.0:9090",
    show_default=True,
    help="host:port for /metrics, /healthz and /readyz.",
)
@click.option(
    "--keep-alive-seconds",
    default=10.0,
    show_default=True,
    help="Seconds between keep-alive comments to a held streaming (SSE) client.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def activator(namespaces: tuple[str, ...], verbose: bool, **options: object) -> None:
    """Run the activator: it holds the requests of a model scaled to zero until a replica
    is Ready (uses in-cluster credentials, else KUBECONFIG)."""
    import logging

    from kubernetes import config as kube_config

    from modelpilot.activator.server import ActivatorConfig
    from modelpilot.activator.server import run as run_activator

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        run_activator(ActivatorConfig.model_validate({**options, "namespaces": list(namespaces)}))
    except (kube_config.ConfigException, OSError) as exc:
        raise click.ClickException(
            f"no usable credentials ({exc}): run in a pod, or set KUBECONFIG"
        ) from None


@main.command()
@click.option(
    "--listen",
    default="0.0.0.0:8099",
    show_default=True,
    help="host:port for model traffic (the Service's target).",
)
@click.option(
    "--upstream",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The model server, in the same pod.",
)
@click.option(
    "--metrics-listen",
    default="0.0.0.0:9099",
    show_default=True,
    help="host:port for /metrics, /healthz and /readyz.",
)
@click.option("--model-deployment", required=True, help="Value of the model_deployment label.")
@click.option(
    "--max-concurrency",
    default=0,
    show_default=True,
    help="Requests served at once; more wait in a queue. 0: unlimited.",
)
@click.option(
    "--max-queue",
    default=1000,
    show_default=True,
    help="Requests that may wait for a slot; more get 503 at once.",
)
@click.option(
    "--queue-timeout",
    default=60.0,
    show_default=True,
    help="Seconds a request may wait in the queue before it gets 503.",
)
@click.option(
    "--drain-timeout",
    default=25.0,
    show_default=True,
    help="On SIGTERM, seconds in-flight requests get to finish.",
)
@click.option(
    "--upstream-timeout",
    default=600.0,
    show_default=True,
    help="Longest silence from the model server before 504.",
)
@click.option(
    "--upstream-ready-path",
    default="/health",
    show_default=True,
    help="The model server's readiness path (the meter's /readyz follows it).",
)
@click.option(
    "--passthrough-path",
    "passthrough_paths",
    multiple=True,
    help="Path forwarded but not counted as inference (repeatable; default: common health paths).",
)
@click.option(
    "--openai-metrics/--no-openai-metrics",
    default=True,
    show_default=True,
    help="Count tokens, TTFT and TPOT on /v1/chat/completions, /v1/completions, /v1/embeddings.",
)
@click.option(
    "--namespace",
    envvar="MODELPILOT_NAMESPACE",
    default="default",
    show_default=True,
    help="The model's namespace (with --model-deployment, names its async queue).",
)
@click.option(
    "--async-broker",
    envvar="MODELPILOT_ASYNC_BROKER",
    show_envvar=True,
    help="redis:// URL of the async queue's broker (from a Secret); none: async is off.",
)
@click.option(
    "--async-max-queue-seconds",
    default=3600.0,
    show_default=True,
    help="Longest (and default) time an async request may wait before it expires.",
)
@click.option(
    "--async-result-ttl",
    default=86400.0,
    show_default=True,
    help="Seconds an async result is kept after it finished.",
)
@click.option(
    "--async-visibility-timeout",
    default=30.0,
    show_default=True,
    help="Seconds without renewal after which another meter takes a started request.",
)
@click.option(
    "--async-max-attempts",
    default=3,
    show_default=True,
    help="Starts of one async request before it is FAILED.",
)
@click.option(
    "--async-webhook-secret",
    envvar="MODELPILOT_ASYNC_WEBHOOK_SECRET",
    show_envvar=True,
    help="HMAC key for webhook signatures (from a Secret); none: webhooks are refused.",
)
@click.option(
    "--async-webhook-host",
    "async_webhook_hosts",
    multiple=True,
    help="Allowed webhook host (repeatable; patterns like *.example.com; none: any).",
)
@click.option(
    "--async-webhook-attempts",
    default=8,
    show_default=True,
    help="Delivery attempts of one webhook.",
)
@click.option(
    "--async-webhook-backoff",
    default=1.0,
    show_default=True,
    help="Seconds before the first webhook retry; doubles each time.",
)
@click.option(
    "--uvloop/--no-uvloop",
    default=True,
    show_default=True,
    help="Run on uvloop (faster; see benchmarks/meter.py).",
)
def meter(uvloop: bool, passthrough_paths: tuple[str, ...], **options: object) -> None:
    """Run the meter sidecar: a reverse proxy that measures every request."""
    import logging

    from pydantic import ValidationError

    from modelpilot.meter.config import MeterConfig
    from modelpilot.meter.server import run as run_meter

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = MeterConfig.model_validate(
            {**options, **({"passthrough_paths": passthrough_paths} if passthrough_paths else {})}
        )
    except ValidationError as exc:
        raise click.UsageError(
            "; ".join(
                f"--{'-'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}"
                for e in exc.errors()
            )
        ) from None
    run_meter(config, use_uvloop=uvloop)


@main.command()
@click.argument("name", required=False)
@_namespace
@click.option("-A", "--all-namespaces", is_flag=True, help="Every namespace.")
@_prometheus_url
@_from_file("ModelDeployments from this YAML (one or many documents)")
@_history("History to read (e.g. 6h, 90m).")
@_output_format
def advise(
    name: str | None,
    namespace: str,
    all_namespaces: bool,
    prometheus_url: str,
    from_file: str | None,
    lookback: int,
    step: int,
    scrape_interval: int,
    output: str,
) -> None:
    """Evaluate ModelDeployments once against Prometheus and print recommendations (no
    writes anywhere)."""
    from modelpilot.advisor.command import run_advise

    run_advise(
        name=name,
        namespace=None if all_namespaces else namespace,
        prometheus_url=prometheus_url,
        from_file=from_file,
        lookback=lookback,
        step=step,
        scrape_interval=scrape_interval,
        output=output,
    )


@main.command()
@click.argument("name")
@_namespace
@_prometheus_url
@_from_file("ModelDeployments from this YAML (one or many documents)")
@click.option(
    "--set",
    "candidates",
    multiple=True,
    metavar="SETTING=VALUE[,...]",
    help="A candidate: settings to change, e.g. minReplicas=2,scaleDownDelaySeconds=600 "
    "(repeat for more candidates).",
)
@click.option(
    "--trace",
    type=click.Path(exists=True, dir_okay=False),
    help="Replay this arrival trace (CSV, first column a timestamp) instead of the model's "
    "own traffic.",
)
@_history("History to fit and replay (e.g. 6h, 90m).")
@_output_format
def whatif(
    name: str,
    namespace: str,
    prometheus_url: str,
    from_file: str | None,
    candidates: tuple[str, ...],
    trace: str | None,
    lookback: int,
    step: int,
    scrape_interval: int,
    output: str,
) -> None:
    """Replay a model's traffic under its current settings and under candidates: cost,
    latency, objective attainment, cold starts and scale events side by side."""
    from modelpilot.advisor.command import run_whatif

    run_whatif(
        name=name,
        namespace=namespace,
        prometheus_url=prometheus_url,
        from_file=from_file,
        candidates=candidates,
        trace=trace,
        lookback=lookback,
        step=step,
        scrape_interval=scrape_interval,
        output=output,
    )


@main.command("gpu-agent")
@click.option("--listen", default="0.0.0.0:9400", show_default=True, help="host:port for /metrics.")
@click.option(
    "--node-name",
    envvar="NODE_NAME",
    required=True,
    help="This node's name (the downward API sets NODE_NAME).",
)
@click.option(
    "--proc",
    default="/proc",
    show_default=True,
    help="Where the host's processes are (hostPID: /proc).",
)
@click.option(
    "--pod-refresh",
    default=30.0,
    show_default=True,
    help="Seconds between listings of this node's pods.",
)
def gpu_agent(listen: str, node_name: str, proc: str, pod_refresh: float) -> None:
    """Export GPU utilization and memory per pod from NVML (run one per GPU node)."""
    from modelpilot.gpu.command import run_agent

    run_agent(listen, node_name, proc, pod_refresh)


@main.command()
@click.argument("name")
@_namespace
@_prometheus_url
@_from_file("the ModelDeployment from this YAML")
@click.option(
    "--since",
    default="6h",
    show_default=True,
    callback=_duration,
    help="History to show.",
)
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Where to write the HTML file.",
)
def report(
    name: str, namespace: str, prometheus_url: str, from_file: str | None, since: int, output: str
) -> None:
    """Write one self-contained HTML report for a ModelDeployment: the metrics tab's charts,
    its status and the advisor's recommendations with their evidence."""
    from modelpilot.report.command import run_report

    run_report(
        name=name,
        namespace=namespace,
        prometheus_url=prometheus_url,
        from_file=from_file,
        since=since,
        output=output,
    )
