"""What the demo prints: the live view and the closing comparison, as plain functions of
plain data (at most 100 columns). Unknown values print as "?", never as 0."""

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelpilot.advisor.rules import percentile
from modelpilot.demo.traffic import Outcome
from modelpilot.settings import Setting, wire_name
from modelpilot.times import clock
from modelpilot.times import milliseconds as ms

WIDTH = 100
BARS = "▁▂▃▄▅▆▇█"
LABELS: dict[Setting, str] = {
    "min_replicas": "min",
    "max_replicas": "max",
    "concurrency_target": "target",
    "target_utilization_percentage": "util%",
    "autoscaling_window_seconds": "window",
    "scale_down_delay_seconds": "scale-down delay",
}


@dataclass(frozen=True)
class ScaleEvent:
    at: float  # seconds since the traffic started
    before: int
    after: int


@dataclass
class Frame:
    model: str
    phase: str
    elapsed: float
    total: float
    pattern: str
    status: Mapping[str, Any]  # the ModelDeployment's status, as the API server has it
    rps: Mapping[str, float] | None = None  # by status class, from the meters (Prometheus)
    p50: float | None = None
    p95: float | None = None
    concurrency: float | None = None
    ttft_p95: float | None = None  # time to first token
    tokens: Mapping[str, float] | None = None  # per second, by direction (input, output)
    scale_events: Sequence[ScaleEvent] = ()
    replicas_trend: Sequence[float | None] = ()
    p95_trend: Sequence[float | None] = ()


def fit(text: str, indent: str = "    ") -> str:
    """`text` wrapped to the width, continuation lines indented."""
    return textwrap.fill(
        text, WIDTH, subsequent_indent=indent, break_on_hyphens=False, break_long_words=True
    )


def num(value: float | None) -> str:
    return "?" if value is None else format(value, "g")


def sparkline(values: Sequence[float | None], width: int) -> str:
    shown = list(values)[-width:]
    known = [v for v in shown if v is not None]
    if not known:
        return "·" * len(shown)
    low, high = min(known), max(known)
    span = (high - low) or 1.0
    return "".join(
        "·" if v is None else BARS[min(len(BARS) - 1, int((v - low) / span * len(BARS)))]
        for v in shown
    )


def token_rates(tokens: Mapping[str, float] | None) -> str:
    if tokens is None:
        return "tokens/s ?"
    return f"in {tokens.get('input', 0.0):.0f}/s   out {tokens.get('output', 0.0):.0f}/s"


def settings_line(settings: Mapping[str, Any]) -> str:
    """status.autoscaling.effective (wire names) in the order and words of the view."""
    shown = ((label, settings.get(wire_name(s))) for s, label in LABELS.items())
    parts = [f"{label} {value}" for label, value in shown if value is not None]
    return " · ".join(parts) if parts else "?"


def recommendation_lines(rec: Mapping[str, Any], indent: str = "  ") -> list[str]:
    """A recommendation with its message and evidence, wrapped to the width."""
    head = (
        f"{rec.get('reason')}: {rec.get('setting')} {rec.get('current')} -> "
        f"{rec.get('recommended')} (confidence {rec.get('confidence')})"
    )
    evidence = ", ".join(f"{k}={v}" for k, v in (rec.get("evidence") or {}).items())
    wrap = WIDTH - len(indent) - 2
    lines = [indent + head]
    lines += [indent + "  " + t for t in textwrap.wrap(str(rec.get("message", "")), wrap)]
    lines += [indent + "  " + t for t in textwrap.wrap(f"evidence: {evidence}", wrap)]
    return lines


