"""Webhook deliveries of async results, signed as Standard Webhooks are
(https://www.standardwebhooks.com): receivers can verify them with that spec's libraries.

    webhook-id:        the async request's id (the same on every retry: de-duplicate on it)
    webhook-timestamp: seconds since the epoch
    webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">

A secret written "whsec_<base64>" is that spec's form and is decoded; any other string is
used as its UTF-8 bytes.
"""

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping

ID, TIMESTAMP, SIGNATURE = "webhook-id", "webhook-timestamp", "webhook-signature"


def secret_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def headers(key: bytes, message_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        "Content-Type": "application/json",
        ID: message_id,
        TIMESTAMP: str(timestamp),
        SIGNATURE: sign(key, message_id, timestamp, body),
    }


def verify(key: bytes, received: Mapping[str, str], body: bytes, tolerance: float = 300.0) -> bool:
    """What a receiver checks: a signature made with `key` over this body, and a timestamp
    within `tolerance` seconds of now (so a captured delivery cannot be replayed later)."""
    try:
        timestamp = int(received[TIMESTAMP])
        message_id = received[ID]
        offered = received[SIGNATURE].split()
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = sign(key, message_id, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


def payload(
    job_id: str, state: str, status: int | None, content_type: str, result: bytes, error: str
) -> bytes:
    """The delivery's body: the outcome and the model server's answer (as text when it is
    UTF-8, else base64)."""
    doc: dict[str, object] = {"id": job_id, "status": state}
    if status is not None:
        doc["statusCode"] = status
        doc["contentType"] = content_type
        try:
            doc["body"] = result.decode()
        except UnicodeDecodeError:
            doc["bodyBase64"] = base64.b64encode(result).decode()
    if error:
        doc["error"] = error
    return json.dumps(doc, separators=(",", ":")).encode()


def backoff(attempt: int, base: float, cap: float = 300.0) -> float:
    """Seconds before the attempt after `attempt` (1, 2, ...): base, 2 x base, 4 x base..."""
    return float(min(base * 2 ** (attempt - 1), cap))
