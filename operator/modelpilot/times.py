"""Time and duration text, one format each, used by every package: timestamps as the
Kubernetes API writes them, durations as flags take them ("6h", "90m", "3600s") and as
people read them ("45s", "12 min", "3 h")."""

import math
from datetime import datetime


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC to the second, as Kubernetes writes timestamps."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    """A Kubernetes timestamp; None when absent or unreadable (status is user-writable)."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """ "6h", "90m", "1d", "3600s" or "3600" -> seconds (ValueError otherwise)."""
    value = text.strip()
    try:
        if value[-1:] in UNITS:
            return int(float(value[:-1]) * UNITS[value[-1]])
        return int(value)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 6h, 90m or 3600s") from None


def format_duration(seconds: int) -> str:
    """Exact, in the largest whole unit: parse_duration's inverse ("6h", "150s")."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"


def about(seconds: float) -> str:
    """Rounded for people: seconds under two minutes, minutes under two hours, then hours."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


def clock(seconds: float) -> str:
    """mm:ss of an elapsed time."""
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"


def milliseconds(seconds: float | None) -> str:
    """A latency as people read it ("1,250 ms"); "?" when unknown, never 0."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    return f"{seconds * 1000:,.0f} ms"
