"""What `modelpilot advise` prints: a table, or JSON/YAML (pure)."""

import textwrap
from typing import Any

from modelpilot.advisor.model import Evaluation
from modelpilot.settings import wire_name


def table(evaluations: list[Evaluation]) -> str:
    """One line per recommendation, within 100 columns; the reasoning indented below."""
    lines = [f"{'MODEL':<26} {'SETTING':<28} {'CHANGE':<12} {'REASON':<24} CONF"]
    for ev in evaluations:
        model = f"{ev.namespace}/{ev.name}"[:26]
        if ev.status != "ok":
            lines.append(f"{model:<26} insufficient data: {', '.join(ev.missing)}"[:100])
        elif not ev.recommendations:
            lines.append(f"{model:<26} ok: no recommendation")
        for rec in ev.recommendations:
            change = f"{rec.current} -> {rec.recommended}"
            lines.append(
                f"{model:<26} {wire_name(rec.setting):<28} {change:<12} {rec.reason:<24} "
                f"{rec.confidence:.2f}"
            )
            lines.extend(
                textwrap.wrap(
                    rec.message, width=96, initial_indent="    ", subsequent_indent="    "
                )
            )
    return "\n".join(lines)


def document(evaluations: list[Evaluation], read: str = "") -> dict[str, Any]:
    """`read`: where the histories came from (advisor.source.FROM_RULES or FROM_RAW)."""
    return {
        **({"historyRead": read} if read else {}),
        "items": [
            {
                "namespace": ev.namespace,
                "name": ev.name,
                "status": ev.status,
                "recommendations": [r.wire() for r in ev.recommendations],
                **({"missing": ev.missing} if ev.missing else {}),
            }
            for ev in evaluations
        ],
    }
