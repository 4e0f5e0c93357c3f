"""The report's HTML, pure: one self-contained file (charts embedded as PNG, nothing to
fetch when opened) with the metrics tab's panels, the status summary and the advisor's
verdict, marking on the charts the moments its evidence refers to. `report.command`
fetches what it shows."""

import base64
import html
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from modelpilot.advisor.evaluate import objective_of
from modelpilot.advisor.judge import Verdict
from modelpilot.advisor.model import Evaluation, History
from modelpilot.advisor.rules import build_context
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.report.panels import PANELS, Panel
from modelpilot.settings import wire_name

Line = tuple[str, list[tuple[float, float]]]  # legend, points


@dataclass
class Marks:
    """Moments the advisor's evidence refers to."""

    events: list[float] = field(default_factory=list)  # scale events (vertical lines)
    spans: list[tuple[float, float]] = field(default_factory=list)  # starting replicas


def marks_for(history: History | None, verdict: Verdict, spec: ModelDeploymentSpec) -> Marks:
    """On the history the verdict judged (since the last change)."""
    marks = Marks()
    evaluation = verdict.evaluation
    if history is None or evaluation.status != "ok":
        return marks
    if verdict.judged_since is not None:
        history = history.since(verdict.judged_since)
    reasons = {r.reason for r in evaluation.recommendations}
    context = build_context(history, verdict.settings, objective_of(spec))
    if reasons & {"Thrash", "PrematureScaleDown", "CapacityExhausted"}:
        marks.events = [history.times[i] for i, _ in context.scale_events()]
    if "ColdStarts" in reasons:
        start = None
        for t, starting in zip(history.times, history.starting, strict=True):
            if starting and start is None:
                start = t
            elif not starting and start is not None:
                marks.spans.append((start, t))
                start = None
    return marks


def _num(ts: float) -> float:
    """A unix time as matplotlib's date number: days since its 1970 epoch."""
    return ts / 86400.0


def chart(panel: Panel, lines: list[Line], marks: Marks) -> str:
    """A PNG, base64-encoded."""
    figure, axes = plt.subplots(figsize=(6.4, 2.6), dpi=100)
    for legend, points in lines:
        axes.plot(
            [_num(t) for t, _ in points],
            [v for _, v in points],
            label=legend,
            linewidth=1.3,
        )
    if panel.title in ("Replicas", "End-to-end response time", "Concurrent requests"):
        for t in marks.events:
            axes.axvline(_num(t), color="#d62728", alpha=0.25, linewidth=0.8)
        for a, b in marks.spans:
            axes.axvspan(_num(a), _num(b), color="#ff7f0e", alpha=0.15)
    axes.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    axes.set_ylabel(panel.unit)
    axes.grid(alpha=0.3)
    if len(lines) > 1 or panel.title == "Inference volume":
        axes.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


STYLE = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(640px,1fr));gap:14px}
.panel{border:1px solid #ddd;border-radius:6px;padding:8px 10px;background:#fff}
.panel h3{font-size:14px;margin:0 0 2px} .panel p{font-size:12px;color:#666;margin:0 0 6px}
.nodata{height:200px;display:flex;align-items:center;justify-content:center;color:#999;
 background:#f6f6f6;border-radius:4px;font-size:15px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:4px 8px;
 text-align:left;vertical-align:top} .muted{color:#777}
"""


def _status_table(status: Mapping[str, Any]) -> str:
    rows = []
    replicas, pods = status.get("replicas", {}), status.get("pods", {})
    if replicas:
        rows.append(("Replicas", ", ".join(f"{k} {v}" for k, v in replicas.items())))
    if pods:
        rows.append(("Pods", ", ".join(f"{k} {v}" for k, v in pods.items())))
    restarts = status.get("restarts", {})
    if restarts:
        reasons = ", ".join(f"{r['reason']} {r['count']}" for r in restarts.get("byReason", []))
        rows.append(("Restarts", f"{restarts.get('total', 0)} ({reasons or 'none'})"))
    if gpu := status.get("gpu"):
        rows.append(
            (
                "GPU",
                f"{gpu['utilizationPercent']}% busy, "
                f"{gpu['memoryUsedBytes'] / 2**30:.1f} of "
                f"{gpu['memoryTotalBytes'] / 2**30:.1f} GiB",
            )
        )
    for c in status.get("conditions", []):
        rows.append((c["type"], f"{c['status']} ({c.get('reason', '')}): {c.get('message', '')}"))
    if not rows:
        return '<p class="muted">No status: the ModelDeployment was read from a file.</p>'
    return (
        "<table>"
        + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
        )
        + "</table>"
    )


def _recommendations(evaluation: Evaluation) -> str:
    if evaluation.status != "ok":
        return (
            f"<p>Insufficient data ({html.escape(', '.join(evaluation.missing))}): no "
            "recommendation is made from absent data.</p>"
        )
    if not evaluation.recommendations:
        why = evaluation.message or "the autoscaling settings fit this history"
        return f"<p>No recommendation: {html.escape(why)}.</p>"
    parts = []
    for r in evaluation.recommendations:
        evidence = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in r.evidence.items()
        )
        setting = wire_name(r.setting)
        parts.append(
            f'<div class="recommendation" data-setting="{setting}" data-reason="{r.reason}" '
            f'data-recommended="{r.recommended}">'
            f"<h3>{html.escape(r.reason)}: {setting} {r.current} → "
            f"{r.recommended} <span class=muted>(confidence {r.confidence:.2f})"
            f"</span></h3><p>{html.escape(r.message)}</p><table>{evidence}</table></div>"
        )
    return "".join(parts)


def render(
    namespace: str,
    name: str,
    spec: ModelDeploymentSpec,
    status: Mapping[str, Any],
    verdict: Verdict,
    history: History | None,
    lines_of: Mapping[str, list[Line]],
    start: float,
    end: float,
) -> str:
    """The page for one model; `lines_of` maps a panel's title to its lines (none: no data)."""
    evaluation = verdict.evaluation
    marks = marks_for(history, verdict, spec)
    panels = []
    for panel in PANELS:
        lines = lines_of.get(panel.title) or []
        body = (
            f'<img alt="{html.escape(panel.title)}" src="data:image/png;base64,'
            f'{chart(panel, lines, marks)}">'
            if lines
            else '<div class="nodata">no data</div>'
        )
        panels.append(
            f'<div class="panel" data-panel="{html.escape(panel.title)}">'
            f"<h3>{html.escape(panel.title)}</h3>"
            f"<p>{html.escape(panel.description)}</p>{body}</div>"
        )
    legend = ""
    if marks.events or marks.spans:
        legend = (
            '<p class="muted">Red lines: the scale events the evidence counts. Orange '
            "bands: replicas starting.</p>"
        )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>ModelPilot report: "
        f"{html.escape(namespace)}/{html.escape(name)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{html.escape(namespace)}/{html.escape(name)}</h1>"
        f'<p class="muted">{datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} to '
        f"{datetime.fromtimestamp(end, UTC):%H:%M} UTC · advisor mode "
        f"{spec.advisor.mode}</p><h2>Status</h2>{_status_table(status)}"
        f"<h2>Recommendations</h2>{_recommendations(evaluation)}{legend}"
        f'<h2>Metrics</h2><div class="grid">{"".join(panels)}</div></body></html>\n'
    )
