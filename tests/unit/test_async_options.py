"""Async request options and webhook signatures: pure functions over plain data."""

import base64
import json
import time

import pytest

from modelpilot.meter import asyncoptions, webhooks
from modelpilot.meter.asyncjobs import classify
from modelpilot.meter.asyncoptions import BadOption, Options, forwardable, parse, wants_async


def test_respond_async_is_one_preference_among_others() -> None:
    assert wants_async("respond-async")
    assert wants_async("return=minimal, Respond-Async")
    assert not wants_async("return=representation")
    assert not wants_async("respond-asyncish")


def test_options_default_and_parse() -> None:
    assert parse({}, 600, (), webhooks_on=False) == Options("normal", 600, "")
    headers = {
        "X-Modelpilot-Priority": "HIGH",
        "X-Modelpilot-Max-Queue-Seconds": "30",
        "X-Modelpilot-Webhook": "https://hooks.example.com/done",
    }
    assert parse(headers, 600, ("*.example.com",), webhooks_on=True) == Options(
        "high", 30, "https://hooks.example.com/done"
    )


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"X-Modelpilot-Priority": "urgent"}, "one of high, normal, low"),
        ({"X-Modelpilot-Max-Queue-Seconds": "nan"}, "in (0, 600]"),
        ({"X-Modelpilot-Max-Queue-Seconds": "0"}, "in (0, 600]"),
        ({"X-Modelpilot-Max-Queue-Seconds": "601"}, "in (0, 600]"),
        ({"X-Modelpilot-Webhook": "file:///etc/passwd"}, "http:// or https://"),
        ({"X-Modelpilot-Webhook": "http://169.254.169.254/"}, "not allowed here"),
    ],
)
def test_bad_options_say_what_to_fix(headers: dict[str, str], words: str) -> None:
    with pytest.raises(BadOption) as caught:
        parse(headers, 600, ("*.example.com",), webhooks_on=True)
    assert words in str(caught.value)


def test_a_webhook_without_a_secret_is_refused() -> None:
    with pytest.raises(BadOption, match="webhookSecretRef"):
        parse({"X-Modelpilot-Webhook": "https://a.example.com/"}, 600, (), webhooks_on=False)


def test_the_model_server_never_sees_our_options() -> None:
    sent = [
        ("Content-Type", "application/json"),
        ("Prefer", "respond-async, return=minimal"),
        ("X-Modelpilot-Webhook", "https://a.example.com/"),
        ("x-modelpilot-priority", "low"),
        ("Idempotency-Key", "k"),
        ("Authorization", "Bearer t"),
    ]
    assert forwardable(sent) == [
        ("Content-Type", "application/json"),
        ("Prefer", "return=minimal"),
        ("Authorization", "Bearer t"),
    ]
    assert forwardable([("Prefer", "respond-async")]) == []
    assert asyncoptions.IDEMPOTENCY_KEY == "Idempotency-Key"


def test_outcomes_retry_only_when_the_model_server_was_away() -> None:
    assert classify(200) == classify(302) == "SUCCEEDED"
    assert classify(400) == classify(500) == "FAILED"
    assert classify(502) is classify(503) is classify(504) is None


KEY = webhooks.secret_key("whsec_" + base64.b64encode(b"0123456789abcdef").decode())


def test_signatures_follow_standard_webhooks() -> None:
    # HMAC-SHA256 over "id.timestamp.body", base64, prefixed with the version.
    assert KEY == b"0123456789abcdef"
    assert webhooks.secret_key("plain") == b"plain"
    # The reference vector of the Standard Webhooks libraries (svix's README and tests).
    reference = webhooks.secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signed = webhooks.sign(
        reference, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    body = b'{"id":"x"}'
    sent = webhooks.headers(KEY, "x", body)
    assert webhooks.verify(KEY, sent, body)
    assert not webhooks.verify(b"other", sent, body)
    assert not webhooks.verify(KEY, sent, body + b" ")
    assert not webhooks.verify(KEY, {**sent, "webhook-id": "y"}, body)
    old = webhooks.headers(KEY, "x", body, now=time.time() - 600)
    assert not webhooks.verify(KEY, old, body)  # a replay later is refused
    assert not webhooks.verify(KEY, {}, body)


def test_payload_carries_the_answer_as_text_or_base64() -> None:
    doc = json.loads(webhooks.payload("x", "SUCCEEDED", 200, "application/json", b'{"o":1}', ""))
    assert doc == {
        "id": "x",
        "status": "SUCCEEDED",
        "statusCode": 200,
        "contentType": "application/json",
        "body": '{"o":1}',
    }
    binary = json.loads(webhooks.payload("x", "SUCCEEDED", 200, "image/png", b"\xff\x00", ""))
    assert base64.b64decode(binary["bodyBase64"]) == b"\xff\x00"
    expired = json.loads(webhooks.payload("x", "EXPIRED", None, "", b"", "waited too long"))
    assert expired == {"id": "x", "status": "EXPIRED", "error": "waited too long"}


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [webhooks.backoff(n, 1.0, cap=10) for n in range(1, 6)] == [1, 2, 4, 8, 10]