def applied_changes(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    history = (status.get("advisor") or {}).get("history") or []
    return [c for c in history if not c.get("reverted")]


def render(frame: Frame) -> list[str]:
    s = frame.status
    replicas = s.get("replicas") or {}
    pods = s.get("pods") or {}
    settings = (s.get("autoscaling") or {}).get("effective") or {}
    advisor = s.get("advisor") or {}
    recs = advisor.get("recommendations") or []
    rps = frame.rps
    lines = [
        f"ModelPilot demo · {frame.model} · advisor mode {frame.phase} · "
        f"{clock(frame.elapsed)} of {clock(frame.total)}",
        f"traffic    {frame.pattern}",
        "",
        f"replicas   desired {num(replicas.get('desired'))}   active "
        f"{num(replicas.get('active'))}   starting {num(replicas.get('starting'))}   "
        f"terminating {num(replicas.get('terminating'))}",
        f"pods       ready {num(pods.get('ready'))}   not ready {num(pods.get('notReady'))}   "
        f"unknown {num(pods.get('unknown'))}   restarts "
        f"{num((s.get('restarts') or {}).get('total'))}",
        "requests   "
        + (
            "   ".join(f"{c} {rps.get(c, 0.0):.1f}/s" for c in ("2xx", "4xx", "5xx"))
            if rps is not None
            else "? (no meter series yet)"
        ),
        f"latency    p50 {ms(frame.p50)}   p95 {ms(frame.p95)}   concurrency "
        f"{num(None if frame.concurrency is None else round(frame.concurrency, 1))}"
        "   (meters, last 10 s)",
        f"tokens     TTFT p95 {ms(frame.ttft_p95)}   {token_rates(frame.tokens)}",
        f"settings   {settings_line(settings)}",
        f"scaling    {len(frame.scale_events)} scale event(s)"
        + (
            f", last {clock(frame.elapsed - frame.scale_events[-1].at)} ago "
            f"({frame.scale_events[-1].before} -> {frame.scale_events[-1].after})"
            if frame.scale_events
            else ""
        ),
        f"repl. 90s  {sparkline(frame.replicas_trend, 89)}",
        f"p95 90s    {sparkline(frame.p95_trend, 89)}",
        "",
        f"advisor    {len(recs)} recommendation(s)"
        + (
            f", last evaluated {advisor['lastEvaluationTime']}"
            if "lastEvaluationTime" in advisor
            else ""
        ),
    ]
    metrics = next(
        (c for c in s.get("conditions") or [] if c.get("type") == "MetricsAvailable"), None
    )
    if metrics and not recs:
        lines.append(fit(f"  {metrics.get('message')}"))
    for rec in recs:
        lines += recommendation_lines(rec)
    for change in applied_changes(s):
        lines.append(fit(f"  applied {change.get('time')}: {change.get('message')}"))
    return [part for line in lines for part in line.split("\n")]


@dataclass(frozen=True)
class PeriodStats:
    minutes: float
    requests: int
    failed: int  # 5xx and errors (4xx are the clients' own mistakes)
    p50: float | None
    p95: float | None
    scale_events: int

    @property
    def events_per_minute(self) -> float | None:
        return self.scale_events / self.minutes if self.minutes > 0 else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return percentile(values, q) if values else None


def period_stats(
    outcomes: Sequence[Outcome], events: Sequence[ScaleEvent], start: float, end: float
) -> PeriodStats:
    """Requests that finished and scale events that happened in [start, end)."""
    inside = [o for o in outcomes if start <= o.at < end]
    served = [o.seconds for o in inside if o.status_class in ("2xx", "4xx")]
    return PeriodStats(
        minutes=max(end - start, 0.0) / 60,
        requests=len(inside),
        failed=sum(o.status_class in ("5xx", "error") for o in inside),
        p50=_percentile(served, 50),
        p95=_percentile(served, 95),
        scale_events=sum(start <= e.at < end for e in events),
    )


def comparison(periods: Sequence[tuple[str, PeriodStats]]) -> list[str]:
    """A table with a column per labelled period (at most three fit the width)."""

    def rate(p: PeriodStats) -> str:
        value = p.events_per_minute
        return "?" if value is None else f"{value:.1f}"

    rows: list[tuple[str, Callable[[PeriodStats], str]]] = [
        ("minutes", lambda p: f"{p.minutes:.1f}"),
        ("requests", lambda p: f"{p.requests:,}"),
        ("failed (5xx, errors)", lambda p: f"{p.failed:,}"),
        ("scale events / min", rate),
        ("p50 latency (clients)", lambda p: ms(p.p50)),
        ("p95 latency (clients)", lambda p: ms(p.p95)),
    ]
    lines = ["  " + " " * 24 + "".join(f"{label:>24}" for label, _ in periods)]
    for name, cell in rows:
        lines.append(f"  {name:<24}" + "".join(f"{cell(p):>24}" for _, p in periods))
    return lines
