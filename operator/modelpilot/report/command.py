"""`modelpilot report`: fetch a model's panels and history, judge it as the operator does,
and write the HTML page (`report.render`)."""

import time
from datetime import UTC, datetime
from pathlib import Path

import click
from prometheus_api_client import PrometheusConnect

from modelpilot.oneshot import CommandError, connect_prometheus, judge_models, load_models
from modelpilot.report.panels import PANELS, Panel, substitute
from modelpilot.report.render import Line, render


def _legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def fetch_panel(
    prom: PrometheusConnect,
    panel: Panel,
    namespace: str,
    model: str,
    start: float,
    end: float,
    step: int,
) -> list[Line]:
    lines = []
    for expr, legend in panel.targets:
        query = substitute(expr, namespace, model, f"{max(2 * step, 60)}s")
        result = prom.custom_query_range(
            query,
            start_time=datetime.fromtimestamp(start, UTC),
            end_time=datetime.fromtimestamp(end, UTC),
            step=str(step),
        )
        for series in result:
            points = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN",)]
            if points:
                lines.append((_legend(legend, series.get("metric", {})), points))
    return lines


def run_report(
    *,
    name: str,
    namespace: str,
    prometheus_url: str,
    from_file: str | None,
    since: int,
    output: str,
    step: int = 60,
) -> None:
    prometheus = connect_prometheus(prometheus_url)
    found = load_models(from_file, namespace, name)
    if not found:
        raise CommandError(f"ModelDeployment {namespace}/{name} not found")
    (judged,) = judge_models(found[:1], prometheus, since, step)
    end = time.time()
    start = end - since
    lines_of = {
        panel.title: fetch_panel(prometheus, panel, namespace, name, start, end, step)
        for panel in PANELS
    }
    page = render(
        *judged.key,
        judged.spec,
        judged.status,
        judged.verdict,
        judged.history,
        lines_of,
        start,
        end,
    )
    Path(output).write_text(page)
    click.echo(f"wrote {output}")
