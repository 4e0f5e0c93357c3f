"""What an async request asks for, read from its headers (pure).

    Prefer: respond-async                    run it later: 202 with an id (RFC 7240)
    X-Modelpilot-Priority: high|normal|low   higher first (default normal)
    X-Modelpilot-Max-Queue-Seconds: N        not run if it waited longer (then EXPIRED)
    X-Modelpilot-Webhook: https://...        where the result goes, signed
    Idempotency-Key: ...                     the same key again returns the same id

These headers and the respond-async preference are not forwarded to the model server.
"""

import fnmatch
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from modelpilot.meter.broker import PRIORITIES

PRIORITY = "X-Modelpilot-Priority"
MAX_QUEUE = "X-Modelpilot-Max-Queue-Seconds"
WEBHOOK = "X-Modelpilot-Webhook"
IDEMPOTENCY_KEY = "Idempotency-Key"
OURS = frozenset(h.lower() for h in (PRIORITY, MAX_QUEUE, WEBHOOK))


class BadOption(ValueError):
    """An async option a client must fix (the message says how)."""


@dataclass(frozen=True)
class Options:
    priority: str
    max_queue_seconds: float
    webhook: str


def wants_async(prefer: str) -> bool:
    return any(p.strip().lower() == "respond-async" for p in prefer.split(","))


def parse(
    headers: Mapping[str, str],
    default_max_queue: float,
    webhook_hosts: tuple[str, ...],
    webhooks_on: bool,
) -> Options:
    priority = headers.get(PRIORITY, "normal").strip().lower()
    if priority not in PRIORITIES:
        raise BadOption(f"{PRIORITY} must be one of {', '.join(PRIORITIES)}, not {priority!r}")
    max_queue = default_max_queue
    if raw := headers.get(MAX_QUEUE):
        try:
            max_queue = float(raw)
        except ValueError:
            max_queue = math.nan
        if not (0 < max_queue <= default_max_queue):  # also false for NaN
            raise BadOption(
                f"{MAX_QUEUE} must be a number of seconds in (0, {default_max_queue:g}], "
                f"not {raw!r}"
            )
    webhook = headers.get(WEBHOOK, "").strip()
    if webhook:
        if not webhooks_on:
            raise BadOption(
                "webhooks are off for this model: it has no signing secret "
                "(spec.async.webhookSecretRef)"
            )
        check_webhook(webhook, webhook_hosts)
    return Options(priority, max_queue, webhook)


def check_webhook(url: str, allowed_hosts: tuple[str, ...]) -> None:
    """An http(s) URL whose host is allowed (patterns like *.example.com; none: any)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadOption(f"{WEBHOOK} must be an http:// or https:// URL, not {url!r}")
    if allowed_hosts and not any(fnmatch.fnmatch(parts.hostname, p) for p in allowed_hosts):
        raise BadOption(
            f"{WEBHOOK} host {parts.hostname!r} is not allowed here "
            f"(spec.async.webhookHosts: {', '.join(allowed_hosts)})"
        )


def forwardable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The request's headers for the model server: ours dropped, and respond-async taken out
    of Prefer (the model server would otherwise be asked to answer asynchronously too)."""
    out = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in OURS or lowered == IDEMPOTENCY_KEY.lower():
            continue
        if lowered == "prefer":
            value = ", ".join(
                p.strip() for p in value.split(",") if p.strip().lower() != "respond-async"
            )
            if not value:
                continue
        out.append((name, value))
    return out
