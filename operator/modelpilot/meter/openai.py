"""Tokens, time to first token (TTFT) and time per output token (TPOT) from the responses of
OpenAI-compatible servers (vLLM, SGLang, TGI, Triton's OpenAI frontend), read as the bytes
pass: the proxy sends each chunk on to the client first and then feeds it here. Nothing is
held back and nothing is changed; a body that is not what these APIs send is simply not
counted.

- A JSON body (`stream` false): input and output tokens from its `usage` object. Only the
  bytes from the `"usage"` key on are kept (a few hundred), not the body.
- A server-sent event stream: TTFT at the first chunk that carries content, output tokens
  from the final usage chunk (`stream_options.include_usage`) or, without one, by counting
  content deltas (`source="deltas"`: exact for servers that send a token per chunk, low for
  those that batch), and TPOT = (last content chunk - first) / (output tokens - 1), the
  mean gap between tokens after the first, as vLLM's benchmarks define it.
"""

import json
from dataclasses import dataclass
from typing import Any, Literal

OPENAI_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_LINE = 1 << 20  # a longer SSE line is not an OpenAI chunk: stop reading the stream
USAGE_KEY = b'"usage"'
USAGE_BYTES = 4096  # a usage object is ~100 bytes; more than this is not one


@dataclass(frozen=True)
class Tokens:
    """What one response said about tokens; None where it did not say."""

    input: int | None
    output: int | None
    source: Literal["usage", "deltas"]
    ttft: float | None = None  # request received -> first content chunk sent (seconds)
    tpot: float | None = None  # mean seconds per output token after the first


def is_openai(method: str, path: str) -> bool:
    return method == "POST" and path.endswith(OPENAI_PATHS)


def reader_for(
    content_type: str, start: float, encoding: str = ""
) -> "StreamReader | BodyReader | None":
    """The reader for a successful response of this content type, if it has one. A
    compressed body passes as it came (the meter does not decompress): it is not read."""
    if encoding.strip().lower() not in ("", "identity"):
        return None
    media = content_type.partition(";")[0].strip().lower()
    if media == "text/event-stream":
        return StreamReader(start)
    if media == "application/json":
        return BodyReader()
    return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _usage(usage: dict[str, Any]) -> tuple[int | None, int | None]:
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def _carries_content(choice: Any) -> bool:
    if not isinstance(choice, dict):
        return False
    delta = choice.get("delta")
    if isinstance(delta, dict):  # chat: text, reasoning or a tool call
        return bool(
            delta.get("content")
            or delta.get("reasoning_content")
            or delta.get("reasoning")
            or delta.get("tool_calls")
        )
    return bool(choice.get("text"))  # completions


class StreamReader:
    """Reads `data:` lines of an SSE stream of OpenAI chunks."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.partial = b""
        self.broken = False  # not an OpenAI stream after all: count nothing
        self.failed = False  # the server sent an error event
        self.done = False  # [DONE] seen
        self.usage: dict[str, Any] | None = None
        self.deltas = 0
        self.first: float | None = None
        self.last: float | None = None

    def feed(self, chunk: bytes, now: float) -> None:
        if self.broken:
            return
        if b"\n" not in chunk:
            self.partial += chunk
            self.broken = len(self.partial) > MAX_LINE
            return
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                self._event(line[5:].strip(), now)
                if self.broken:
                    return

    def _event(self, payload: bytes, now: float) -> None:
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            self.broken = True
            return
        if not isinstance(event, dict):
            self.broken = True
            return
        if "error" in event or event.get("object") == "error":
            self.failed = True
            return
        usage = event.get("usage")
        if isinstance(usage, dict):  # the final usage chunk (or a running total)
            self.usage = usage
        choices = event.get("choices")
        if isinstance(choices, list):
            n = sum(1 for choice in choices if _carries_content(choice))
            if n:
                self.first = now if self.first is None else self.first
                self.last = now
                self.deltas += n

    def result(self, complete: bool) -> Tokens | None:
        """`complete`: the upstream response ended normally (not cut, not cancelled)."""
        if self.broken:
            return None
        if self.usage is not None:
            prompt, output = _usage(self.usage)
            tokens = Tokens(prompt, output, "usage")
        else:
            tokens = Tokens(None, self.deltas, "deltas")
        ttft = None if self.first is None else self.first - self.start
        tpot = None
        finished = complete and not self.failed
        if finished and tokens.output and tokens.output >= 2 and self.first != self.last:
            assert self.first is not None and self.last is not None
            tpot = (self.last - self.first) / (tokens.output - 1)
        return Tokens(tokens.input, tokens.output, tokens.source, ttft, tpot)


class BodyReader:
    """Finds the `usage` object of a JSON body without keeping the body."""

    def __init__(self) -> None:
        self.tail = b""  # the end of the last chunk, for a key split across two chunks
        self.found: bytearray | None = None

    def feed(self, chunk: bytes, now: float) -> None:
        if self.found is not None:
            if len(self.found) < USAGE_BYTES:
                self.found += chunk[: USAGE_BYTES - len(self.found)]
            return
        data = self.tail + chunk
        at = data.find(USAGE_KEY)
        while at > 0 and data[at - 1] == 0x5C:  # \"usage\" inside a string is content
            at = data.find(USAGE_KEY, at + 1)
        if at >= 0:
            self.found = bytearray(data[at : at + USAGE_BYTES])
        else:
            self.tail = data[-len(USAGE_KEY) :]

    def result(self, complete: bool) -> Tokens | None:
        if not complete or self.found is None:
            return None
        text = bytes(self.found[len(USAGE_KEY) :]).decode("utf-8", "replace").lstrip()
        if not text.startswith(":"):
            return None
        try:
            usage, _ = json.JSONDecoder().raw_decode(text[1:].lstrip())
        except (ValueError, RecursionError):
            return None
        if not isinstance(usage, dict):
            return None
        prompt, output = _usage(usage)
        if prompt is None and output is None:
            return None
        return Tokens(prompt, output, "usage")


def tokens_in(method: str, path: str, status: int, content_type: str, body: bytes) -> Tokens | None:
    """Tokens of a whole response held for an async client: counts only (nobody saw its
    first token arrive, so no TTFT or TPOT)."""
    if not (200 <= status < 300 and is_openai(method, path)):
        return None
    reader = reader_for(content_type, 0.0)
    if reader is None:
        return None
    reader.feed(body, 0.0)
    found = reader.result(complete=True)
    return None if found is None else Tokens(found.input, found.output, found.source)
